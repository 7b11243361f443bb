"""``star-vsr demo``: see the default student at work, offline, in a few seconds.

A short clip is filmed from a photograph bundled with scikit-image (a smooth camera move),
degraded with the project's real-world chain (``medium`` preset: blur, noise, JPEG, resizing and
video-codec compression of the whole clip, H.264 or MPEG-4) and downscaled x4; the student (or the
``--model``) upscales it.
The output folder receives the videos ``input.mp4`` (the degraded LR clip), ``bicubic.mp4``,
``student.mp4`` and ``ground_truth.mp4``, a side-by-side ``comparison.png`` of the middle frame
(input / bicubic / student / ground truth) and ``metrics.json`` (PSNR-Y, SSIM-Y, E*warp of
bicubic and of the student against the ground truth, measured on the 8-bit frames before their H.264
encoding: ``star-vsr evaluate`` on the lossy ``.mp4`` files gives slightly different numbers). A StarVSR diffusion ``--model`` is labelled
``diffusion`` instead of ``student`` everywhere (``diffusion.mp4``, its panel, its metrics row). The files
appear together once the demo is complete: a stopped demo leaves the folder as it was. A diffusion model
samples with ``--steps`` denoising steps (default 15, as ``star-vsr upscale``) from a generator seeded by ``--seed``,
so the same command on the same device gives the same videos.

The default photo is one of the evaluation photos, never seen in training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..evalset import EVAL_PHOTO_NAMES, TRAINING_PHOTO_NAMES
from .arguments import ParagraphsHelpFormatter, device_argument, path_argument, seed_argument
from .upscale import DIFFUSION_DEFAULTS
from ..json_files import loads_json

DIFFUSION_STEPS: int = DIFFUSION_DEFAULTS["steps"]
"""Denoising steps of a diffusion ``--model`` unless ``--steps`` says otherwise."""

DEMO_FPS = 24
"""Frame rate of the demo videos."""

#: The most frames ``--frames`` takes: the demo holds its clips in memory (about 2 MB a frame in all).
MAX_DEMO_FRAMES = 1000

DEMO_SIZE = (160, 240)
"""HR (height, width) of the demo clip: 40 x 60 LR pixels at x4."""

DEMO_TOO_SMALL_PHOTOS = ("chelsea", "clock", "coins", "page", "text")
"""Bundled photos whose shorter side (300 pixels or less) cannot hold the demo's moving 240 x 160 window
(it needs 321 pixels, rotated and zoomed out); ``--photo`` does not offer them."""

DEMO_PHOTO_NAMES = tuple(name for name in EVAL_PHOTO_NAMES + TRAINING_PHOTO_NAMES
                         if name not in DEMO_TOO_SMALL_PHOTOS)
"""The photos ``--photo`` offers."""

LABEL_HEIGHT = 14
"""Pixels of the caption strip above each panel of the comparison image."""

OUTPUT_NAMES = ("input.mp4", "bicubic.mp4", "student.mp4", "ground_truth.mp4", "comparison.png", "metrics.json")
"""Files a demo with a student writes (one with a diffusion model: ``output_names("diffusion")``)."""

MODEL_LABELS = {"StarStudentPipeline": "student", "StarVSRPipeline": "diffusion"}
"""What the demo calls the model of each pipeline class (file name, panel caption, metrics row)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="upscale a degraded clip made from a bundled photo and compare",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("-o", "--output", type=path_argument, default="star-vsr-demo",
                        help="output folder (default: star-vsr-demo)")
    seen = [name for name in DEMO_PHOTO_NAMES if name not in EVAL_PHOTO_NAMES]
    parser.add_argument("--photo", default=EVAL_PHOTO_NAMES[0], choices=DEMO_PHOTO_NAMES, metavar="PHOTO",
                        help=f"scikit-image photo to film: {', '.join(EVAL_PHOTO_NAMES)} (default "
                             f"{EVAL_PHOTO_NAMES[0]}), which training never saw, or one it trained on: "
                             f"{', '.join(seen)}")
    parser.add_argument("--frames", type=int, default=16,
                        help=f"frames of the clip, 2 to {MAX_DEMO_FRAMES} (default 16)")
    parser.add_argument("--degradation", default="medium", choices=("light", "medium", "heavy"),
                        help="degradation preset (default medium)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="seed of the camera move, the degradation and a diffusion model's sampling (default 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help="a diffusion --model's denoising steps (default: as star-vsr upscale, "
                             f"{DIFFUSION_STEPS}; a student takes none)")
    parser.add_argument("--model", type=path_argument,
                        help="model folder (default: the student that ships with star-vsr)")
    parser.add_argument("--device", default="auto", type=device_argument,
                        help="auto (CUDA if present), cpu, cuda, ...")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="weight precision, as star-vsr upscale --dtype (auto: fp16 on CUDA; on the CPU bf16 for "
                             "a student where the CPU has AMX, else fp32)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier demo's files (its video of another kind of model goes too)")
    parser.set_defaults(func=run)


