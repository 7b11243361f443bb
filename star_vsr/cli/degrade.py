"""``star-vsr degrade HR_VIDEO -o LR_VIDEO``: a realistic low-quality version of a clean video.

Real-ESRGAN's second-order chain (blur, resize, noise, JPEG, twice, then resize + sinc) with one
draw of parameters for the whole video, so the degradation is coherent in time, followed by
video-codec compression (libx264 or mpeg4). Long videos are processed in segments that share the drawn
parameters, of 64 frames or 256 MiB of float32 HR frames, whichever is fewer (64 at 360p, 24 at 720p,
10 at 1080p, 2 at 4K); each segment is compressed as a clip (a keyframe at each segment start, like a
GOP: at 1080p and above a far shorter one than the 32-frame 720p clips of the training configs). The
result is written as a video (H.264 for .mp4, lossless FFV1 for .mkv with ``--codec ffv1``) with the input's
frame rate and audio. Same input and ``--seed`` give
the same frames on the same kind of CPU, whatever the number of threads (H.264 is encoded without x264's assembly
code for that: with it, runs differed; the chain's resizes run on one thread, as torch's resize kernels round the
last bit differently by thread count and the Poisson noise after them turned that into other frames).

A folder of clips (videos and frame folders, as REDS4 / Vid4 lay out GT/calendar/*.png) is
degraded clip by clip into the folder -o, named as upscale-batch names its outputs (--codec png:
LR/calendar/), each clip with its own seed (--seed plus the CRC-32 of its file or folder name, suffix
included: calendar.mp4 draws another degradation than calendar.mkv); clips already
there are skipped unless --overwrite, so a stopped run goes on (a stopped --overwrite run with other settings
too, with or without --overwrite: the clips it had not redone yet are redone); one of another size or fewer frames
than this run makes (another program's file) is named in a note, and one that cannot be read as not done (the
exit status is then 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import zlib
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..errors import InputError
from ..json_files import loads_json
from .arguments import (ParagraphsHelpFormatter, add_fps_argument, check_fps_for_clips, input_notes, path_argument,
                        seed_argument)

if TYPE_CHECKING:
    from ..io.probe import VideoInfo

#: Bytes of float32 HR frames processed at once (bounds memory for large frames).
SEGMENT_BYTES = 256 * 2 ** 20
MAX_SEGMENT_FRAMES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("degrade", help="make a realistic low-quality version of a clean video",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("input", type=path_argument,
                        help="clean (HR) video file or image folder, or a folder of them (videos and "
                             "frame folders; then -o is a folder)")
    parser.add_argument("-o", "--output", type=path_argument, required=True,
                        help="degraded (LR) video to write (a folder for a folder of clips)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="downscale factor (default 4)")
    parser.add_argument("--preset", default="medium", choices=("light", "medium", "heavy"),
                        help="degradation strength (default medium)")
    parser.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    parser.add_argument("--codec", default=None, choices=("h264", "h265", "ffv1", "png"),
                        help="codec of the written file (default: from the output name: H.264 for a video name, "
                             ".mp4 or .mkv alike; PNG frames for a folder or a name without a suffix; for a folder "
                             "of clips, H.264: .mp4, .mkv and .mov clips keep their name, other videos and frame "
                             "folders become NAME.mp4)")
    parser.add_argument("--crf", type=int, default=None,
                        help="x264/x265 quality of the written file, 0..51, lower is better (default 18 for h264, 24 "
                             "for h265)")
    parser.add_argument("--deinterlace", default="auto", choices=("auto", "on", "off"),
                        help="deinterlace the input first with FFmpeg's bwdif (auto: when it is flagged interlaced)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_fps_argument(parser)
    parser.add_argument("--print-params", action="store_true",
                        help="print the drawn degradation parameters as JSON on standard output (the other "
                             "messages then go to standard error; for a folder of clips, one line per clip: "
                             "{\"clip\": NAME, \"params\": {...}})")
    parser.set_defaults(func=run)


#: The settings a folder of clips was degraded with, kept in the output folder (hidden: not a clip), so that a rerun
#: with other settings is refused instead of mixing two kinds of LR clips in one folder.
SETTINGS_NAME = ".star-vsr-degrade.json"
#: File in ``-o`` naming the outputs that still hold clips of the earlier settings while an ``--overwrite`` run with
#: new ones is unfinished: a stopped one, rerun without ``--overwrite``, redoes them instead of counting them done.
PENDING_NAME = ".star-vsr-degrade-pending.json"
#: Which clip each output of a folder was made from (``batch_record``'s lines), so that a clip added later does not
#: take over an output of another (``a.avi``'s ``a.mp4``, counted as done for an ``a.mp4`` added since).
INPUTS_NAME = ".star-vsr-degrade-inputs.jsonl"


class ClipTooSmallError(InputError):
    """A clip too small to degrade at the scale into its output's format: one clip of a folder is skipped, the
    others go on (it stopped the folder there on every rerun)."""


def clip_seed(seed: int, name: str) -> int:
    """The seed of clip ``name`` in a folder degraded with ``--seed seed``: ``seed`` plus the CRC-32 of the name
    (mod 2^63), so every clip draws its own degradation and adding or removing clips changes no other one."""
    # (surrogateescape: a name that is no UTF-8, its bytes as they are on disk, stopped the whole folder)
    return (seed + zlib.crc32(name.encode("utf-8", "surrogateescape"))) % 2 ** 63


def run(args: argparse.Namespace) -> int:
    from ..io.folders import clip_collection
    from ..io.probe import check_exists

    source = check_exists(args.input)  # a missing input is the first thing to say, before anything about -o
    clips = clip_collection(source)
    if clips:
        return _degrade_folder(args, source, clips)
    from ..outputs import IMAGE_OUTPUTS, check_new_video_output

    suffix = Path(args.output).suffix.lower()
    if suffix in IMAGE_OUTPUTS:  # (was "star-vsr does not write videos as .png files", where upscale writes one)
        raise InputError(f"degrade writes a video or a folder of PNG frames, not one {IMAGE_OUTPUTS[suffix]} image "
                         f"({args.output}); name a video (.mp4, .mkv) or a folder without a suffix, e.g. -o "
                         f"{Path(args.output).with_suffix('')}")
    output = check_new_video_output(args.output, args.overwrite, args.input, made="degraded",
                                    codec=args.codec)
    _degrade_file(args, source, output, args.seed, args.fps)
    return 0


def _degrade_folder(args: argparse.Namespace, folder: Path, clips: list[Path]) -> int:
    """Every clip (video or frame folder) of ``folder`` into the folder ``-o``, each with its own seed
    (``clip_seed``); outputs that exist are skipped unless ``--overwrite``, so a stopped run goes on. The settings
    are recorded in ``-o`` (``SETTINGS_NAME``); a rerun with others is refused unless ``--overwrite``, which lists
    the outputs it has still to redo (``PENDING_NAME``) until it has, so that a stopped one goes on too."""
    from ..batch_record import check_record, made_from_changed_inputs, recorded_inputs
    from ..io import output_names
    from ..io.atomic import missing_folders, name_too_long, remove_empty_folders, remove_stale_temporaries
    from ..io.folders import (broken_link_line, broken_links, check_output_outside_clips, other_subfolders,
                              other_subfolders_note, stray_images_note)
    from ..io.writer import check_crf
    from ..outputs import check_new_output, check_output_folder_name, check_writable, write_text_atomic
    from .existing_outputs import (check_existing_outputs, earlier_names_line, existing_output_lines,
                                   made_from_changed_inputs_line, made_from_other_inputs_line, renamed_lines)

    output_dir = Path(args.output)
    check_output_folder_name(output_dir, "the degraded clips")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{folder} is a folder of clips, so -o must be a folder; {output_dir} is a file")
    if output_dir.exists() and os.path.samefile(folder, output_dir):
        raise InputError(f"-o {output_dir} is the input folder; choose another folder for the degraded clips")
    check_output_outside_clips(output_dir, clips, "-o")  # (it wrote there: black-box hunt)
    check_fps_for_clips(args.fps, folder, clips)
    folders = {clip.name for clip in clips if clip.is_dir()}
    # the names earlier runs gave outputs that exist stay theirs (an a.mp4 added beside a.avi was paired with
    # a.avi's output a.mp4, counted as done: a.avi's frames under a.mp4's name)
    check_record(output_dir, INPUTS_NAME)
    made_from = recorded_inputs(output_dir, INPUTS_NAME)
    kept = {source: out for out, source in made_from.items() if (output_dir / out).exists()}
    names = output_names([clip.name for clip in clips], args.codec, folders=folders, kept=kept)
    outputs = {clip: output_dir / names[clip.name] for clip in clips}
    too_long = {clip: reason for clip in clips if (reason := name_too_long(outputs[clip]))}  # skipped
    clips = [clip for clip in clips if clip not in too_long]
    if not clips:
        first, reason = next(iter(too_long.items()))
        raise InputError(f"no clip of {folder} can be degraded into {output_dir}: {first.name}: {reason}")
    check_writable(outputs[clips[0]])
    check_crf(args.codec or "h264", args.crf)
    if args.overwrite:
        for clip in clips:
            check_new_output(outputs[clip], overwrite=True, source=clip)
    frame_folders = any(clip.is_dir() for clip in clips)  # (as they take effect: `--codec h264` typed out is the
    # default, no other setting; --fps is no setting of a folder of video files)
    settings = _effective_settings({"preset": args.preset, "scale": args.scale, "seed": args.seed, "codec": args.codec,
                                    "crf": args.crf, "fps": None if args.fps is None else str(args.fps),
                                    "deinterlace": args.deinterlace}, frame_folders)
    record = output_dir / SETTINGS_NAME
    try:
        earlier = loads_json(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet (or a folder degraded before the record existed): nothing to compare
        earlier = None
    # a record's --fps as written: None where it had no effect then (no frame folder), not the default a frame folder
    # added since would read at (it was refused as "--fps 30 -> 24" though no clip had been read at 30)
    earlier = _effective_settings(earlier, None) if isinstance(earlier, dict) else None
    changed = [key for key in settings if earlier is not None and None not in (earlier.get(key), settings[key])
               and earlier.get(key) != settings[key]]  # (None: no effect on one side, e.g. --fps on PNG frames)
    if changed and not args.overwrite:
        listed = ", ".join(f"--{key} {earlier[key]} -> {settings[key]}" for key in changed)
        raise InputError(f"{output_dir} holds clips degraded with other settings ({listed}); a rerun would mix "
                         f"them: choose another -o, or pass --overwrite to redo every clip with these settings")
    made_output_dir = not output_dir.exists()
    made_above = missing_folders(output_dir)  # -o a/b/out: a and b where missing, made with it
    pending_record = output_dir / PENDING_NAME
    try:  # outputs a stopped --overwrite run had not yet redone with these settings
        pending = set(loads_json(pending_record.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pending = set()
    if changed:  # --overwrite with other settings: every clip there is old
        pending |= {outputs[clip].name for clip in clips if outputs[clip].exists()}
    if pending:
        write_text_atomic(pending_record, json.dumps(sorted(pending)) + "\n")
    # the settings recorded (written just before the first clip): an --fps that has no effect now keeps the rate
    # earlier frame folders were read at, which one added later must match
    recorded = {**settings, **{key: earlier[key] for key in settings if settings[key] is None and earlier
                               and earlier.get(key) and not changed}}
    todo = [clip for clip in clips if args.overwrite or not outputs[clip].exists() or outputs[clip].name in pending]
    remove_stale_temporaries(output_dir)  # half-written clips a killed run left, of other names too (another --codec)
    unreadable: list[str] = []
    if not args.overwrite:  # a file in -o only named like an output (another program's, the input copied in)
        found = check_existing_outputs([clip for clip in clips if clip not in todo], outputs, args.codec,
                                       partial(_expected_output, args.scale, args.codec))
        done = {clip: outputs[clip].name for clip in clips if clip not in todo}
        changed = found.readable(made_from_changed_inputs(output_dir, done, INPUTS_NAME))
        found.forget_sizes_of(changed)  # said below: not "another program's file?" of its own output
        unreadable = found.not_done(done)  # exit 1
        for line in existing_output_lines(found, args.codec, "another program's file?"):
            say(args, f"note: {line}")
        for line in (made_from_other_inputs_line({clip.name: out for clip, out in done.items()}, made_from),
                     made_from_changed_inputs_line(changed)):
            if line:
                say(args, f"note: {line}")
    for line in (*renamed_lines(clips, names, args.codec, kept, folders),  # (degrade renamed without a word)
                 earlier_names_line(names, made_from, output_dir)):
        if line:
            say(args, f"note: {line}")
    for note in (stray_images_note(folder), other_subfolders_note(folder, other_subfolders(folder, [*clips, *too_long],
                                                                                        besides=[output_dir]))):
        if note:
            say(args, f"note: {note}")
    failed = []
    for link in broken_links(folder):  # they were left out without a word; said before the count, which leaves them out
        print(broken_link_line(link), file=sys.stderr)
        failed.append(link.name)
    for clip, reason in too_long.items():
        print(f"skipped {clip}: {reason}", file=sys.stderr)
        failed.append(clip.name)
    redo = sum(outputs[clip].name in pending and outputs[clip].exists() for clip in todo) if not args.overwrite else 0
    say(args, f"{len(clips) - len(todo) - len(unreadable)} of {len(clips)} clip{'s' * (len(clips) != 1)} already "
              f"degraded in "
              f"{output_dir}; {len(todo)} to go "
              f"(each clip's seed: --seed {args.seed} plus the CRC-32 of its file or folder name)"
              + (f"; {redo} of them still hold the earlier settings' clips, which a stopped --overwrite run had not "
                 f"redone yet" if redo else ""))
    try:
        if earlier != settings:  # before any clip: a stopped run keeps it
            write_text_atomic(record, json.dumps(recorded, indent=2) + "\n")
        failed += _degrade_clips(args, todo, outputs, settings, pending, pending_record)
    finally:
        if made_output_dir and output_dir.is_dir() and [p.name for p in output_dir.iterdir()] == [SETTINGS_NAME]:
            record.unlink()  # no clip written (every one failed, or the first stopped: Ctrl-C, an error): no folder
            output_dir.rmdir()  # left as if something were written
            remove_empty_folders(made_above)  # nor the folders made above it (review)
    if failed:
        were = "s could not be degraded and were" if len(failed) != 1 else " could not be degraded and was"
        print(f"{len(failed)} clip{were} skipped (the reasons are above): {', '.join(failed)}", file=sys.stderr)
    if unreadable:  # (as upscale-batch's last line counts them)
        many = len(unreadable) != 1
        print(f"{len(unreadable)} clip{'s are' if many else ' is'} not done, {'their' if many else 'its'} output "
              f"cannot be read (above): {', '.join(unreadable)}", file=sys.stderr)
    if not pending:
        pending_record.unlink(missing_ok=True)
    return 1 if failed or unreadable else 0


def _degrade_clips(args: argparse.Namespace, clips: list[Path], outputs: dict[Path, Path], settings: dict[str, Any],
                   pending: set[str], pending_record: Path) -> list[str]:
    """`_degrade_file` for each of a folder run's ``clips`` (to do) into ``outputs``, each recorded as made with
    ``settings`` once written (and struck off ``pending``, the outputs a stopped ``--overwrite`` run had still to
    redo, kept in ``pending_record``); a clip that cannot be degraded is skipped. Returns the skipped clips' names."""
    from ..batch_record import input_signature, record_output
    from ..errors import (CorruptVideoError, OutputExistsError, RanOutOfMemoryError, UnsupportedVideoError,
                          VideoNotFoundError)
    from ..interrupts import raise_if_interrupted
    from ..outputs import write_text_atomic

    failed = []
    for clip in clips:
        raise_if_interrupted()  # Ctrl-C whose KeyboardInterrupt a progress bar's destructor lost: no next clip
        output = outputs[clip]
        meanwhile = (f"skipped {clip}: {output} was written meanwhile by another run (a second degrade of this "
                     f"folder?) or program; left as it is, which a rerun of this command checks")
        if not args.overwrite and output.name not in pending and (output.exists() or output.is_symlink()):
            print(meanwhile, file=sys.stderr)  # (a second degrade of the folder degraded every clip again, to throw
            continue  # each away with advice to pass --overwrite: black-box hunt)
        try:
            signature = input_signature(clip)  # (before it is read, as upscale-batch takes it)
            _degrade_file(args, clip, output, clip_seed(args.seed, clip.name),  # a video file keeps its rate
                          args.fps if clip.is_dir() else None, folder=True, replace=output.name in pending)
            record_output(output.parent, output.name, settings, source=clip.name, signature=signature,
                          record=INPUTS_NAME)
            if output.name in pending:
                pending.discard(output.name)
                write_text_atomic(pending_record, json.dumps(sorted(pending)) + "\n")
        except (CorruptVideoError, UnsupportedVideoError, ClipTooSmallError, VideoNotFoundError,
                RanOutOfMemoryError) as error:  # this clip, not the folder (VideoNotFoundError: removed since the
            # folder was listed; it stopped the run. RanOutOfMemoryError: an encoder that could not start)
            print(f"skipped {clip}: {error}", file=sys.stderr)
            failed.append(clip.name)
        except OutputExistsError:  # written meanwhile by another run on this folder: done (not "pass --overwrite")
            print(meanwhile, file=sys.stderr)
    return failed


