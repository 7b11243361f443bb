"""``star-vsr upscale`` and ``star-vsr upscale-batch``: super-resolve video files.

``--model`` is a folder with a StarVSR diffusion pipeline (``star-vsr convert-star``) or a
student pipeline. Frames stream from the input to the output; the output keeps the input's frame
rate and audio and appears only when complete. ``upscale-batch`` skips outputs that already
exist, so an interrupted batch resumes where it stopped (one of another size or fewer frames than this run
makes, or made with other settings, is named in a note; one that cannot be read is named as not done, and the
exit status is 1; ``--overwrite`` redoes them, and an interrupted
``--overwrite`` batch, or one that skipped videos, rerun with the same command redoes only those it had not
finished), and under
``accelerate launch --multi_gpu --num_processes N -m star_vsr upscale-batch ...`` it splits the videos across
the N processes (GPUs, or processes on the CPU of a machine without one; without ``--multi_gpu``, on a machine
with one GPU or none, the launcher starts one); a video it
cannot read (or whose saved progress has other settings, or on which memory runs out) is reported and skipped,
the others are upscaled, and the exit status is 1. Its
outputs keep the input names, with the container suffix the codec needs (``.mkv`` for FFV1,
``.mp4`` for an ``.avi`` input) and PNG frames in a folder named after the video. A subfolder of
frame images in the batch folder (REDS4 / Vid4's layout: ``LR/calendar/00000000.png``) is one video,
played at ``--fps`` (default 30): ``--codec png`` writes ``OUT/calendar/``, which ``star-vsr evaluate``
pairs with ``GT/calendar/`` by name.

A run saves its progress every minute and when stopped by Ctrl-C (in a hidden ``.NAME.partial``
folder next to the output): after that, a crash or a full disk, the same command goes on from there
with the frames an uninterrupted run computes (a lossless codec stores the very same video;
H.264/H.265 start a key frame where the run went on). A diffusion model's saved progress includes
the denoising done on frames not yet written; going on needs the same diffusion options and
``--seed``, and gives the very same frames only with as many CPU threads as before (its float sums
differ in the last bits with another count: one process of ``accelerate launch`` runs one thread, so
a batch stopped under it and resumed without it differs by about a level). A student in bf16 gives the very
same frames only on the same kind of CPU (bf16 sums differ with the kernels: with and without AMX, by up to two
levels). ``--restart`` throws the saved progress away.
"""

from __future__ import annotations

import argparse
import gc
import numbers
import os
import sys
import warnings
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, TextIO

from ..errors import (CorruptVideoError, InputChangedError, InputError, OutputBusyError, OutputExistsError,
                      RanOutOfMemoryError, SavedRunError, UnsupportedVideoError, VideoNotFoundError, is_out_of_memory,
                      memory_amount, what_ran_out, why_missing)
from ..units import count_of
from .arguments import (ParagraphsHelpFormatter, add_fps_argument, check_fps_for_clips, device_argument, input_notes,
                        max_frames_argument, path_argument, seed_argument)

if TYPE_CHECKING:
    from ..io.probe import VideoInfo

#: The diffusion-only options and their defaults (a student run warns about any other value).
DIFFUSION_DEFAULTS: dict[str, Any] = {
    "seed": 0, "steps": 15, "prompt": "a good video", "negative_prompt": None, "guidance_scale": 7.5,
    "noise_level": 900, "chunk_frames": 32, "chunk_overlap": None, "tile_size": None, "tile_overlap": None,
    "color_fix": "adain",
}


