"""Throughput of the real-world degradation chain on the CPU, in clips per second.

For each preset, with and without the whole-clip video-codec stage, degrades `--clips` clips
(seeds 0..N-1, after one warm-up clip) of `--frames` frames of `--size` x `--size` pixels at
x`--scale`, `--repeats` times, and prints the fastest repeat (the least disturbed by other work
on the machine) in a table with the exact settings. With a seed, every parameter but the codec's
is the same with and without the codec stage, so the two rows compare like with like. The clip
is a window sliding over scikit-image's bundled "astronaut" photo (real texture and motion,
nothing downloaded).

    python benchmarks/degradation_throughput.py --clips 8 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import time

import cv2
import numpy as np
import skimage.data
import torch

from star_vsr.degradations import PRESETS, DegradationConfig, RealWorldDegradation
from star_vsr.degradations.frames import frames_to_clip

PAN_STEP = (1, 2)
"""Pixels the window moves per frame (down, right): a slow diagonal pan."""


def make_clip(frames: int, size: int) -> torch.Tensor:
    """A panning clip (frames, 3, size, size) in [0, 1] cut from the astronaut photo."""
    image = skimage.data.astronaut()  # (512, 512, 3) uint8
    reach = (frames - 1) * max(PAN_STEP)
    if size + reach > min(image.shape[:2]):
        image = cv2.resize(image, (size + reach, size + reach), interpolation=cv2.INTER_CUBIC)
    windows = [
        image[i * PAN_STEP[0] : i * PAN_STEP[0] + size, i * PAN_STEP[1] : i * PAN_STEP[1] + size]
        for i in range(frames)
    ]
    return frames_to_clip(np.stack(windows))  # (frames, 3, size, size)


def seconds_per_clip(degradation: RealWorldDegradation, hr: torch.Tensor, clips: int) -> float:
    """Mean seconds per clip over seeds 0..clips-1."""
    start = time.perf_counter()
    for seed in range(clips):
        degradation(hr, seed=seed)
    return (time.perf_counter() - start) / clips


def make_rows(args: argparse.Namespace) -> dict[tuple[str, bool], RealWorldDegradation]:
    """One degradation per (preset, with codec) row of the table."""
    rows = {}
    for name in args.presets:
        for with_codec in (True, False):
            config = DegradationConfig.preset(name)
            if not with_codec:
                config = dataclasses.replace(
                    config, codec=dataclasses.replace(config.codec, prob=0.0)
                )
            rows[name, with_codec] = RealWorldDegradation(config, args.scale)
    return rows


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    hr = make_clip(args.frames, args.size)

    print("settings:")
    print(
        f"  clip: {args.frames} frames x 3 x {args.size} x {args.size}, scale x{args.scale} "
        f"-> {args.size // args.scale} x {args.size // args.scale}"
    )
    print(
        f"  clips per row: {args.clips} (seeds 0..{args.clips - 1}) after 1 warm-up clip, "
        f"fastest of {args.repeats} repeats"
    )
    print(
        f"  torch threads: {torch.get_num_threads()}, OpenCV threads: {cv2.getNumThreads()}, "
        "codec encoder/decoder threads: 1 (fixed, for determinism)"
    )
    print(f"  torch {torch.__version__}, CPU: {cpu_name()} ({os.cpu_count()} logical cores)")
    print()
    rows = make_rows(args)
    for degradation in rows.values():
        degradation(hr, seed=args.clips)  # warm-up (first-call allocations, FFmpeg setup)
    # Repeats go round all rows, so a burst of other work on the machine hits one repeat of
    # every row rather than all repeats of one row; each row keeps its fastest repeat.
    best = dict.fromkeys(rows, math.inf)
    for _ in range(args.repeats):
        for key, degradation in rows.items():
            best[key] = min(best[key], seconds_per_clip(degradation, hr, args.clips))

    print(f"{'preset':<8} {'codec':<6} {'clips/s':>8} {'s/clip':>8} {'frames/s':>9}")
    for (name, with_codec), seconds in best.items():
        print(
            f"{name:<8} {'yes' if with_codec else 'no':<6} {1 / seconds:>8.3f} "
            f"{seconds:>8.3f} {args.frames / seconds:>9.1f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8, help="timed clips per row (default 8)")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch and OpenCV threads (default: torch's current count)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repeats per row; the fastest is shown"
    )
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument(
        "--size", type=int, default=256, help="HR frame side in pixels (default 256)"
    )
    parser.add_argument(
        "--scale", type=int, default=4, choices=(2, 3, 4), help="down-scaling factor"
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    args = parser.parse_args()
    if min(args.clips, args.threads, args.frames, args.repeats, args.size) < 1:
        parser.error("--clips, --threads, --frames, --repeats and --size must be >= 1")
    if args.size % args.scale:
        parser.error(f"--size {args.size} must be divisible by --scale {args.scale}")
    return args


if __name__ == "__main__":
    main(parse_args())
