"""The harness of the memory benchmarks: one fresh process per video length, each reporting its peak RSS.

A benchmark script calls :func:`measure_lengths` in its parent process, which writes a synthetic
H.264 clip of each length and reruns the script with ``--child --frames N --workdir DIR`` plus the
script's own arguments; the child builds its model and calls :func:`upscale_and_report`, which
upscales that clip file to file through ``star_vsr.upscale.upscale_video`` (frames streamed in and
out) and prints its peak RSS (``ru_maxrss``) as the last line of JSON. The clip is written by the
parent so that the child's peak measures the upscaling alone (encoding a 500-frame test clip in the
child, after the model is loaded, added ~50 MiB to its peak).
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


def upscale_and_report(pipe: Any, frames: int, workdir: str, **upscale_kwargs: Any) -> None:
    """Child side: upscale the parent's ``frames``-frame clip with ``pipe``, print
    ``{"frames", "peak_rss_mib", "seconds"}`` as JSON."""
    from star_vsr.upscale import upscale_video

    start = time.perf_counter()
    upscale_video(pipe, Path(workdir) / f"in_{frames}.mp4", Path(workdir) / f"out_{frames}.mp4", progress=False,
                  **upscale_kwargs)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": frames, "peak_rss_mib": peak_kib / 1024, "seconds": seconds}))


def measure_lengths(script: str, lengths: list[int], size: tuple[int, int], child_args: list[str]
                    ) -> list[dict[str, Any]]:
    """Parent side: for each N in ``lengths``, write an N-frame clip of ``size`` (h, w), then run ``script
    --child --frames N --workdir DIR *child_args`` in a fresh process (so each peak RSS is its own);
    return the children's reports in order."""
    from star_vsr.io.synthetic import write_test_video

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for frames in lengths:
            write_test_video(Path(workdir) / f"in_{frames}.mp4", num_frames=frames, size=tuple(size))
            out = subprocess.run([sys.executable, script, "--child", "--frames", str(frames), "--workdir", workdir,
                                  *child_args], capture_output=True, text=True)
            if out.returncode != 0:  # its reason, not "returned non-zero exit status 1" alone
                raise SystemExit(f"the {frames}-frame run failed (exit status {out.returncode}):\n"
                                 + "\n".join(out.stderr.strip().splitlines()[-12:]))
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per video length: frames, peak RSS (MiB), seconds."""
    print(f"{'frames':>7}  {'peak RSS (MiB)':>15}  {'seconds':>8}")
    for r in results:
        print(f"{r['frames']:>7}  {r['peak_rss_mib']:>15.1f}  {r['seconds']:>8.1f}")