def _add_common(parser: argparse.ArgumentParser, batch: bool) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=path_argument,
                       help="model folder: a StarVSR diffusion pipeline or a student pipeline "
                            "(default: the student that ships with star-vsr)")
    model.add_argument("--device", default="auto", type=device_argument,
                       help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    model.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                       help="weight precision (auto: fp16 on CUDA; on the CPU bf16 for a student where the "
                            "CPU has AMX, else fp32)")
    sr = parser.add_argument_group("super-resolution")
    sr.add_argument("--upscale", type=float, default=None,
                    help="scale factor (default: a student's own, 4 for the shipped one, 3 for one trained with "
                         "--scale 3; 4 for any StarVSR model): the shipped student takes 1 to 4 (a student up to its "
                         "largest head), not only whole numbers (each side becomes "
                         "side x scale rounded to the nearest whole number, halves to even: 7 x 1.5 = 10, 9 x 1.5 "
                         "= 14); a StarVSR diffusion model 1 to 8 (trained at 4)")
    sr.add_argument("--no-scene-cut-reset", action="store_true",
                    help="student: carry the recurrent state through scene cuts (by default it starts afresh at a "
                         "cut, so the old scene leaves no ghost in the new one)")
    defaults = DIFFUSION_DEFAULTS
    diffusion = parser.add_argument_group("diffusion model options (StarVSR pipelines; a student ignores them)")
    diffusion.add_argument("--seed", type=seed_argument, default=defaults["seed"],
                           help=f"random seed of the sampling (default {defaults['seed']})")
    diffusion.add_argument("--steps", type=int, default=defaults["steps"], help=f"denoising steps (default {defaults['steps']})")
    diffusion.add_argument("--prompt", default=defaults["prompt"],
                           help=f"caption of the video (default {defaults['prompt']!r}; STAR's quality phrases are "
                                "appended to it, and together they fit in the text encoder's 77 tokens: 22 tokens, "
                                "15 words or so, are left to the caption; a longer one pushes the end of the "
                                "quality phrases out, with a warning naming what was left out)")
    diffusion.add_argument("--negative-prompt", default=defaults["negative_prompt"], metavar="TEXT",
                           help="what guidance steers away from (default STAR's: painting, cartoon, blurring, "
                                "worst quality, jpeg artifacts, over-smooth and the like; \"\" for none); read up to "
                                "the text encoder's 77 tokens, with a warning naming what was left out")
    diffusion.add_argument("--guidance-scale", type=float, default=defaults["guidance_scale"],
                           help=f"classifier-free guidance weight, >= 1 (default {defaults['guidance_scale']:g}; 1 "
                                "turns it off)")
    diffusion.add_argument("--noise-level", type=int, default=defaults["noise_level"],
                           help=f"SDEdit start (1..1000, default {defaults['noise_level']})")
    diffusion.add_argument("--chunk-frames", type=int, default=defaults["chunk_frames"],
                           help=f"frames per temporal chunk (default {defaults['chunk_frames']})")
    diffusion.add_argument("--chunk-overlap", type=int, default=defaults["chunk_overlap"],
                           help="frames shared by neighbouring chunks (default 8, or half of --chunk-frames when "
                                "that is less; must be less than --chunk-frames)")
    diffusion.add_argument("--tile-size", type=int, default=defaults["tile_size"],
                           help="spatial tile in output pixels (default: whole frames)")
    diffusion.add_argument("--tile-overlap", type=int, default=defaults["tile_overlap"],
                           help="output pixels shared by tiles (default 128, or half of --tile-size when that is "
                                "less; must be less than --tile-size)")
    diffusion.add_argument("--color-fix", default=defaults["color_fix"], choices=("adain", "wavelet", "none"),
                           help="colour correction against the input (default adain, as STAR)")
    parser.add_argument("--max-frames", type=max_frames_argument, default=None, metavar="N",
                        help="upscale only the first N frames: a preview of the settings before a long run (the "
                             "audio is cut where they end)")
    parser.add_argument("--deinterlace", default="auto", choices=("auto", "on", "off"),
                        help="run interlaced input through FFmpeg's bwdif deinterlacer first (auto: when the "
                             "video is flagged interlaced; on: always, for footage flagged wrongly)")
    out = parser.add_argument_group("output")
    out.add_argument("--codec", default=None, choices=("h264", "h265", "ffv1", "png"),
                     help="output codec (default H.264: each output keeps its input's name and suffix where that "
                          "suffix holds the codec; see the note above)" if batch else
                          "output codec (default: from the output name: H.264 for a video name, .mp4 or .mkv "
                          "alike; PNG frames for a folder or a name without a suffix); ffv1 needs .mkv")
    out.add_argument("--crf", type=int, default=None,
                     help="x264/x265 quality, 0..51, lower is better (default 18 for h264, 24 for h265)")
    out.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    out.add_argument("--restart", action="store_true",
                     help="discard the progress an interrupted run of this output saved, instead of going on")


def register(subparsers: argparse._SubParsersAction) -> None:
    single = subparsers.add_parser("upscale", help="upscale a video file or image folder", description=__doc__,
                                   formatter_class=ParagraphsHelpFormatter)
    single.add_argument("input", type=path_argument, help="input video file or image folder")
    single.add_argument("-o", "--output", type=path_argument, required=True,
                        help="output video file (or folder for PNG frames; NAME.png / .jpg: one image, of a photo "
                             "or with --max-frames 1)")
    single.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_fps_argument(single)
    _add_common(single, batch=False)
    single.set_defaults(func=run_single)

    batch = subparsers.add_parser("upscale-batch", help="upscale every video of a folder (resumable, multi-GPU)",
                                  description=__doc__, formatter_class=ParagraphsHelpFormatter)
    batch.add_argument("input_dir", type=path_argument,
                       help="folder of input videos and/or folders of frames (one per video)")
    batch.add_argument("-o", "--output-dir", type=path_argument, required=True,
                       help="folder for the outputs (the input names; see the codec note above)")
    batch.add_argument("--overwrite", action="store_true",
                       help="redo videos whose output exists, replacing each output when its new one is complete "
                            "(default: skip them); a batch stopped under --overwrite, run again the same way, goes "
                            "on where it stopped (with --restart or other settings it redoes every video)")
    add_fps_argument(batch)
    _add_common(batch, batch=True)
    batch.set_defaults(func=run_batch)


