"""``star-vsr evaluate --pred VIDEO --gt VIDEO``: PSNR-Y, SSIM-Y and E*warp per clip and averaged.

``--pred`` and ``--gt`` are two videos (files or image folders) or two folders of clips (video files
or folders of frames, as REDS4 / Vid4 and ``upscale-batch --codec png`` lay them out) matched by
name (a video's without its extension). PSNR/SSIM crop ``--scale`` pixels at every border; E*warp warps
the prediction with optical flow estimated on the ground truth and is reported x 1e3, as papers do (lower is
better; a clip against itself scores a little above 0, the flow being estimated). Its flow (OpenCV's DIS) and mask
(pixels whose match leaves the frame are left out) are not those of Lai et al.'s released code
(star_vsr.metrics.warping): compare methods scored here, not published tables. A clip's PSNR is the mean of its
frames' (BasicSR's convention), so one frame equal to its ground truth gives the clip PSNR-Y inf (null in --json),
and so has the mean over clips. ``--metrics lpips,dists,...`` adds
learned metrics (pyiqa, from weight files already on disk; nothing is downloaded). A clip of one frame has no E*warp
(the JSON's "ewarp_mean_over" counts the clips the mean E*warp is over). A clip of a folder that cannot be
opened or fails to decode partway is skipped with its reason: the mean is over the others (its row reads "mean of
2/3", the JSON's "mean_over" counts them), --json lists it under "skipped", and the exit status is 1. A
prediction without a ground truth is not scored: a note names it, and --json lists it under "no_ground_truth".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, TextIO

from ..errors import CorruptVideoError, InputError, UnsupportedVideoError, listed
from .arguments import ParagraphsHelpFormatter, device_argument, max_frames_argument, path_argument
from .columns import pad, text_width

if TYPE_CHECKING:  # torch and pyiqa load only when learned metrics are asked for
    import torch

    from ..metrics.learned import LearnedMetric

COLUMNS = (("psnr_y", "PSNR-Y", "{:.3f}"), ("ssim_y", "SSIM-Y", "{:.4f}"), ("ewarp", "E*warp", "{:.3f}"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="PSNR-Y / SSIM-Y / E*warp of predictions against ground truth",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("--pred", type=path_argument, required=True,
                        help="predicted video, image folder, or folder of clips (videos or frame folders)")
    parser.add_argument("--gt", type=path_argument, required=True,
                        help="ground-truth video, image folder, or folder of clips (videos or frame folders)")
    parser.add_argument("--scale", type=int, default=4, help="border crop in pixels (the SR scale; default 4)")
    parser.add_argument("--no-warp", action="store_true", help="skip the warping error (faster)")
    parser.add_argument("--crop-gt", action="store_true",
                        help="crop the ground truth to the prediction's size (top-left) when it is larger by less "
                             "than 2 x --scale pixels: what `star-vsr degrade` cuts off")
    parser.add_argument("--max-frames", type=max_frames_argument, default=None, metavar="N",
                        help="score only the first N frames of each clip (predictions made with upscale "
                             "--max-frames N; default: every frame, and the counts must match)")
    parser.add_argument("--json", type=path_argument, metavar="FILE",
                        help="also write per-clip and mean results as JSON; - writes them to standard output "
                             "(the table then goes to standard error)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--metrics", default="", metavar="NAMES",
                        help="learned metrics to add, comma-separated: lpips, lpips-vgg, dists (full-reference), "
                             "musiq, clipiqa (no-reference); needs pyiqa and local weight files (README)")
    parser.add_argument("--weights-dir", type=path_argument, metavar="DIR",
                        help="folder with the learned metrics' weight files (default: torch's hub folder, "
                             "where pyiqa keeps them)")
    parser.add_argument("--device", default="auto", type=device_argument,
                        help="where the learned --metrics run: auto (CUDA if present), cpu, cuda, cuda:1, ... "
                             "(PSNR-Y, SSIM-Y and E*warp run on the CPU)")
    parser.set_defaults(func=run)


def _is_clip_folder(path: Path) -> bool:
    """A folder of clips (videos or frame folders), not the frame folder of one clip."""
    from ..io.folders import clip_collection

    return bool(clip_collection(path))


def pair_clips(pred: Path, gt: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name, pred, gt) for a single pair or for two folders of clips (videos or frame folders) matched by name,
    and the names of the predictions without a ground truth (left out with a note)."""
    from ..io.folders import clip_name  # (not at import: the star_vsr.io package loads cv2, which reads
    # OPENCV_LOG_LEVEL once, before the command sets it)

    from ..io.probe import check_exists

    # as every command checks its inputs ('-' said to be standard input; review), "~/GT" expanded
    pred, gt = check_exists(pred), check_exists(gt)
    if _is_clip_folder(gt):
        from ..io.folders import (broken_link_line, broken_links, is_frame_folder, other_subfolders,
                                  other_subfolders_note, stray_images_note)

        if not pred.is_dir() or is_frame_folder(pred):
            raise InputError(f"--gt {gt} is a folder of clips (videos or frame folders), so --pred must be one too")
        from ..io.folders import clip_key, clips_by_name, clips_in_folder

        gt_clips = clips_by_name(gt, "--gt")
        pred_clips = clips_by_name(pred, "--pred", needed=gt_clips)
        for folder, clips in {gt: gt_clips, pred: pred_clips}.items():  # (a subfolder of videos left out of the
            for note in (stray_images_note(folder),  # mean without a word; info and the batch commands said so)
                         other_subfolders_note(folder, other_subfolders(folder, list(clips.values())))):
                if note:
                    print(f"note: {note}")
        lost = broken_links(gt)  # a clip the mean leaves out (it was, without a word)
        if lost:
            raise InputError(f"ground-truth clips in {gt} are links to files that do not exist: "
                             f"{listed([f'{link.name} -> {os.readlink(link)}' for link in lost], 10)}; restore "
                             f"them, or score a --gt folder without them")
        for link in broken_links(pred):
            print(broken_link_line(link), file=sys.stderr)
        missing = sorted(set(gt_clips) - set(pred_clips))
        if missing:
            raise InputError(f"no prediction in {pred} for {len(missing)} of the {len(gt_clips)} ground-truth clips "
                             f"in {gt}: {listed(missing, 10)} (a mean over fewer clips would not compare with other "
                             f"runs); upscale them or score a --gt folder without them")
        extra = sorted(path.name for path in clips_in_folder(pred) if clip_key(path) not in gt_clips)  # (two of
        if extra:  # a name the pairing leaves out: both named)
            print(f"note: not scored, no ground truth in {gt}: {listed(extra, 10)}")
        # named as the ground truth names them (the keys are in NFC: `clips_by_name`)
        return [(clip_name(gt_clips[name]), pred_clips[name], gt_clips[name]) for name in gt_clips], extra
    if _is_clip_folder(pred):
        raise InputError(f"--pred {pred} is a folder of clips (videos or frame folders), so --gt must be one too "
                         f"(clips are paired by name); for one clip, give --pred the video file or frame folder in "
                         f"it")
    # ("--gt ." was named "" in the table and the JSON)
    return [(clip_name(Path(os.path.abspath(gt))), pred, gt)], []