def _effective_settings(settings: dict[str, Any], frame_folders: Optional[bool]) -> dict[str, Any]:
    """A folder's degrade ``settings`` (the flags as given, None where left out; or, with ``frame_folders`` None,
    `SETTINGS_NAME`'s record of them, whose ``--fps`` stays as written) as they take effect: the codec and CRF a
    left-out ``--codec`` / ``--crf`` resolve to (H.264 for a folder of clips, its default CRF), ``--fps`` as the
    rate ``frame_folders`` are read at (default `DEFAULT_FOLDER_FPS`), None where it has no effect (no frame
    folder among the clips; PNG frames written, which store no rate). A rerun that typed out a default was refused
    as "other settings" (``--codec (not given) -> h264``)."""
    from ..io.probe import DEFAULT_FOLDER_FPS
    from ..io.writer import check_crf

    codec = settings.get("codec") or "h264"
    effective = {**settings, "codec": codec}
    try:
        effective["crf"] = check_crf(codec, settings.get("crf"))
        fps = settings.get("fps")
        if frame_folders is not None:
            effective["fps"] = None if codec == "png" or not frame_folders else \
                str(Fraction(fps if fps is not None else DEFAULT_FOLDER_FPS))
    except (InputError, TypeError, ValueError):  # a record edited by hand: compared as it is
        pass
    return effective