def pipeline_kwargs(class_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Call arguments for a pipeline of class ``class_name`` from the command line options that apply to it."""
    import torch

    kwargs: dict[str, Any] = {"upscale": args.upscale}
    if class_name != "StarVSRPipeline":
        if args.no_scene_cut_reset:
            kwargs["scene_cut_threshold"] = None
        ignored = [f"--{dest.replace('_', '-')}" for dest, default in DIFFUSION_DEFAULTS.items()
                   if getattr(args, dest) != default]
        if ignored:
            verb = "applies" if len(ignored) == 1 else "apply"
            warnings.warn(f"{', '.join(ignored)} only {verb} to diffusion models; the student ignores "
                          f"{'it' if len(ignored) == 1 else 'them'}")
    else:
        if args.no_scene_cut_reset:
            warnings.warn("--no-scene-cut-reset only applies to the student; diffusion models ignore it")
        from ..pipelines.pipeline_star_vsr import resolve_overlaps
        from ..text import STAR_NEGATIVE_PROMPT

        # the overlaps as numbers (a saved run records them; runs of earlier versions recorded 8 and 128)
        chunk_overlap, tile_overlap = resolve_overlaps(args.chunk_frames, args.chunk_overlap, args.tile_size,
                                                       args.tile_overlap)
        kwargs.update(
            num_inference_steps=args.steps, prompt=args.prompt,
            negative_prompt=STAR_NEGATIVE_PROMPT if args.negative_prompt is None else args.negative_prompt,
            guidance_scale=args.guidance_scale,
            noise_level=args.noise_level, chunk_frames=args.chunk_frames, chunk_overlap=chunk_overlap,
            tile_size=args.tile_size, tile_overlap=tile_overlap,
            color_fix=None if args.color_fix == "none" else args.color_fix,
            generator=torch.Generator().manual_seed(args.seed))
    return kwargs


def _load(args: argparse.Namespace, device: Any = None) -> Any:
    from ..upscale import load_upscaler
    from . import quiet_model_loading

    quiet_model_loading()  # here, once the options are checked: importing diffusers takes seconds

    return load_upscaler(args.model, device=str(device) if device is not None else args.device, dtype=args.dtype)


def check_model_options(args: argparse.Namespace) -> None:
    """Resolve ``--model`` (the shipped student by default) and check ``--device``, ``--dtype`` and the
    diffusion options a StarVSR folder will get, before any output is made and before the weights load."""
    from ..upscale import pipeline_class_name, resolve_device, resolve_dtype

    if args.model is None:
        from ..student import default_student_folder

        args.model = str(default_student_folder())
    diffusion = pipeline_class_name(args.model) == "StarVSRPipeline"
    if args.upscale is None:  # the model's own scale, as the pipelines' call takes it (a x3 student ran at x4)
        args.upscale = 4.0 if diffusion else student_scale(Path(args.model))
    resolve_dtype(args.dtype, resolve_device(args.device), student=not diffusion)  # e.g. fp16 or cuda without a GPU
    if diffusion:
        from ..model_folder import saved_config
        from ..pipelines.pipeline_star_vsr import check_sampling_kwargs, check_tile_size
        from ..text import STAR_NEGATIVE_PROMPT

        if args.negative_prompt == STAR_NEGATIVE_PROMPT:  # typed out, the default: no other setting in batch records
            args.negative_prompt = None

        if args.tile_overlap is not None and args.tile_size is None:  # whole frames: there is nothing to overlap
            raise InputError(f"--tile-overlap {args.tile_overlap} goes with --tile-size (without it the frames are "
                             f"not tiled)")
        check_sampling_kwargs(pipeline_kwargs("StarVSRPipeline", args))
        if args.tile_size is not None:  # (was refused once the weights had loaded)
            blocks = [len(saved_config(Path(args.model) / part).get("block_out_channels") or ())
                      for part in ("vae", "unet")]
            if all(blocks):  # (unreadable configs: loading names the damage)
                check_tile_size(args.tile_size, *blocks)
    else:
        check_student_upscale(Path(args.model), args.upscale)


def student_scale(folder: Path) -> float:
    """The scale the student in ``folder`` was trained at (its saved config; 4 where that cannot be read, which the
    loading then names)."""
    from ..model_folder import saved_config
    from ..models.student import MAX_SCALE

    scale = (saved_config(folder / "student") or {}).get("scale", MAX_SCALE)
    return float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else MAX_SCALE


def check_student_upscale(folder: Path, upscale: float) -> None:
    """``--upscale`` against the scales the student in ``folder`` has (its saved config; a config that cannot
    be read is left to the loading, which names what is wrong)."""
    from ..model_folder import saved_config
    from ..models.student import MAX_SCALE, check_student_scale

    config = saved_config(folder / "student")
    if not config:
        return
    scales, default = config.get("upsample_scales") or [MAX_SCALE], config.get("scale", MAX_SCALE)
    if not isinstance(scales, list) or not all(isinstance(r, numbers.Real) for r in [*scales, default]):
        return  # (the loading refuses it: "upsample_scales must be integers", not "'<' not supported")
    check_student_scale(upscale, scales, default)


def run_single(args: argparse.Namespace) -> int:
    """``star-vsr upscale``: check the input, the output and the model options before any weights load, then
    ``upscale_video``; the exit status."""
    from ..io import deinterlace_choice
    from ..io.probe import check_exists
    from ..outputs import check_new_video_output, remove_finished_progress, saved_progress

    check_exists(args.input)  # a missing input is the first thing to say, before anything about -o
    remove_finished_progress(args.output)  # (upscale is the command that leaves progress folders)
    try:
        # before seconds of imports
        output = check_new_video_output(args.output, args.overwrite, args.input, codec=args.codec)
    except InputError as error:
        saved = saved_progress(args.output) if Path(args.output).exists() and not args.overwrite else None
        if saved is None:
            raise
        # a run with --overwrite stopped: "already exists; pass --overwrite" did not say that it goes on
        raise InputError(f"{error} ({saved} by a stopped run with --overwrite, which goes on from there)") from None
    from ..resume import other_unfinished_runs, unfinished_note
    from ..io.writer import check_video_output, writes_frames
    from ..outputs import IMAGE_OUTPUTS
    from ..upscale import check_image_output, check_image_suffix, upscale_video

    deinterlace = deinterlace_choice(args.deinterlace)
    # a missing or corrupt input fails here, before a model loads
    check_image_suffix(output, args.codec)  # (.tif: not "star-vsr does not write videos so")
    image = output.suffix.lower() in IMAGE_OUTPUTS and not output.is_dir()
    frames_output = image or writes_frames(output, args.codec)
    for note in input_notes(args.input, deinterlace, args.fps, frames_output=frames_output):
        print(f"note: {note}")
    if image:  # one image: a photo, or --max-frames 1; said before the model loads
        from ..io import probe_video

        frames = probe_video(args.input).num_frames
        check_image_output(output, frames if args.max_frames is None else min(frames, args.max_frames), args.codec,
                           args.crf)
    else:  # the codec against the name, the audio against the container: before the model loads, not after
        check_video_output(output, args.codec, None if args.no_audio else args.input)
    check_model_options(args)
    pipe = _load(args)
    upscale_video(pipe, args.input, output, codec=args.codec, crf=args.crf, keep_audio=not args.no_audio,
                  restart=args.restart, deinterlace=deinterlace, folder_fps=args.fps, max_frames=args.max_frames,
                  overwrite=args.overwrite, **pipeline_kwargs(type(pipe).__name__, args))
    count = sum(1 for _ in output.glob("*.png")) if output.is_dir() else 0
    kind = f" (a folder of {count} PNG frame{'s' * (count != 1)})" if output.is_dir() else ""
    print(f"wrote {output}{kind}")  # -o NAME without a suffix writes frames: say so
    for folder, size in other_unfinished_runs(output):
        print(unfinished_note(folder, size))
    return 0


def _expected_output(upscale: float, max_frames: Optional[int], info: VideoInfo, output: Path) -> tuple[int, int, int]:
    """(frames, width, height) of the output ``upscale-batch`` makes of an input like ``info`` (whatever
    ``output``'s format)."""
    from ..models.student import output_size

    height, width = output_size(info.height, info.width, upscale)  # as both pipelines round
    return (info.num_frames if max_frames is None else min(info.num_frames, max_frames)), width, height


def _existing_output_notes(videos: list[Path], outputs: dict[Path, Path], output_dir: Path, args: argparse.Namespace,
                           settings: dict[str, Any], dtype: str,
                           made_from: dict[str, str]) -> tuple[list[str], list[str]]:
    """What upscale-batch says (without ``note: ``) of the outputs already in ``output_dir`` that it counts as done
    but that differ from what this run would make of ``videos``: fewer frames, another size or codec (a
    ``--max-frames`` preview, another program's file), other settings (the batch record's), made from another
    input or an earlier version of their input; and the names of the videos whose output cannot be read (not
    done: named in a note too). ``settings``: the run's, as the record keeps them (with ``dtype``);
    ``made_from``: the record's inputs (``batch_record.recorded_inputs``)."""
    from ..batch_record import made_from_changed_inputs, made_with_other_settings, output_settings
    from ..errors import listed
    from .existing_outputs import (check_existing_outputs, done_but_line, existing_output_lines,
                                   made_from_changed_inputs_line, made_from_other_inputs_line)

    done = {video: outputs[video].name for video in videos if outputs[video].exists()}
    found = check_existing_outputs(list(done), outputs, args.codec,
                                   partial(_expected_output, args.upscale, args.max_frames))
    now = {name: output_settings(settings, video, outputs[video], dtype) for video, name in done.items()}
    made = made_with_other_settings(output_dir, now)
    made = {name: made[name] for name in found.readable(made)}
    for name, flags in made.items():  # named below with the flag that made them another size or length
        found.other_size.pop(name, None)
        if "--max-frames" in flags:  # a preview's "2 of 3 frames": not two notes
            found.short.pop(name, None)
    changed = found.readable(made_from_changed_inputs(output_dir, done))
    found.forget_sizes_of(changed)  # said below, with why
    lines = existing_output_lines(found, args.codec, "a --max-frames preview or another program's file?")
    if made:  # another --model or --upscale into the same folder: "already done" said nothing of it
        flags = sorted({flag for changed in made.values() for flag in changed})
        lines.append(done_but_line(len(made), "{were} made with other settings",
                                   f"{', '.join(flags)}: {listed(sorted(made), 5)}",
                                   "; pass --overwrite to redo {them} with these"))
    lines += [line for line in (made_from_other_inputs_line({video.name: out for video, out in done.items()},
                                                            made_from),
                                made_from_changed_inputs_line(changed)) if line]
    return lines, found.not_done(done)


def process_line(process_index: Optional[int], message: str, file: Optional[TextIO] = None) -> None:
    """Print ``[process i] message`` (``message`` alone when ``process_index`` is None: one process) in one write.

    Under ``accelerate launch`` every process writes unbuffered (PYTHONUNBUFFERED=1) to the same terminal or
    pipe, and ``print`` writes the text and its newline separately: another process's line could land between
    them, gluing two lines together. One write of a short line to a pipe is atomic.
    """
    file = file or sys.stdout  # (read here: tests and wrappers replace sys.stdout)
    file.write(("" if process_index is None else f"[process {process_index}] ") + f"{message}\n")
    file.flush()


#: How long a process of ``upscale-batch`` under ``accelerate launch`` waits for the others at a barrier.
BARRIER_TIMEOUT = timedelta(days=20)


def run_batch(args: argparse.Namespace) -> int:
    """``upscale-batch``; an output folder it made is removed when it stops on an error with nothing in it (a model
    that failed to load left an empty folder behind, as if something had been written)."""
    output_dir = Path(args.output_dir)
    made = not output_dir.exists()
    try:
        return _run_batch(args)
    except BaseException:
        alone = os.environ.get("WORLD_SIZE", "1") == "1"  # (of several processes, the others may be writing there)
        try:
            if made and alone and output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()
        except OSError:  # (not in place of the error on its way out)
            pass
        raise


class _Skipped(NamedTuple):
    """Why upscale-batch skipped a video: ``reason``, and whether another run was writing its output (``busy``).
    The reason is kept as text: the error itself held its traceback's frames, and with them the tensors of a clip
    memory ran out on, while the next clips ran (they ran out too, under a limit the first one had reached)."""

    reason: str
    busy: bool = False


def _upscale_video_of_batch(pipe: Any, video: Path, output: Path, args: argparse.Namespace, deinterlace: Any,
                            progress: bool, say: Callable[..., None], several: bool,
                            finishing: Callable[[], None]) -> Optional[_Skipped]:
    """upscale-batch's `upscale_video` of one of its clips into ``output``; None when written, else why the batch
    skips it and goes on: the clip's own fault, another run writing the output, memory running out on it (which
    ended the batch, naming no video). ``say`` prints a line (`process_line`); a process of ``several`` says the
    run's notes with it too, on standard error. ``finishing`` records the output before it is put in place."""
    from ..upscale import upscale_video

    try:
        folder_fps = args.fps if video.is_dir() else None  # a video file keeps its own rate
        for note in input_notes(video, deinterlace, folder_fps, frames_output=args.codec == "png"):
            say(f"note: {note}")
        upscale_video(pipe, video, output, codec=args.codec, crf=args.crf, keep_audio=not args.no_audio,
                      progress=progress, notes=partial(say, file=sys.stderr) if several else None,
                      restart=args.restart, deinterlace=deinterlace, folder_fps=folder_fps,
                      max_frames=args.max_frames, overwrite=args.overwrite, finishing=finishing,
                      **pipeline_kwargs(type(pipe).__name__, args))
    except (CorruptVideoError, UnsupportedVideoError, SavedRunError, VideoNotFoundError, InputChangedError) as error:
        return _Skipped(str(error))  # (VideoNotFoundError: removed since the batch listed it; InputChangedError:
        # meanwhile)
    except OutputBusyError as error:  # a second batch on the same folder shares the work
        return _Skipped(str(error), busy=True)
    except OutputExistsError:  # (not "already exists; pass --overwrite": it was not there when the batch began)
        return _Skipped(f"another run wrote {output} meanwhile", busy=True)
    except Exception as error:  # out of memory out of the pipeline too: a saved state's move to the
        if not (isinstance(error, RanOutOfMemoryError) or is_out_of_memory(error)):  # GPU, the segments' join, the
            raise  # encoder's threads (FFmpeg's EAGAIN)
        reason = (str(error) if isinstance(error, RanOutOfMemoryError) else
                  f"{what_ran_out(error)}{memory_amount(error)}")
    else:
        return None
    gc.collect()  # once the error and its frames are let go (see `_Skipped`): the clip's memory for the next ones
    return _Skipped(reason)


def _batch_clips(input_dir: Path, output_dir: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(clips, broken links, subfolders holding no clip) of upscale-batch's ``input_dir``: its video files and
    subfolders of frames (REDS4 / Vid4's layout), each upscaled as one video; ``InputError`` for folders that cannot
    be a batch (no folder, a frame folder, no clip, the output folder the input folder or inside a clip's frames)."""
    from ..errors import listed
    from ..io import VIDEO_EXTENSIONS
    from ..io.folders import (broken_links, check_output_outside_clips, clips_in_folder, is_frame_folder,
                              other_subfolders)
    from ..outputs import check_output_folder_name

    check_output_folder_name(output_dir, "the upscaled videos")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir} {why_missing(input_dir)}" if not input_dir.exists() else
                         f"{input_dir} is a file; upscale-batch takes a folder of videos (star-vsr upscale takes one "
                         f"video)")
    if output_dir.exists() and os.path.samefile(input_dir, output_dir):
        raise InputError(f"the output folder {output_dir} is the input folder: its videos would count as done and "
                         f"the outputs would mix with the inputs; choose another --output-dir")
    if is_frame_folder(input_dir):
        raise InputError(f"{input_dir} holds frame images, the frames of one video: upscale it with `star-vsr "
                         f"upscale {input_dir} -o OUTPUT`; upscale-batch takes a folder of videos or of frame folders")
    videos, broken = clips_in_folder(input_dir), broken_links(input_dir)
    subfolders = other_subfolders(input_dir, videos, besides=[output_dir])
    if not videos:
        raise InputError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) or folders of frames in {input_dir}"
                         + (f" (videos inside subfolders are not searched: {listed(subfolders)})"
                            if subfolders else ""))
    check_output_outside_clips(output_dir, videos, "--output-dir")
    return videos, broken, subfolders


def _videos_were(count: int) -> str:
    """"1 video was", "3 videos were" (it was "1 video(s) were")."""
    return f"{count_of(count, 'video')} {'was' if count == 1 else 'were'}"


def _output_stamp(path: Path) -> Optional[tuple[int, int, int]]:
    """(inode, modification time in ns, size) of the output at ``path``, None when there is none: whether another
    run replaced it between two looks (not by the clock: a file server's may differ, FAT's keeps 2 s steps)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _run_batch(args: argparse.Namespace) -> int:
    """``star-vsr upscale-batch``'s work: check the folders, name the outputs, note what is said of the outputs
    already there, then upscale the clips not done yet, split across the processes; 1 when a clip was skipped."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    from ..io import deinterlace_choice, output_names
    from ..io.atomic import missing_folders, name_too_long, remove_empty_folders, remove_stale_temporaries
    from ..io.folders import broken_link_line, other_subfolders_note, stray_images_note
    from ..io.writer import check_crf, writes_frames
    from ..outputs import check_new_output, check_writable, remove_finished_progress
    from ..batch_record import (RECORD_NAME, check_record, input_signature, ledger_settings, output_settings,
                                record_output, recorded_inputs)
    from ..errors import cannot_write, listed
    from .existing_outputs import earlier_names_line, renamed_lines
    from ..overwrite_batch import LEDGER_NAME, OverwriteLedger, batch_settings
    from ..resume import MANIFEST, partial_folder, unfinished_inputs, unfinished_note, unfinished_runs
    from ..upscale import DTYPE_FLAGS, accelerate_on_cpu, pipeline_class_name, resolve_device, resolve_dtype

    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    videos, broken, subfolders = _batch_clips(input_dir, output_dir)
    frame_folders = {video.name for video in videos if video.is_dir()}
    check_fps_for_clips(args.fps, input_dir, videos)
    # the names earlier runs gave outputs that exist or are partly done stay theirs: an input added later
    # (clip.mkv beside clip.mp4) took over clip.mp4's output clip.mkv, which then counted as done
    for record in (RECORD_NAME, LEDGER_NAME):
        check_record(output_dir, record)
    made_from = recorded_inputs(output_dir)
    kept = {source: out for out, source in made_from.items() if (output_dir / out).exists()}
    kept.update({source.name: out for out, source in unfinished_inputs(output_dir).items()
                 if source.parent == input_dir.resolve()})
    names = output_names([video.name for video in videos], args.codec, folders=frame_folders, kept=kept)
    outputs = {video: output_dir / names[video.name] for video in videos}
    too_long = {video: reason for video in videos if (reason := name_too_long(outputs[video]))}  # skipped
    videos = [video for video in videos if video not in too_long]
    if not videos:
        first, reason = next(iter(too_long.items()))
        raise InputError(f"no video of {input_dir} can be upscaled into {output_dir}: {first.name}: {reason}")
    check_writable(outputs[videos[0]])
    if args.overwrite:  # as `upscale --overwrite`, for every output, before any work
        for video in videos:
            check_new_output(outputs[video], overwrite=True, source=video)
            frames = writes_frames(outputs[video], args.codec)
            if outputs[video].exists() and outputs[video].is_dir() != frames:  # the writer refused it mid-batch,
                # which stopped there (exit 2, the ledger left)
                raise InputError(f"{outputs[video]} is a {'file' if frames else 'folder'}, where "
                                 f"{'the PNG frames' if frames else 'the video'} of {video.name} would go: "
                                 f"--overwrite replaces outputs, not other kinds of files; remove it, or choose "
                                 f"another --output-dir")
    check_crf(args.codec or "h264", args.crf)  # the writers check it per video, after the folder is made
    check_model_options(args)
    made_output_dir = not output_dir.exists()
    made_above = missing_folders(output_dir)  # -o a/b/out: a and b where missing, made with it
    # a process whose share is done waits at the last barrier for the others, which can take hours: the process
    # group's default timeout (30 min with gloo, 10 with NCCL) ended it there, and the launcher then stopped the
    # others mid-video (gloo counts the timeout in 32-bit milliseconds: under 24.8 days)
    state = PartialState(cpu=accelerate_on_cpu(), timeout=BARRIER_TIMEOUT)
    state.wait_for_everyone()  # every process has looked before one makes it: the main one, finding the folder
    output_dir.mkdir(parents=True, exist_ok=True)  # another had just made, left it behind empty when all failed
    try:
        student = pipeline_class_name(args.model) != "StarVSRPipeline"  # it ignores the diffusion options
        # --dtype as the weights get it here (the record compares that: "auto" and the dtype it resolves to are one)
        dtype = DTYPE_FLAGS[resolve_dtype(args.dtype, state.device if args.device == "auto" else
                                          resolve_device(args.device), student=student)]
        ledger = OverwriteLedger(output_dir, ledger_settings(batch_settings(args, ignored=DIFFUSION_DEFAULTS if student
                                                                            else ()), dtype))
        if args.overwrite:  # go on with a batch stopped under --overwrite: skip what its ledger lists
            redone, note = ledger.finished({outputs[v].name: v for v in videos}) if not args.restart else (set(), None)
            todo = [v for v in videos if outputs[v].name not in redone]
        else:
            redone, note = set(), None
            todo = [v for v in videos if not outputs[v].exists()]
            if ledger.path.is_file():
                note = ("a batch run here with --overwrite did not redo every video (it was stopped, or skipped some); "
                        "run it again with --overwrite to go on (the outputs it has not redone are old ones)")
        if state.num_processes > 1:  # the main process's list for all: each process's own look at the folder could
            # differ (an output another run finished in between), and the split of two lists then left a video to none
            shared = [[str(video) for video in todo]]
            broadcast_object_list(shared, from_process=0)
            todo = [Path(name) for name in shared[0]]
        # each output as it is when the batch takes its list (`_output_stamp`): one another run writes from now on is
        # new at the end (stamped only when the batch got to the video, one another batch finished before then looked
        # unfinished: review)
        stamps = {video: _output_stamp(outputs[video]) for video in todo}
        state.wait_for_everyone()  # every process has read the ledger before the main one starts a new one
        unreadable: list[str] = []  # videos whose existing output cannot be read: not done (the main process's look)
        if state.is_main_process:
            for video in videos:  # progress folders a killed run left beside its finished output
                remove_finished_progress(outputs[video])
            remove_stale_temporaries(output_dir)  # and its half-written outputs, of other names too (another --codec)
            for line in (*renamed_lines(videos, names, args.codec, kept, frame_folders),
                         earlier_names_line(names, made_from, output_dir)):
                if line:
                    print(f"note: {line}")
            if note:
                print(f"note: {note}")
            if not args.overwrite:  # e.g. a --max-frames preview batch run here before this full one
                lines, unreadable = _existing_output_notes(videos, outputs, output_dir, args, ledger.settings, dtype,
                                                           made_from)
                for line in lines:
                    print(f"note: {line}")
            stray = stray_images_note(input_dir)
            if stray:
                print(f"note: {stray}")
            for link in broken:  # they were left out without a word
                print(broken_link_line(link), file=sys.stderr)
            for video, reason in too_long.items():
                print(f"skipped {video}: {reason}", file=sys.stderr)
            if subfolders:
                print(f"note: {other_subfolders_note(input_dir, subfolders)}")
            if args.overwrite and not redone:
                ledger.start()
            partly = sum((partial_folder(outputs[v]) / MANIFEST).is_file() for v in todo) if not args.restart else 0
            done = sum(outputs[v].exists() for v in videos) - len(unreadable)
            status = (f"{len(videos) - len(todo)} of {len(videos)} videos already redone by this batch under "
                      f"--overwrite in an earlier run that did not finish it (stopped, or a video skipped) or in one "
                      f"running now (--restart redoes them too)" if redone else  # (a second batch running: review)
                      f"{done} of {count_of(len(videos), 'video')} already done"
                      + (" (--overwrite: redone)" if args.overwrite else ""))
            print(f"{status}; {len(todo)} to go on {count_of(state.num_processes, 'process', 'processes')}"
                  + (f", {partly} of them partly done" if partly else ""))
        state.wait_for_everyone()  # the ledger is there before any process adds to it
        say = partial(process_line, state.process_index if state.num_processes > 1 else None)
        deinterlace = deinterlace_choice(args.deinterlace)
        with state.split_between_processes(todo) as mine:
            pipe = _load(args, device=state.device if args.device == "auto" else None) if mine else None
            failed, busy = [], []  # names of the videos skipped; busy: (output, `_output_stamp`) left to another run
            for video in mine:
                if args.overwrite and outputs[video].name in ledger.finished({outputs[video].name: video})[0]:
                    say(f"skipped {video}: another upscale-batch --overwrite on {output_dir} redid it meanwhile")
                    continue  # two --overwrite batches on one folder share the work, as two plain ones do
                signature = input_signature(video)  # (before it is read: one changed meanwhile is not recorded as new)

                def record() -> None:  # which input made the output, with what: once it is done, before it is in place
                    try:
                        record_output(output_dir, outputs[video].name,
                                      output_settings(ledger.settings, video, outputs[video], dtype), source=video.name,
                                      signature=signature)
                    except OSError as error:  # (said as the video's own write failing: final review)
                        raise cannot_write(output_dir / RECORD_NAME, error) from None

                outcome = _upscale_video_of_batch(pipe, video, outputs[video], args, deinterlace,
                                                  state.is_local_main_process, say, several=state.num_processes > 1,
                                                  finishing=record)
                if outcome is not None:
                    say(f"skipped {video}: {outcome.reason}", sys.stderr)
                    if outcome.busy:
                        busy.append((outputs[video].name, stamps[video], video.name))
                    else:
                        failed.append(video.name)
                    continue
                if args.overwrite:
                    ledger.add(outputs[video].name, video)
                say(f"wrote {outputs[video]}")
        # every process's skipped videos (the gather waits for all, as a barrier would): one total, not one per process
        skipped = list(failed)
        if state.num_processes > 1:
            skipped = [name for names in gather_object([skipped]) for name in names]
            busy = [name for names in gather_object([busy]) for name in names]
            # the last collective: end the process group while Python is whole. Left to the exit, a gloo thread
            # could drop the gather's last tensors while the interpreter shut down ("terminate called without an
            # active exception", SIGABRT: the idle process, which exits first, in one CI run), and the launcher
            # stopped the rest
            state.destroy_process_group()
        # left to another run that has not finished them (still writing, or stopped): not done by this batch either (it
        # exited 0 and, under --overwrite, deleted its ledger, the old output left as if redone). Finished: an output
        # there now that is not the one there when it was skipped (under --overwrite the old one was there all along)
        finished = [(name, source) for name, stamp, source in busy
                    if _output_stamp(output_dir / name) not in (None, stamp)]
        busy = sorted(name for name, stamp, _ in busy if _output_stamp(output_dir / name) in (None, stamp))
        if busy and state.is_main_process:
            them = "it" if len(busy) == 1 else "them"
            print(f"note: {_videos_were(len(busy))} left to another run writing {them}, which has not finished {them}: "
                  f"{listed(busy, 5)}; run this command again once it has ended", file=sys.stderr)
        # finished by a run that is no upscale-batch of this folder (which records an output as made from its input
        # before it puts it in place): an `upscale -o` into the folder, of another input, maybe (it counted as done,
        # exit 0: black-box hunt)
        recorded_now = recorded_inputs(output_dir)
        foreign = sorted(name for name, source in finished if recorded_now.get(name) != source)
        if foreign and state.is_main_process:
            one = len(foreign) == 1
            print(f"note: {listed(foreign, 5)} {'was' if one else 'were'} written meanwhile by a run that is no "
                  f"upscale-batch of {input_dir} (an upscale -o into {output_dir}?) and {'is' if one else 'are'} not "
                  f"recorded as made from {'its' if one else 'their'} input here; run this command again to check "
                  f"{'it' if one else 'them'}", file=sys.stderr)
        skipped += busy + foreign
        if args.overwrite and state.is_main_process:  # the batch ran to its end (a stopped one raised above) ...
            if skipped and not ledger.path.is_file():  # another batch on the folder ended, and removed the ledger
                print(f"note: {_videos_were(len(skipped))} not redone; running the same command again (after fixing "
                      f"what is named above) redoes every video: another batch on {output_dir} ended meanwhile, and "
                      f"the record of which videos this one redid went with it")
            elif skipped and set(skipped) <= set(busy):  # only videos another run still writes: a batch removes the
                # ledger once it has redone every video, and a rerun then redid them all ("to redo only it": black-box
                # hunt, two --overwrite batches at once)
                them = "it" if len(skipped) == 1 else "them"
                print(f"note: {_videos_were(len(skipped))} not redone by this run, left to another run writing {them} "
                      f"(above); once that run has ended, run the same command again only if it did not finish "
                      f"{them} (after another --overwrite batch of this folder that finished, a rerun redoes every "
                      f"video)")
            elif skipped:  # ... but did not redo every video: the ledger stays, so that a rerun redoes only those left
                print(f"note: {_videos_were(len(skipped))} not redone; run the same command again to redo only "
                      f"{'it' if len(skipped) == 1 else 'them'} "
                      f"(after fixing what is named above)")
            else:
                ledger.remove()
        if state.is_main_process:  # e.g. a run stopped with another --codec, which names the outputs otherwise
            for folder, size in unfinished_runs(output_dir, besides={partial_folder(o) for o in outputs.values()}):
                print(unfinished_note(folder, size))
    finally:  # every video failed, or the batch stopped before one was done (the model failed to load, Ctrl-C):
        # no folder left behind as if something were written (under --overwrite it held the ledger alone, which
        # listed nothing redone); the folders made above it go too (left behind empty: review)
        if made_output_dir and state.is_main_process and output_dir.is_dir() \
                and {p.name for p in output_dir.iterdir()} <= {LEDGER_NAME}:
            try:  # (best effort: not to hide the error that stopped the batch)
                (output_dir / LEDGER_NAME).unlink(missing_ok=True)
                output_dir.rmdir()  # (a second batch's file written meanwhile keeps it)
            except OSError:
                pass
            else:
                remove_empty_folders(made_above)
    skipped += [link.name for link in broken] + unreadable + [video.name for video in too_long]
    if skipped and state.is_main_process:
        print(f"{_videos_were(len(skipped))} skipped (the reason{'s are' if len(skipped) > 1 else ' is'} above): "
              f"{', '.join(sorted(skipped))}",
              file=sys.stderr)
    return 1 if skipped else 0