def format_table(rows: dict[str, dict[str, float]], learned: Sequence[str] = ()) -> str:
    """The table of scores: a line per row (clip, or "mean"), a column per metric in ``rows`` (`COLUMNS`, then the
    ``learned`` ones), "-" where a row lacks one."""
    keys = [c for c in COLUMNS if any(c[0] in r for r in rows.values())] + [(n, n.upper(), "{:.4f}") for n in learned]
    cells = {name: [fmt.format(row[k]) if k in row else "-" for k, _, fmt in keys] for name, row in rows.items()}
    widths = [max(8, len(title), *(len(c[i]) for c in cells.values())) for i, (_, title, _) in enumerate(keys)]
    name_width = max(len("clip"), *(text_width(n) for n in rows))
    lines = [f"{'clip':<{name_width}}  " + "  ".join(f"{t:>{w}}" for (_, t, _), w in zip(keys, widths))]
    for name, row in cells.items():  # (LPIPS-VGG, 9 letters, and an E*warp of 1000 or more, were out of line)
        lines.append(f"{pad(name, name_width)}  " + "  ".join(f"{c:>{w}}" for c, w in zip(row, widths)))
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """``value`` (a score or a dict of them, nested) for JSON: NaN and infinities as None (null)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value if not isinstance(value, float) or math.isfinite(value) else None


def skipped_line(skipped: list[str], scored: list[str]) -> str:
    """The line after the table of a folder run where clips were skipped: how many, which (their reasons are printed
    as they happen), and which the mean is over (a few names: a folder of 500 clips listed every one)."""
    total = len(skipped) + len(scored)
    return (f"{len(skipped)} of {total} clips {'was' if len(skipped) == 1 else 'were'} skipped (the reasons are "
            f"above): {listed(skipped, 10)}; the mean is over the other {len(scored)} ({listed(scored, 5)})")


def run(args: argparse.Namespace) -> int:
    from ..outputs import json_on_stdout

    with json_on_stdout(args.json) as stdout:
        return _evaluate(args, stdout)


def _check_options(args: argparse.Namespace) -> Optional[torch.device]:
    """The refusals of options that cannot apply, before any work; the learned metrics' device (None without
    --metrics)."""
    if args.scale < 1:  # before any progress bar is drawn (the metrics check it too, per clip)
        raise InputError(f"--scale must be an integer >= 1 (the border crop in pixels), got {args.scale}")
    if args.metrics.strip() and not args.metrics.replace(",", "").strip():  # "--metrics ," named nothing
        raise InputError(f"--metrics {args.metrics!r} names no metric; give names such as lpips,dists, or leave it out")
    if args.weights_dir and not args.metrics.strip():
        raise InputError("--weights-dir is where the learned metrics' weight files are, but no --metrics was given "
                         "(for example --metrics lpips,dists); PSNR-Y, SSIM-Y and E*warp need no weights")
    if args.device != "auto" and not args.metrics.strip():
        raise InputError(f"--device {args.device} places the learned metrics, but no --metrics was given; PSNR-Y, "
                         f"SSIM-Y and E*warp run on the CPU")
    if not args.metrics.strip():
        return None
    from ..upscale import resolve_device  # torch only when asked for

    return resolve_device(args.device)


def _load_learned(args: argparse.Namespace, device: Optional[torch.device]) -> list[LearnedMetric]:
    """The ``--metrics`` networks; every metric's missing weight files named in one error."""
    from ..metrics.learned import check_weight_files, load_learned_metric  # pyiqa and torch only when asked for

    names = list(dict.fromkeys(n.strip().lower() for n in args.metrics.split(",") if n.strip()))
    check_weight_files(names, args.weights_dir)  # every name and file, before any network loads
    return [load_learned_metric(name, args.weights_dir, device=device) for name in names]