def _expected_output(scale: int, codec: Optional[str], info: VideoInfo, output: Path) -> tuple[int, int, int]:
    """(frames, width, height) of the clip ``degrade`` makes of an input like ``info`` into ``output`` with
    ``codec``: every frame, the input cropped as ``hr_crop`` crops it, divided by ``scale``."""
    from ..io.writer import output_size_multiple

    crop_h, crop_w = hr_crop(info.height, info.width, scale, output_size_multiple(output, codec))
    return info.num_frames, crop_w // scale, crop_h // scale


def hr_crop(height: int, width: int, scale: int, size_multiple: tuple[int, int]) -> tuple[int, int]:
    """(h, w) that ``degrade`` crops a ``width`` x ``height`` input to: multiples of the scale times what the output
    format stores unpadded (``size_multiple``, (h, w): 2 x 2 for 4:2:0), so that the LR file has exactly 1 / scale
    of the HR size that `star-vsr evaluate` compares with."""
    multiple_h, multiple_w = scale * size_multiple[0], scale * size_multiple[1]
    return height - height % multiple_h, width - width % multiple_w


def _degrade_file(args: argparse.Namespace, source: Path, output: Path, seed: int, fps: Any = None,
                 folder: bool = False, replace: bool = False) -> None:
    """``source`` (a video or frame folder) degraded with ``args``' preset, scale and codec and ``seed``,
    written to ``output``; ``fps``: the rate of a frame folder (``--fps``); ``folder``: one clip of a folder;
    ``replace``: an existing ``output`` is replaced without ``--overwrite`` (one of earlier settings)."""
    import torch

    from ..degradations import DegradationConfig, RealWorldDegradation
    from ..degradations.frames import clip_to_frames, frames_to_clip
    from ..io import VideoWriter, deinterlace_choice, open_video, probe_video
    from ..io.atomic import parent_folders
    from ..io.writer import writes_frames

    deinterlace = deinterlace_choice(args.deinterlace)
    frames_output = writes_frames(output, args.codec)
    for note in input_notes(source, deinterlace, fps, frames_output=frames_output):  # a corrupt input fails here
        say(args, f"note: {note}")
    folder_fps = {} if fps is None else {"folder_fps": fps}
    info = probe_video(source, **folder_fps)
    degradation = RealWorldDegradation(DegradationConfig.preset(args.preset), args.scale)
    generator = torch.Generator().manual_seed(seed)
    params = degradation.sample_params(generator)
    audio = source if info.has_audio and not info.is_image_folder else None
    reader = open_video(source, deinterlace=deinterlace, **folder_fps)
    # (parent_folders: the folders made for the output go again with a failed write; they were left empty)
    with parent_folders(output), reader, VideoWriter(output, info.frame_rate, codec=args.codec, crf=args.crf,
                                                     audio_from=audio, progress=True, total_frames=info.num_frames,
                                                     pixel_aspect=info.pixel_aspect, frame_times=info.timeline,
                                                     reproducible=True, overwrite=args.overwrite or replace,
                                                     tags_from=None if info.is_image_folder else source) as writer:
        crop_h, crop_w = hr_crop(info.height, info.width, args.scale, writer.size_multiple)
        multiple_h, multiple_w = args.scale * writer.size_multiple[0], args.scale * writer.size_multiple[1]
        if crop_h == 0 or crop_w == 0:
            block = writer.size_multiple
            if min(info.height, info.width) >= args.scale and block != (1, 1):  # the format's block is the limit
                raise ClipTooSmallError(
                    f"{source} is {info.width}x{info.height}, too small to downscale by {args.scale} into {output}: "
                    f"its format stores frames in blocks of {block[1]}x{block[0]} pixels, so the input needs at "
                    f"least {multiple_w}x{multiple_h}; FFV1 (`-o NAME.mkv --codec ffv1`) and PNG frames (`-o FOLDER`) "
                    f"store any size")
            raise ClipTooSmallError(f"{source} is {info.width}x{info.height}, too small to downscale by {args.scale}")
        if (crop_h, crop_w) != (info.height, info.width):
            say(args, f"note: cropping {info.width}x{info.height} to {crop_w}x{crop_h} (a multiple of "
                      f"{multiple_w}x{multiple_h}: the scale times the output format's block); evaluate "
                      f"results against {source} with `star-vsr evaluate --crop-gt`")
        segment = max(1, min(MAX_SEGMENT_FRAMES, SEGMENT_BYTES // (crop_h * crop_w * 3 * 4)))
        writer.start_progress()  # frames arrive a segment at a time: the rate must count the first one's work
        for frames in reader.iter_chunks(segment):  # (k, h, w, 3) uint8
            hr = frames_to_clip(frames[:, :crop_h, :crop_w])  # (k, 3, h, w)
            lr = degradation.apply(hr, params, generator)  # (k, 3, h/s, w/s) on 8-bit levels
            writer.write(clip_to_frames(lr))
    if args.print_params:  # JSON alone on stdout: one object, or one line per clip of a folder (those written)
        drawn = dataclasses.asdict(params)
        print(json.dumps({"clip": source.name, "params": drawn}) if folder else json.dumps(drawn, indent=2))
    say(args, f"wrote {output} ({crop_w // args.scale}x{crop_h // args.scale}, preset {args.preset}, seed {seed})")


def say(args: argparse.Namespace, text: str) -> None:
    """A message for the user: on standard output, or on standard error under ``--print-params`` (whose JSON
    then stands alone on standard output)."""
    print(text, file=sys.stderr if args.print_params else sys.stdout)
