"""One call that scores a super-resolved clip against its ground truth (``star-vsr evaluate``)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tqdm.auto import tqdm

from star_vsr.errors import CorruptVideoError, InputError, check_whole_number, option
from star_vsr.metrics.fidelity import SSIM_WINDOW, psnr, ssim
from star_vsr.metrics.inputs import check_frames, check_same_shape
from star_vsr.metrics.warping import MIN_FLOW_HEIGHT, MIN_FLOW_WIDTH, warping_error
from star_vsr.progress import bar_options
from star_vsr.units import count_of, seconds_amount

if TYPE_CHECKING:
    from star_vsr.io import VideoInfo
    from star_vsr.metrics.learned import LearnedMetric

#: Keys of :func:`evaluate_clip`'s result, in the order papers print them.
FIDELITY_KEYS: tuple[str, ...] = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
WARP_KEY = "ewarp"


def evaluate_clip(
    pred_frames: np.ndarray,
    gt_frames: np.ndarray,
    scale: int = 4,
    warp: bool = True,
    progress: bool = False,
) -> dict[str, float]:
    """PSNR / SSIM on Y and RGB, and the warping error, of a super-resolved clip.

    Args:
        pred_frames: (n, h, w, 3) RGB output clip, ``uint8`` in [0, 255] or float in [0, 1].
        gt_frames: (n, h, w, 3) RGB ground truth, same shape.
        scale: the SR scale; ``scale`` pixels are cropped on every side for PSNR/SSIM (the
            usual ``crop_border = scale``). The warping error uses whole frames.
        warp: also compute E*warp (needs n >= 2).
        progress: show tqdm bars.

    Returns:
        ``{"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}`` (per-frame values averaged over the clip;
        PSNR in dB, see :mod:`star_vsr.metrics.fidelity`) plus, when ``warp`` is True,
        ``"ewarp"``: E*warp x 1e3 of ``pred_frames`` with the flow and occlusion masks
        estimated on ``gt_frames`` (see :func:`star_vsr.metrics.warping.warping_error`). With
        ``warp=False`` the ``"ewarp"`` key is absent. All values are Python floats.

    Raises:
        InputError: bad frames, shapes that differ (both named), a bad ``scale``, or
            ``warp=True`` with a single frame.
    """
    check_frames(pred_frames, "pred_frames", ndim=4)
    check_frames(gt_frames, "gt_frames", ndim=4)
    check_same_shape(pred_frames, gt_frames, "pred_frames", "gt_frames")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise InputError(f"scale must be an integer >= 1, got {scale!r}.")
    _check_crop(scale, *gt_frames.shape[1:3])
    if warp and len(pred_frames) < 2:
        raise InputError(
            f"The warping error needs at least 2 frames but the clip has {len(pred_frames)}; "
            "pass warp=False to score a single frame."
        )

    per_frame: dict[str, list[float]] = {key: [] for key in FIDELITY_KEYS}
    for pred, gt in tqdm(
        zip(pred_frames, gt_frames), total=len(gt_frames), desc="PSNR/SSIM", disable=not progress, **bar_options()
    ):
        per_frame["psnr_y"].append(psnr(pred, gt, crop_border=scale, channel="y"))
        per_frame["ssim_y"].append(ssim(pred, gt, crop_border=scale, channel="y"))
        per_frame["psnr_rgb"].append(psnr(pred, gt, crop_border=scale, channel="rgb"))
        per_frame["ssim_rgb"].append(ssim(pred, gt, crop_border=scale, channel="rgb"))
    results = {key: float(np.mean(values)) for key, values in per_frame.items()}
    if warp:
        results[WARP_KEY] = warping_error(pred_frames, flow_frames=gt_frames, progress=progress)
    return results


def _check_crop(scale: int, height: int, width: int) -> None:
    if 2 * scale >= min(height, width):
        raise InputError(f"scale {scale} crops {scale} pixels on every side (crop border = scale), which removes "
                         f"the whole {width}x{height} frame; is the scale right?")
    if min(height, width) - 2 * scale < SSIM_WINDOW:  # said before the bar starts, not at the first frame
        raise InputError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the {scale}-pixel "
                         f"border crop (crop border = scale); {width}x{height} frames leave "
                         f"{width - 2 * scale}x{height - 2 * scale}")


def _larger_by(extra_w: int, extra_h: int) -> str:
    """How the ground truth's size differs from the prediction's (``extra_w``, ``extra_h``: its width and height less
    the prediction's), in words: "larger by 8 in width and 4 in height", "smaller by 16 in width and 8 in height",
    "8 pixels wider and 4 shorter" (it said "differs by -16", while the sentence spoke of a larger ground truth)."""
    if extra_w >= 0 and extra_h >= 0:
        return f"larger by {extra_w} in width and {extra_h} in height"
    if extra_w <= 0 and extra_h <= 0:
        return f"smaller by {-extra_w} in width and {-extra_h} in height"
    return (f"{abs(extra_w)} pixels {'wider' if extra_w > 0 else 'narrower'} and {abs(extra_h)} "
            f"{'taller' if extra_h > 0 else 'shorter'}")


def check_pair(pred_path: str, gt_path: str, scale: int = 4, crop_gt: bool = False,
               max_frames: int | None = None, warp: bool = False) -> tuple[VideoInfo, VideoInfo, int]:
    """(prediction's VideoInfo, ground truth's, frames to score) of a pair that :func:`evaluate_videos` can
    score, from their headers alone (a folder of clips is checked whole before any is scored); with ``warp``,
    E*warp too.

    Raises:
        InputError: the two videos differ in frame count or frame size (both named), ``max_frames`` is bad, or
            ``warp`` is asked of frames too small for its optical flow.
        CorruptVideoError: they differ in frame count, and one of them is damaged (cut short, or cut inside a group
            of pictures).
    """
    from star_vsr.io import probe_video

    if max_frames is not None:  # (NumPy's integers too)
        check_whole_number("max_frames", max_frames, 1)
        max_frames = int(max_frames)
    pred_info, gt_info = probe_video(pred_path), probe_video(gt_path)
    limit = max_frames or max(pred_info.num_frames, gt_info.num_frames)
    num_frames = min(pred_info.num_frames, limit)  # frames scored
    if num_frames != min(gt_info.num_frames, limit):
        n = pred_info.num_frames
        if max_frames is None:
            hint = (f" If the prediction is a preview of the first {n} frame{'s' * (n != 1)} (upscale --max-frames), "
                    f"pass {option(f'max_frames={n}', f'--max-frames {n}')}." if n < gt_info.num_frames else "")
        else:
            hint = f" ({option('max_frames', '--max-frames')} {max_frames} asks for more frames than one of them has.)"
        pages = next((info for info in (pred_info, gt_info) if info.pages > 1), None)
        cut = next((info for info in (pred_info, gt_info) if info.missing_s), None)
        lead = next((info for info in (pred_info, gt_info) if info.undecodable_lead), None)
        if pages is not None:
            hint = f" ({pages.path} is a multi-page image, of which star-vsr reads the first page.)"
        elif lead is not None:  # cut from a frame after a key frame (ffmpeg -ss ... -c copy): no preview
            hint = (f" {lead.path} starts inside a group of pictures: its first "
                    f"{count_of(lead.undecodable_lead, 'frame')} cannot be decoded, so its frames begin later than the "
                    f"other clip's (cut it at a key frame, or re-encode the cut).")
        elif cut is not None:  # maybe no preview but a file that lost its end (star-vsr info says so too)
            hint = (f" {cut.path} looks cut short: its frames end {seconds_amount(cut.missing_s)} before its header "
                    f"says (an interrupted copy or download?).{hint}")
        pred_n, gt_n = pred_info.num_frames, gt_info.num_frames
        # a file found damaged is the clip's fault, skipped in a folder of clips (it stopped the whole folder)
        error = CorruptVideoError if pages is None and (lead or cut) is not None else InputError
        raise error(f"{pred_path} has {pred_n} frame{'s' * (pred_n != 1)} but {gt_path} has {gt_n} "
                    f"frame{'s' * (gt_n != 1)}; evaluate needs the prediction and ground truth frame for frame.{hint}")
    extra_w, extra_h = gt_info.width - pred_info.width, gt_info.height - pred_info.height
    croppable = 0 <= extra_w < 2 * scale and 0 <= extra_h < 2 * scale
    if (extra_w or extra_h) and not (crop_gt and croppable):
        if croppable:
            hint = (" If the input was made by `star-vsr degrade`, which crops the ground truth to a multiple of the "
                    f"scale (times 2 for 4:2:0 video), pass {option('crop_gt=True', '--crop-gt')}.")
        elif (pred_info.width, pred_info.height) == (gt_info.width + gt_info.width % 2,
                                                       gt_info.height + gt_info.height % 2):
            from star_vsr.io.writer import ODD_SIZE_CODECS

            hint = (" It is the ground truth's size padded to even numbers, as 4:2:0 video (H.264, H.265) needs: "
                    f"star-vsr upscale pads an odd size by repeating the last column/row; {ODD_SIZE_CODECS} keeps "
                    f"it.")
        elif crop_gt:  # asked for, and out of its reach: say why it did not apply
            hint = (f" {option('crop_gt', '--crop-gt')} crops a ground truth larger by less than 2 x the scale "
                    f"({2 * scale} pixels at {option('scale', '--scale')} {scale}) in width and in height; this one "
                    f"is {_larger_by(extra_w, extra_h)}.")
        else:
            hint = ""
        turned = [path for path, info in ((pred_path, pred_info), (gt_path, gt_info))
                  if not info.orientation.is_identity]
        if turned and (pred_info.width, pred_info.height) == (gt_info.height, gt_info.width):  # (black-box hunt)
            hint += (f" {' and '.join(map(str, turned))} {'is' if len(turned) == 1 else 'are'} read upright (turned "
                     f"by the rotation tag, as players show {'it' if len(turned) == 1 else 'them'}), which swaps "
                     f"width and height.")
        raise InputError(f"{pred_path} is {pred_info.width}x{pred_info.height} but {gt_path} is "
                         f"{gt_info.width}x{gt_info.height}; the prediction must have the ground truth's size.{hint}")
    _check_crop(scale, pred_info.height, pred_info.width)  # before the progress bar starts
    if warp and num_frames >= 2 and (pred_info.height < MIN_FLOW_HEIGHT or pred_info.width < MIN_FLOW_WIDTH):
        # (refused by warping_error after the first chunk was scored)
        raise InputError(f"{pred_path}: E*warp needs frames at least {MIN_FLOW_HEIGHT} pixels high and "
                         f"{MIN_FLOW_WIDTH} wide for its optical flow, got {pred_info.width}x{pred_info.height}; "
                         f"pass {option('warp=False', '--no-warp')} to score PSNR / SSIM only")
    return pred_info, gt_info, num_frames


def _fewer_frames(info: VideoInfo, decoded: int) -> CorruptVideoError:
    """The error of a clip (``info``) that gave ``decoded`` frames, fewer than its header lists."""
    return CorruptVideoError(f"{info.path} decoded {count_of(decoded, 'frame')} but its header lists "
                            f"{info.num_frames}, so its frames cannot be paired with the other clip's; the file is "
                            f"truncated, or was cut without re-encoding and lost the frames before its first keyframe: "
                            f"make it again")


def evaluate_videos(
    pred_path: str,
    gt_path: str,
    scale: int = 4,
    warp: bool = True,
    chunk_size: int = 16,
    progress: bool = False,
    crop_gt: bool = False,
    learned: Sequence[LearnedMetric] = (),
    max_frames: int | None = None,
) -> dict[str, float]:
    """:func:`evaluate_clip` for two video files (or image folders), streamed ``chunk_size`` frames at a time.

    Returns the same keys as :func:`evaluate_clip` (clip means over frames, E*warp over frame
    pairs; no ``"ewarp"`` for a clip of one frame, which has no pair, where ``evaluate_clip`` refuses it) plus
    ``"frames"``; memory stays at two chunks whatever the video length. With
    ``crop_gt``, a ground truth larger than the prediction by less than ``2 * scale`` pixels in
    each dimension is cropped to its top-left corner of the prediction's size: what ``star-vsr
    degrade`` cuts off to make the sizes multiples of the scale (times 2 for 4:2:0 video). Each of
    the ``learned`` metrics (:func:`~star_vsr.metrics.learned.load_learned_metric`) adds the mean of
    its per-frame scores under its name (whole frames; full-reference ones against the ground truth).
    ``max_frames``: score only the first ``max_frames`` frames of both (a preview made with ``star-vsr
    upscale --max-frames``); None scores all of them.

    Raises:
        InputError: the two videos differ in frame count or frame size (both named).
        CorruptVideoError: they differ in frame count and one of them is damaged, or a frame fails to decode.
    """
    from star_vsr.io import open_video

    check_whole_number("chunk_size", chunk_size, 1)  # before the files are probed and opened
    chunk_size = int(chunk_size)  # (2.0 then failed as a slice index)
    pred_info, gt_info, num_frames = check_pair(pred_path, gt_path, scale, crop_gt, max_frames, warp)
    warp = warp and num_frames >= 2
    sums = {key: 0.0 for key in FIDELITY_KEYS}
    warp_sum, pairs, frames = 0.0, 0, 0
    previous: tuple[np.ndarray, np.ndarray] | None = None
    bar = tqdm(total=num_frames, desc="evaluate", unit="frame", disable=not progress, **bar_options())
    with bar, open_video(pred_path) as pred_reader, open_video(gt_path) as gt_reader:  # bar closed on errors too
        chunks = itertools.zip_longest(pred_reader.iter_chunks(chunk_size), gt_reader.iter_chunks(chunk_size))
        for pred, gt in chunks:
            if frames >= num_frames:
                break
            wanted = min(chunk_size, num_frames - frames)
            for chunk, info in ((pred, pred_info), (gt, gt_info)):
                if chunk is None or len(chunk) < wanted:  # else frames scored against others, or part of the clip
                    raise _fewer_frames(info, frames + (0 if chunk is None else len(chunk)))
            pred, gt = pred[:wanted], gt[:wanted]  # max_frames: the last chunk cut
            gt = gt[:, :pred_info.height, :pred_info.width]  # (k, h, w, 3): crop_gt's top-left corner
            scores = evaluate_clip(pred, gt, scale=scale, warp=False)
            for key in FIDELITY_KEYS:
                sums[key] += scores[key] * len(gt)
            for metric in learned:
                sums[metric.name] = sums.get(metric.name, 0.0) + sum(
                    metric.score_frame(p, g if metric.full_reference else None) for p, g in zip(pred, gt))
            if warp:
                pred_pairs = pred if previous is None else np.concatenate([previous[0][None], pred])
                gt_pairs = gt if previous is None else np.concatenate([previous[1][None], gt])
                if len(gt_pairs) >= 2:
                    warp_sum += warping_error(pred_pairs, flow_frames=gt_pairs) * (len(gt_pairs) - 1)
                    pairs += len(gt_pairs) - 1
                previous = (pred[-1], gt[-1])
            frames += len(gt)
            bar.update(len(gt))
    if frames < num_frames:  # both ended at once, early
        raise _fewer_frames(pred_info, frames)
    results = {key: total / frames for key, total in sums.items()}
    if warp:
        results[WARP_KEY] = warp_sum / pairs
    results["frames"] = frames  # a count (int)
    return results