def _check_pairs(args: argparse.Namespace, clips: Sequence[tuple[str, Path, Path]],
                 learned: Sequence[LearnedMetric] = ()) -> dict[str, str]:
    """Every pair's sizes and frame counts (and frame sizes for the ``learned`` metrics), before minutes of scoring
    are thrown away; a note for each pair whose frame rates differ. Returns the clips of a folder that cannot be
    read ({name: why}), printed as skipped: the others are scored, as when a clip fails midway (one such clip
    stopped the whole folder)."""
    from ..io.probe import pixel_bit_depth
    from ..metrics.evaluate import check_pair

    unreadable: dict[str, str] = {}
    for name, pred, gt in clips:
        try:
            pred_info, gt_info, num_frames = check_pair(str(pred), str(gt), scale=args.scale, crop_gt=args.crop_gt,
                                                        max_frames=args.max_frames, warp=not args.no_warp)
        except (CorruptVideoError, UnsupportedVideoError) as error:  # not a wrong --scale: that stops the run
            if len(clips) == 1:
                raise
            print(f"skipped {name}: {error}", file=sys.stderr)
            unreadable[name] = str(error)
            continue
        for metric in learned:  # a clip too small for a network stopped the run when its turn came
            try:
                metric.check_frame_size(pred_info.height, pred_info.width)
            except InputError as error:
                raise InputError(f"{pred}: {error}") from None
        images = any(info.is_image_folder or info.is_photo for info in (pred_info, gt_info))  # no rate of their own
        if pred_info.frame_rate != gt_info.frame_rate and not images:
            print(f"note: {pred} plays at {pred_info.fps:g} fps and {gt} at {gt_info.fps:g}; frames are compared "
                  f"in order, frame i with frame i")
        for path, info in ((pred, pred_info), (gt, gt_info)):  # (a black-box hunt: 0.03 dB of a 10-bit pair, unsaid)
            depth = pixel_bit_depth(info.pix_fmt)
            if depth > 8:
                print(f"note: {path} is {depth}-bit ({info.pix_fmt}); it is scored as star-vsr reads every input, "
                      f"rounded to 8 bits")
            if info.alpha_kind is not None:  # (dropped without a word, as the bit depth was)
                print(f"note: {path} has an alpha channel ({info.alpha_kind}); it is scored on its colours alone, "
                      f"as star-vsr reads every input")
    return unreadable


