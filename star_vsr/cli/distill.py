"""``star-vsr distill cache-teacher``: run a teacher once over training clips and store its outputs.

A slow teacher (a StarVSR diffusion folder, or a large student folder) runs over LR clips, and
its HR outputs (and, with ``--features``, its feature taps) go into safetensors shards with a
manifest. Training (``training/distill_student.py --train_cache CACHE``) then reads the cache
every epoch instead of running the teacher again. An interrupted run resumes: rerun the same
command and finished shards are skipped (a lost manifest.json is restored from the copies the shards carry).

Clips come from ``--data DIR`` (LR videos or frame folders, cut into ``--num-frames`` windows, each with the
caption in ``clip.txt`` beside ``clip.mp4`` for a teacher that takes a prompt, as train_star.py reads it, and
optional ground truth of the same names in ``--gt DIR``) or, with ``--motion-clips N``, are
made from the training photographs (scikit-image's bundled photos without the evaluation ones)
with camera motion and the project's degradation chain, ground truth included. Every --data clip is
decoded before the teacher runs: one that cannot be (a damaged file) stops the run with its name, and nothing
is cached, where train_star.py skips such a clip with a warning (a cache's clips are numbered once: a clip
left out would renumber the ones after it; repair or remove it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from .arguments import ParagraphsHelpFormatter, device_argument, path_argument, seed_argument


#: The diffusion teacher's options and their defaults (a student teacher refuses other values).
DIFFUSION_TEACHER_DEFAULTS = {"steps": 15, "guidance_scale": 7.5}


def register(subparsers: argparse._SubParsersAction) -> None:
    distill = subparsers.add_parser("distill", help="distillation tools (teacher cache)",
                                    description="distillation tools; see star-vsr distill cache-teacher --help")
    commands = distill.add_subparsers(dest="distill_command", metavar="DISTILL_COMMAND")
    cache = commands.add_parser("cache-teacher", help="run a teacher over clips and store its outputs (resumable)",
                                description=__doc__, formatter_class=ParagraphsHelpFormatter)
    cache.add_argument("--teacher", type=path_argument, required=True,
                       help="teacher folder: a StarVSR diffusion pipeline or a student pipeline")
    data = cache.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", type=path_argument,
                      help="folder of LR clips (videos or frame folders; a caption for a.mp4 in a.txt)")
    data.add_argument("--motion-clips", type=int, metavar="N",
                      help="make N motion clips from the training photographs instead")
    cache.add_argument("-o", "--output", type=path_argument, required=True,
                       help="cache folder (created; resumed if it exists)")
    cache.add_argument("--gt", type=path_argument,
                       help="folder of ground-truth HR clips with the same names as in --data")
    cache.add_argument("--num-frames", type=int, default=8,
                       help="frames per clip (default 8); --data videos are cut into windows of this many "
                       "frames: a shorter video gives one shorter clip, frames after a video's last whole window "
                       "are left out (both are noted)")
    cache.add_argument("--upscale", type=int, default=4,
                       help="scale factor: 2, 3 or 4, those the student trains at (default 4)")
    cache.add_argument("--features", nargs="+", default=(), metavar="NAME",
                       help="teacher feature taps to store, e.g. hr_features (a student teacher: any of its taps; "
                            "STAR: hr_features, its VAE decoder's last up-block output, large)")
    motion = cache.add_argument_group("motion clips (--motion-clips)")
    motion.add_argument("--crop-size", type=int, default=None, help="HR crop side (default 64; 63 at --upscale 3)")
    motion.add_argument("--degradation", default=None, choices=("light", "medium", "heavy"),
                        help="degradation preset (default medium)")
    motion.add_argument("--seed", type=seed_argument, default=0, help="data seed, also the diffusion teacher's seed (default 0)")
    diffusion = cache.add_argument_group("diffusion teacher (StarVSR pipelines)")
    diffusion.add_argument("--steps", type=int, default=DIFFUSION_TEACHER_DEFAULTS["steps"],
                           help=f"denoising steps (default {DIFFUSION_TEACHER_DEFAULTS['steps']})")
    diffusion.add_argument("--guidance-scale", type=float, default=DIFFUSION_TEACHER_DEFAULTS["guidance_scale"],
                           help=f"classifier-free guidance (default {DIFFUSION_TEACHER_DEFAULTS['guidance_scale']})")
    store = cache.add_argument_group("storage")
    store.add_argument("--clips-per-shard", type=int, default=4, help="clips per safetensors shard (default 4)")
    store.add_argument("--storage-dtype", default="float16", choices=("float16", "float32", "bfloat16"),
                       help="precision of the stored clips and features (default float16)")
    store.add_argument("--overwrite", action="store_true",
                       help="replace a cache built with other settings (its shards are deleted when the new cache "
                            "starts, not when it is complete: a new run stopped early leaves part of the new cache, "
                            "which the same command goes on from, or none before its first shard)")
    cache.add_argument("--device", default="auto", type=device_argument,
                       help="auto (CUDA if present), cpu, cuda, ...")
    cache.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                       help="teacher precision (default auto: fp16 on CUDA, fp32 on the CPU)")
    cache.set_defaults(func=run_cache_teacher)
    distill.set_defaults(func=lambda args: _missing_command(distill))


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2  # a usage error, as argparse's own


def clip_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The clips named by the command line and their description for the manifest."""
    from ..errors import InputError

    if args.num_frames < 1:
        raise InputError(f"--num-frames must be >= 1, got {args.num_frames}")
    from ..degradations.config import SUPPORTED_SCALES

    if args.upscale not in SUPPORTED_SCALES:  # (x1 built a cache that training then refused, advising --scale 1,
        # which it refuses too)
        raise InputError(f"--upscale {args.upscale}: training/distill_student.py trains students at "
                         f"{', '.join(map(str, SUPPORTED_SCALES))} (its --scale), so a cache is built at one of them")
    if args.clips_per_shard < 1:
        raise InputError(f"--clips-per-shard must be >= 1, got {args.clips_per_shard}")
    if args.data is not None:
        from ..distill.sources import VideoFolderClips

        given = [flag for flag, value in (("--crop-size", args.crop_size), ("--degradation", args.degradation))
                 if value is not None]
        if given:  # they were ignored without a word
            raise InputError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --motion-clips; the "
                             f"clips of --data are cached as they are (their own size and degradation)")

        clips = VideoFolderClips(args.data, num_frames=args.num_frames, gt_folder=args.gt, scale=args.upscale,
                                 besides=[args.output])  # -o inside --data: the cache, not a left-out subfolder
        for note in clips.notes():
            print(f"note: {note}", file=sys.stderr)
        return clips, clips.describe()
    if args.gt is not None:
        raise InputError("--gt goes with --data; motion clips carry their own ground truth")
    if args.motion_clips < 1:
        raise InputError(f"--motion-clips must be >= 1, got {args.motion_clips}")
    from ..distill.sources import MIN_LR_SIDE
    from ..evalset import training_motion_clips

    # default: the largest multiple of the scale up to 64 (64 itself was refused at --upscale 3, naming --crop-size)
    crop_size = 64 - 64 % args.upscale if args.crop_size is None else args.crop_size
    if crop_size < 1 or crop_size % args.upscale:  # (the dataset's own message names crop_size (33, 33), scale)
        raise InputError(f"--crop-size {crop_size} must be a positive multiple of --upscale {args.upscale} (the LR "
                         f"clips are {crop_size} / {args.upscale} pixels a side)")
    if crop_size < MIN_LR_SIDE * args.upscale:  # (1-pixel clips failed the diffusion teacher, unnamed, mid-run)
        raise InputError(f"--crop-size {crop_size} at --upscale {args.upscale} makes LR clips of "
                         f"{crop_size // args.upscale} pixel a side, too small to upscale; use at least "
                         f"{MIN_LR_SIDE * args.upscale}")
    degradation = "medium" if args.degradation is None else args.degradation
    clips = training_motion_clips(num_clips=args.motion_clips, num_frames=args.num_frames, crop_size=crop_size,
                                  scale=args.upscale, degradation=degradation, seed=args.seed)
    _check_crop_fits_photos(clips, crop_size, args.upscale)
    description = {"kind": "motion_clips", "photos": "star_vsr.evalset.training_photos", "clips": args.motion_clips,
                   "num_frames": args.num_frames, "crop_size": crop_size, "scale": args.upscale,
                   "degradation": degradation, "seed": args.seed}
    return clips, description


