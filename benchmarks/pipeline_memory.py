"""Peak resident memory of StarVSRPipeline on the CPU as the video gets longer.

For each video length this process writes a synthetic H.264 clip and a fresh process upscales it
to an H.264 file (harness: ``benchmarks/peak_rss.py``) through ``star_vsr.upscale.upscale_video``
(frames streamed in and out) with the tiny random pipeline of ``star_vsr.testing``, then reports
its peak RSS (``ru_maxrss``). With streaming in and out, memory should be flat in the number of
frames: only the clip's latents (48 KiB per frame at the default size) grow.

    python benchmarks/pipeline_memory.py [--frames 16 64 256] [--size 24 32] [--steps 2]
"""

from __future__ import annotations

import argparse

from star_vsr.benchmarking import refuse_below, refuse_odd_size

from peak_rss import measure_lengths, print_table, upscale_and_report


def child(frames: int, steps: int, chunk: int, workdir: str) -> None:
    import torch

    from star_vsr.testing import tiny_star_pipeline

    torch.set_num_threads(1)
    upscale_and_report(tiny_star_pipeline(seed=0), frames, workdir, num_inference_steps=steps,
                       chunk_frames=chunk, chunk_overlap=chunk // 4, generator=torch.Generator().manual_seed(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--size", type=int, nargs=2, default=[24, 32], metavar=("H", "W"), help="LR frame size")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--chunk-frames", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    refuse_below(parser, args, {"frames": 1, "size": 1, "steps": 1, "chunk_frames": 1})
    refuse_odd_size(parser, args.size)
    if args.child:
        child(args.frames[0], args.steps, args.chunk_frames, args.workdir)
        return

    results = measure_lengths(__file__, args.frames, args.size,
                              ["--steps", str(args.steps), "--chunk-frames", str(args.chunk_frames)])
    h, w = args.size
    print(f"StarVSRPipeline (tiny random model), {h}x{w} -> {4 * h}x{4 * w}, {args.steps} steps, "
          f"chunks of {args.chunk_frames} frames, file in -> file out")
    print_table(results)
    if len(results) >= 2:
        growth = results[-1]["peak_rss_mib"] / results[-2]["peak_rss_mib"] - 1
        print(f"growth from {results[-2]['frames']} to {results[-1]['frames']} frames: {100 * growth:+.1f}% "
              f"(target <= +15%)")


if __name__ == "__main__":
    main()