def _evaluate(args: argparse.Namespace, stdout: TextIO) -> int:
    from ..metrics import evaluate_videos
    from ..outputs import check_json_output, write_json_output

    device = _check_options(args)
    clips, unpaired = pair_clips(Path(args.pred), Path(args.gt))
    videos = [video for _, pred, gt in clips for video in (pred, gt)]
    check_json_output(args.json, args.overwrite, videos, "metrics.json")  # before the metrics, not after
    learned = _load_learned(args, device)
    skipped = _check_pairs(args, clips, learned)  # clip name -> why it could not be scored
    results: dict[str, dict[str, float]] = {}
    for name, pred, gt in clips:
        if name in skipped:
            continue
        try:
            results[name] = evaluate_videos(str(pred), str(gt), scale=args.scale, warp=not args.no_warp,
                                            progress=True, crop_gt=args.crop_gt, learned=learned,
                                            max_frames=args.max_frames)
        except (CorruptVideoError, UnsupportedVideoError) as error:  # found mid-clip: the other clips still count
            if len(clips) == 1:
                raise
            print(f"skipped {name}: {error}", file=sys.stderr)
            skipped[name] = str(error)
    if not results:
        raise CorruptVideoError(f"no clip could be scored (the reasons are above): {', '.join(skipped)}")
    single = [name for name, r in results.items() if "ewarp" not in r] if not args.no_warp else []
    warped = len(results) - len(single)  # the clips the mean E*warp is over
    if single:  # E*warp compares consecutive frames
        over = f"; the mean E*warp is over the other {warped} clip{'s' * (warped != 1)}" if warped else ""
        print(f"note: E*warp needs 2 or more frames; not computed for {', '.join(single)} (1 frame){over}")
    # a folder's, of one clip too: "mean of 1/2" too, the row a script reads for the folder
    mean_row = len(results) > 1 or bool(skipped) or _is_clip_folder(Path(args.gt))
    identical = [name for name, r in results.items() if math.isinf(r.get("psnr_y", 0.0))]
    if identical:
        mean_too = ", and the mean PSNR-Y is inf too" if mean_row else ""
        print(f"note: {', '.join(identical)}: frames identical to the ground truth give PSNR-Y inf (null in the "
              f"JSON){mean_too}")
    keys = list(dict.fromkeys(k for r in results.values() for k in r if k != "frames"))
    mean = {k: sum(r[k] for r in results.values() if k in r) / sum(k in r for r in results.values()) for k in keys}
    table = dict(results)
    if mean_row:
        label = f"mean of {len(results)}/{len(clips)}" if skipped else "mean"  # not comparable with all clips'
        while label in table:  # a clip named mean (or "(mean)", which took the mean's place) keeps its row
            label = f"({label})"
        table[label] = mean
    print(format_table(table, [m.name for m in learned]))
    if skipped:
        print(skipped_line(list(skipped), list(results)), file=sys.stderr)
    if args.json:  # identical frames give PSNR = inf, written as null (strict JSON)
        summary = {"scale": args.scale, **({"max_frames": args.max_frames} if args.max_frames else {}),
                   "clips": results, "mean": mean, "mean_over": len(results),
                   # 0 when no clip has two frames (it was left out then: black-box hunt); none under --no-warp
                   **({} if args.no_warp else {"ewarp_mean_over": warped}),
                   **({"skipped": skipped} if skipped else {}),
                   # predictions without a ground truth, noted on the terminal only (black-box hunt)
                   **({"no_ground_truth": unpaired} if unpaired else {})}
        write_json_output(args.json, json.dumps(_finite(summary), indent=2, allow_nan=False), stdout)
    return 1 if skipped else 0