def _check_crop_fits_photos(clips: Any, crop_size: int, scale: int) -> None:
    """Refuse a ``--crop-size`` too large for every training photograph (``clips``: their ``ImageMotionDataset``),
    and say once of one too large for some that those are left out, with the crop that fits them all (the dataset
    warned of each such photo, and ended in "ImageMotionDataset: no usable source ... Check the training data"
    when none fitted)."""
    from ..errors import InputError

    reach = clips.crop_reach()  # the shorter side a photo needs
    sides = [min(photo.shape[:2]) for photo in clips.images]
    too_small = [index for index, side in enumerate(sides) if side < reach]
    if not too_small:
        return
    every = int(min(sides) / reach * crop_size) // scale * scale  # the largest crop (a multiple of the scale) ...
    largest = int(max(sides) / reach * crop_size) // scale * scale  # ... that every photo / the largest takes
    need = (f"moving crops of {crop_size} pixels need a photo whose shorter side is at least "
            f"{math.ceil(reach)} pixels")
    if len(too_small) == len(sides):
        raise InputError(f"--crop-size {crop_size} is too large for the training photographs: {need}, and the "
                         f"largest photo's is {max(sides)}; use at most --crop-size {every} (every photo) or "
                         f"{largest} (the largest photos alone)")
    print(f"note: --crop-size {crop_size} is too large for {len(too_small)} of the {len(sides)} training "
          f"photographs ({need}): the clips are made from the others; --crop-size {every} or less uses them all",
          file=sys.stderr)
    for index in too_small:  # said once above, not once for each photo
        clips.bad_sources[clips.source_name(index)] = f"too small for --crop-size {crop_size}"


