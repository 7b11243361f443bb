"""Peak resident memory of StarStudentPipeline on the CPU as the video gets longer.

For each video length this process writes a synthetic H.264 clip and a fresh process upscales it
file to file through ``star_vsr.upscale.upscale_video`` (decode -> student -> encode, frames
streamed in and out) and reports its peak RSS (``ru_maxrss``; harness: ``benchmarks/peak_rss.py``).
The student is online and recurrent with a fixed-size state, so memory must not grow with the
number of frames; the issue's target is that 500 frames need no more than 50 frames +10%.

    python benchmarks/student_memory.py [--frames 50 500] [--size 36 64] [--preset small] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json

from star_vsr.benchmarking import refuse_below, refuse_odd_size, refuse_unwritable_json
from star_vsr.outputs import write_text_atomic

from peak_rss import measure_lengths, print_table, upscale_and_report

#: The issue's bound on peak-memory growth from the shortest to the longest clip.
TARGET_GROWTH = 0.10


def child(frames: int, preset: str, threads: int, workdir: str, dtype: str) -> None:
    import torch

    from star_vsr.student import build_student_pipeline
    from star_vsr.upscale import DTYPES

    torch.set_num_threads(threads)
    pipe = build_student_pipeline(preset, seed=0, bilinear_start=True)
    torch.nn.Module.to(pipe.student, DTYPES[dtype])
    upscale_and_report(pipe, frames, workdir, upscale=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--size", type=int, nargs=2, default=[36, 64], metavar=("H", "W"), help="LR frame size")
    parser.add_argument("--preset", default="small", choices=("tiny", "small", "base"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                        help="student weights (auto, as star-vsr upscale: bf16 where the CPU has AMX, else fp32)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    refuse_below(parser, args, {"frames": 1, "size": 1, "threads": 1})
    refuse_odd_size(parser, args.size)
    refuse_unwritable_json(parser, args.json)
    if args.child:
        child(args.frames[0], args.preset, args.threads, args.workdir, args.dtype)
        return
    if len(set(args.frames)) < 2:  # one length: "growth from 4 to 4 frames: +0.0% (met)" said nothing
        parser.error(f"--frames takes two lengths or more (the growth from the first to the last is measured), got "
                     f"{' '.join(map(str, args.frames))}")

    import torch

    from star_vsr.upscale import DTYPE_FLAGS, resolve_dtype

    dtype = DTYPE_FLAGS[resolve_dtype(args.dtype, torch.device("cpu"), student=True)]
    results = measure_lengths(__file__, args.frames, args.size,
                              ["--preset", args.preset, "--threads", str(args.threads), "--dtype", dtype])
    h, w = args.size
    print(f"StarStudentPipeline ('{args.preset}', random weights, zeroed output convs, {dtype}), {w}x{h} -> "
          f"{4 * w}x{4 * h}, {args.threads} threads, H.264 file in -> H.264 file out, one process per length")
    print_table(results)
    growth = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"] - 1
    verdict = "met" if growth <= TARGET_GROWTH else "NOT met"
    print(f"growth from {results[0]['frames']} to {results[-1]['frames']} frames: {100 * growth:+.1f}% "
          f"(target <= +{100 * TARGET_GROWTH:.0f}%: {verdict})")
    if args.json:
        write_text_atomic(args.json, json.dumps({"size": [h, w], "preset": args.preset, "dtype": dtype,
                                                 "results": results, "growth": growth}, indent=2))


if __name__ == "__main__":
    main()
