"""The harness of the memory benchmarks: one fresh process per video length, each reporting its peak RSS.

A benchmark script calls :func:`measure_lengths` in its parent process; the script reruns itself
with ``--child --frames N --workdir DIR`` plus its own arguments, and the child builds its model
and calls :func:`upscale_and_report`, which upscales a synthetic H.264 clip file to file through
``star_vsr.upscale.upscale_video`` (frames streamed in and out) and prints its peak RSS
(``ru_maxrss``) as the last line of JSON.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def upscale_and_report(pipe: Any, frames: int, height: int, width: int, workdir: str, **upscale_kwargs: Any) -> None:
    """Child side: write a ``frames``-frame clip of ``height`` x ``width``, upscale it with ``pipe``, print
    ``{"frames", "peak_rss_mib", "seconds"}`` as JSON."""
    from star_vsr.io.synthetic import write_test_video
    from star_vsr.upscale import upscale_video

    src = write_test_video(Path(workdir) / f"in_{frames}.mp4", num_frames=frames, size=(height, width))
    start = time.perf_counter()
    upscale_video(pipe, src, Path(workdir) / f"out_{frames}.mp4", progress=False, **upscale_kwargs)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": frames, "peak_rss_mib": peak_kib / 1024, "seconds": seconds}))


def measure_lengths(script: str, lengths: list[int], child_args: list[str]) -> list[dict[str, Any]]:
    """Parent side: run ``script --child --frames N --workdir DIR *child_args`` for each N in ``lengths``, in a
    fresh process each (so each peak RSS is its own), and return the children's reports in order."""
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for frames in lengths:
            out = subprocess.run([sys.executable, script, "--child", "--frames", str(frames), "--workdir", workdir,
                                  *child_args], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per video length: frames, peak RSS (MiB), seconds."""
    print(f"{'frames':>7}  {'peak RSS (MiB)':>15}  {'seconds':>8}")
    for r in results:
        print(f"{r['frames']:>7}  {r['peak_rss_mib']:>15.1f}  {r['seconds']:>8.1f}")