def _clips_to_compute(folder: Path, num_clips: int, clips_per_shard: int, overwrite: bool) -> list[int]:
    """The indices of the clips a build into ``folder`` will run the teacher on: all, or, resuming a cache (its
    settings were compared already, without the teacher's; the build then refuses, or restores a lost manifest from
    its shards), those of the shards not written yet or whose header is damaged."""
    from ..distill.cache import shard_written

    if overwrite:
        return list(range(num_clips))
    written = {shard for shard in range(-(-num_clips // clips_per_shard)) if shard_written(folder, shard)}
    return [index for index in range(num_clips) if index // clips_per_shard not in written]


def run_cache_teacher(args: argparse.Namespace) -> int:
    from ..distill.cache import MANIFEST_NAME, build_teacher_cache, shard_files
    from ..distill.teacher import DiffusionTeacher, load_teacher
    from ..errors import InputError

    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise InputError(f"-o {args.output} is a file; the cache is a folder (created, or resumed if it exists)")
    clips, description = clip_source(args)
    if Path(args.output).is_dir():  # refused before minutes of loading the teacher: a build already running there,
        from ..distill.cache import check_cache_folder  # other files, a cache of other clips or storage
        from ..outputs import folder_lock

        with folder_lock(Path(args.output), Path(args.output)):
            check_cache_folder(args.output, len(clips), args.clips_per_shard, args.storage_dtype, description,
                               args.overwrite)
    from . import quiet_model_loading

    quiet_model_loading()
    teacher = load_teacher(args.teacher, scale=args.upscale, features=args.features, device=args.device,
                           dtype=args.dtype, num_inference_steps=args.steps, seed=args.seed,
                           guidance_scale=args.guidance_scale)
    if not isinstance(teacher, DiffusionTeacher):  # the diffusion options were ignored without a word
        given = ["--" + name.replace("_", "-") for name, default in DIFFUSION_TEACHER_DEFAULTS.items()
                 if getattr(args, name) != default]
        given += ["--seed"] * (args.data is not None and args.seed != 0)  # draws neither clips nor samples then
        if given:
            raise InputError(f"{' and '.join(given)} set{'s' if len(given) == 1 else ''} the diffusion teacher's "
                             f"sampling; {args.teacher} is a student teacher: drop "
                             f"{'it' if len(given) == 1 else 'them'}")
    manifest_file = Path(args.output) / MANIFEST_NAME
    before = manifest_file.read_bytes() if manifest_file.is_file() else None
    # shards without their manifest, which the build restores (or refuses)
    restoring = before is None and not args.overwrite and Path(args.output).is_dir() and bool(
        shard_files(Path(args.output)))
    if args.data is not None:  # damage inside a file, found before the teacher runs on any clip (after the
        # teacher's own checks: a mistyped --teacher was named only once every clip had been decoded)
        todo = _clips_to_compute(Path(args.output), len(clips), args.clips_per_shard, args.overwrite)
        problems = clips.undecodable(progress=True, indices=todo)
        if problems:
            listed = "\n  ".join(problems)
            raise InputError(f"{len(problems)} clip file{'s' * (len(problems) != 1)} of --data"
                             f"{' or --gt' * (args.gt is not None)} cannot be decoded; repair or remove "
                             f"{'it' if len(problems) == 1 else 'them'} (this run cached nothing):\n  {listed}")
    cache = build_teacher_cache(teacher, clips, args.output, clips_per_shard=args.clips_per_shard,
                                dtype=args.storage_dtype, source=description, overwrite=args.overwrite,
                                progress=True)
    manifest = cache.manifest
    features = ", ".join(f"{k} ({v} ch)" for k, v in manifest.feature_channels.items()) or "none"
    shards = f"{manifest.num_shards} shard{'s' * (manifest.num_shards != 1)}"
    # a restored manifest counts no time: any is this run's shards'
    computed = not restoring or manifest.wall_time_s > 0
    # nothing computed: the manifest as it was, or restored with every shard there (it said "wrote ...")
    done = (before is not None and manifest.complete and before == manifest_file.read_bytes()) or not computed
    seconds = f"{manifest.wall_time_s:.1f} s" if manifest.wall_time_s >= 0.05 else "under 0.1 s"  # not "0.0 s"
    seconds = (f"{seconds} of teacher time" if not restoring else "teacher time not known: its manifest was restored"
               if not computed else f"{seconds} of teacher time in this run, that of the shards before not known")
    print(f"{f'{args.output} was already complete, nothing computed' if done else f'wrote {args.output}'}: "
          f"{manifest.num_clips} clip{'s' * (manifest.num_clips != 1)} in {shards} ({seconds}), "
          f"features: {features}")
    return 0
