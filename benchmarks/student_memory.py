"""Peak resident memory of StarStudentPipeline on the CPU as the video gets longer.

Each video length runs in a fresh process that writes a synthetic H.264 clip, then upscales it
file to file through ``star_vsr.upscale.upscale_video`` (decode -> student -> encode, frames
streamed in and out) and reports its peak RSS (``ru_maxrss``). The student is online and
recurrent with a fixed-size state, so memory must not grow with the number of frames; the
issue's target is that 500 frames need no more than 50 frames +10%.

    python benchmarks/student_memory.py [--frames 50 500] [--size 36 64] [--preset small]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The issue's bound on peak-memory growth from the shortest to the longest clip.
TARGET_GROWTH = 0.10


def child(frames: int, height: int, width: int, preset: str, threads: int, workdir: str) -> None:
    import torch

    from star_vsr.io.synthetic import write_test_video
    from star_vsr.student import build_student_pipeline
    from star_vsr.upscale import upscale_video

    torch.set_num_threads(threads)
    src = write_test_video(Path(workdir) / f"in_{frames}.mp4", num_frames=frames, size=(height, width))
    pipe = build_student_pipeline(preset, seed=0, bilinear_start=True)
    start = time.perf_counter()
    upscale_video(pipe, src, Path(workdir) / f"out_{frames}.mp4", progress=False, upscale=4)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": frames, "peak_rss_mib": peak_kib / 1024, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--size", type=int, nargs=2, default=[36, 64], metavar=("H", "W"), help="LR frame size")
    parser.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.frames[0], *args.size, args.preset, args.threads, args.workdir)
        return

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for frames in args.frames:
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--frames", str(frames), "--size", *map(str, args.size),
                 "--preset", args.preset, "--threads", str(args.threads), "--workdir", workdir],
                capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    h, w = args.size
    print(f"StarStudentPipeline ('{args.preset}', random weights, zeroed output convs), {w}x{h} -> {4 * w}x{4 * h}, "
          f"{args.threads} threads, H.264 file in -> H.264 file out, one process per length")
    print(f"{'frames':>7}  {'peak RSS (MiB)':>15}  {'seconds':>8}")
    for r in results:
        print(f"{r['frames']:>7}  {r['peak_rss_mib']:>15.1f}  {r['seconds']:>8.1f}")
    growth = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"] - 1
    verdict = "met" if growth <= TARGET_GROWTH else "NOT met"
    print(f"growth from {results[0]['frames']} to {results[-1]['frames']} frames: {100 * growth:+.1f}% "
          f"(target <= +{100 * TARGET_GROWTH:.0f}%: {verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": [h, w], "preset": args.preset, "results": results,
                                               "growth": growth}, indent=2))


if __name__ == "__main__":
    main()