def output_names(label: str) -> tuple[str, ...]:
    """The files a demo writes when its model is labelled ``label`` ("student", "diffusion")."""
    return tuple(f"{label}.mp4" if name == "student.mp4" else name for name in OUTPUT_NAMES)


def earlier_model_videos(output: Path, label: str) -> list[str]:
    """The model video of an earlier demo in ``output`` that a demo of a model labelled ``label`` does not write
    over (``student.mp4`` under a ``diffusion`` demo): the model its ``metrics.json`` names, where that file is
    there and readable; never a user's file that no demo wrote."""
    try:
        earlier = loads_json((output / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    except (OSError, ValueError, LookupError, TypeError):
        return []
    return [f"{name}.mp4" for name in earlier if name in MODEL_LABELS.values() and name != label
            and (output / f"{name}.mp4").is_file()] if isinstance(earlier, dict) else []


def comparison_image(panels: list[tuple[str, Any]]) -> Any:
    """Panels (label, uint8 (h, w, 3)) side by side under their labels, as a PIL image."""
    import numpy as np
    from PIL import Image, ImageDraw

    height = max(p.shape[0] for _, p in panels)
    width = sum(p.shape[1] for _, p in panels)
    canvas = Image.new("RGB", (width, height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for label, panel in panels:
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel)), (x, LABEL_HEIGHT))
        draw.text((x + 2, 1), label, fill="black")
        x += panel.shape[1]
    return canvas


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import shutil
    import time
    import warnings

    import numpy as np
    import torch

    from ..errors import (DISK_FULL_ERRNOS, InputError, OutputExistsError, RanOutOfMemoryError,
                          explain_out_of_memory, write_failed)
    from ..evalset import bicubic_upscale, photo_clip
    from ..frames import frames_to_uint8
    from ..interrupts import interrupts_held
    from ..io import VideoWriter
    from ..io.atomic import keep_mode, temporary_path
    from ..metrics import evaluate_clip
    from ..outputs import check_output_folder_name, check_writable, folder_lock
    from ..units import seconds_amount
    from ..upscale import load_upscaler, pipeline_class_name

    if not 2 <= args.frames <= MAX_DEMO_FRAMES:
        raise InputError(f"--frames must be between 2 (the warping error compares frames) and {MAX_DEMO_FRAMES} (the "
                         f"demo keeps its four videos in memory; upscale a long video with `star-vsr upscale`), "
                         f"got {args.frames}")
    if args.model is None:
        from ..student import default_student_folder

        args.model = str(default_student_folder())
    label = MODEL_LABELS.get(pipeline_class_name(args.model), "model")  # load_upscaler refuses other classes
    if label == "student":  # (a x2 student failed after the clip was built: "unsupported scale 4")
        from ..evalset import EVAL_SCALE
        from .upscale import check_student_upscale

        try:
            check_student_upscale(Path(args.model), EVAL_SCALE)
        except InputError as error:
            raise InputError(f"the demo upscales x{EVAL_SCALE}, which {args.model} cannot: {error}") from None
    if args.steps is not None and args.steps < 1:  # (with a student too: -5 was warned about as ignored)
        raise InputError(f"--steps must be >= 1, got {args.steps}")
    if args.steps is not None and label != "diffusion":  # as star-vsr upscale's diffusion options
        warnings.warn("--steps only applies to diffusion models; the student ignores it")
    names = output_names(label)
    output = Path(args.output)
    check_output_folder_name(output, "its videos, comparison image and metrics")
    existing = [name for name in names if (output / name).exists()]
    if existing and not args.overwrite:
        raise InputError(f"{output} already holds {', '.join(existing)}; pass --overwrite or choose another -o")
    for name in existing:  # found only after the first files had been moved in (--overwrite)
        if not (output / name).is_file():
            raise InputError(f"{output / name} is not a file (a folder?), so --overwrite cannot replace it with this "
                             f"demo's {name}; move it away or choose another -o")
    check_writable(output / names[0])
    stale = earlier_model_videos(output, label) if args.overwrite else []  # replaced by this demo's

    # 1. A clip filmed from the photo, degraded x4
    clip = photo_clip(args.photo, args.frames, DEMO_SIZE, degradation=args.degradation, seed=args.seed)
    lq, gt = clip["lq"], clip["gt"]  # (n, 3, h, w), (n, 3, 4h, 4w)
    scale = gt.shape[-1] // lq.shape[-1]

    # 2. Upscale with bicubic and with the model
    from . import quiet_model_loading

    quiet_model_loading()  # here, once the options are checked: importing diffusers takes seconds
    pipe = load_upscaler(args.model, device=args.device, dtype=args.dtype)
    pipe.set_progress_bar_config(disable=True)
    call_kwargs = {} if label != "diffusion" else {  # the sampling seeded, as star-vsr upscale's
        "num_inference_steps": args.steps or DIFFUSION_STEPS, "generator": torch.Generator().manual_seed(args.seed)}
    started = time.perf_counter()
    try:
        sr = pipe(lq, upscale=scale, output_type="pt", **call_kwargs).frames[0]
    except RanOutOfMemoryError as error:  # said with the pipeline's advice, for a call: a smaller video, a smaller
        # factor (upscale=2), restart=True, none of which the demo has
        gpu = "; from a GPU, the CPU (--device cpu) usually has more memory" if pipe.device.type != "cpu" else ""
        with explain_out_of_memory(f"upscaling the demo's clip with the {label}", f"free some memory, or pass "
                                   f"fewer --frames than {args.frames} (the demo keeps its clips in memory){gpu}"):
            raise error.__cause__ from None
    sr = sr.float().clamp(0, 1).cpu()  # (n, 3, H, W)
    seconds = time.perf_counter() - started
    bicubic = bicubic_upscale(lq, scale)
    videos = {"input": frames_to_uint8(lq), "bicubic": frames_to_uint8(bicubic), label: frames_to_uint8(sr),
              "ground_truth": frames_to_uint8(gt)}
    metrics = {name: evaluate_clip(videos[name], videos["ground_truth"], scale=scale)
               for name in ("bicubic", label)}
    report = {"photo": args.photo, "frames": args.frames, "lr_size": f"{lq.shape[-1]}x{lq.shape[-2]}", "scale": scale,
              "degradation": args.degradation, "seed": args.seed, "model": str(args.model),
              **({"steps": call_kwargs["num_inference_steps"]} if call_kwargs else {}),
              "device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch."),
              "model_seconds": round(seconds, 3), "metrics": metrics,
              "metrics_of": "the 8-bit frames before H.264 encoding (evaluate on the .mp4 files differs a little)"}

    # 3. Videos, comparison image, metrics: into a hidden folder first, then moved into -o together, so that a
    # stopped or failed demo leaves the earlier demo's set (or nothing), never a mix of the two
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)  # only now: a bad --model or --device leaves no folder
    # named as this process's (.demo.HOST-PID-TOKEN.tmp), so that the next demo removes one a kill left behind
    staging = temporary_path(output / "demo")
    try:
        staging.mkdir()
        for name, video in videos.items():
            # reproducible: x264's assembly gave other bitstreams for the same frames, by up to 21 levels (hunt)
            with VideoWriter(staging / f"{name}.mp4", DEMO_FPS, reproducible=True) as writer:
                writer.write(video)
        middle = args.frames // 2
        nearest = np.repeat(np.repeat(videos["input"][middle], scale, axis=0), scale, axis=1)
        comparison_image([("input (nearest)", nearest), ("bicubic", videos["bicubic"][middle]),
                          (label, videos[label][middle]),
                          ("ground truth", videos["ground_truth"][middle])]).save(staging / "comparison.png")
        (staging / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        # a few renames: all of them, or (Ctrl-C before) none; and not beside another demo's (a second demo into
        # the same folder replaced the first one's files without --overwrite)
        with folder_lock(output, output, wait=True), interrupts_held():  # (another demo's renames: a moment)
            appeared = [name for name in names if (output / name).exists()] if not args.overwrite else []
            if appeared:
                raise OutputExistsError(f"{output} got {', '.join(appeared)} while this demo ran (another run?); "
                                        f"they were left as they are and this demo's files not saved: pass "
                                        f"--overwrite to replace them")
            for name in names:
                keep_mode(staging / name, output / name)  # (--overwrite: as any output replaced)
                os.replace(staging / name, output / name)
            for name in stale:  # only now that this demo is complete
                (output / name).unlink(missing_ok=True)
    except OSError as error:  # a full disk: said of -o, not of the hidden folder the files were made in
        if error.errno not in DISK_FULL_ERRNOS:  # (star-vsr's own errors name what they are about)
            raise
        raise write_failed(f"cannot write the demo into {output}: {os.strerror(error.errno)}", error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made and not any(output.iterdir()):
            output.rmdir()

    print(f"{args.frames} frames of {lq.shape[-1]}x{lq.shape[-2]} -> {sr.shape[-1]}x{sr.shape[-2]} in "
          f"{seconds_amount(seconds)} ({args.frames / seconds:.3g} frames/s)")  # (a slow run read "0.0 frames/s")
    print(f"{'':10}  {'PSNR-Y':>8}  {'SSIM-Y':>8}  {'E*warp':>8}   (of the frames before H.264 encoding)")
    for name, row in metrics.items():
        print(f"{name:10}  {row['psnr_y']:8.3f}  {row['ssim_y']:8.4f}  {row['ewarp']:8.3f}")
    print(f"wrote {', '.join(names)} to {output}" + (f"; removed the earlier demo's {', '.join(sorted(stale))}"
                                                     if stale else ""))
    return 0
