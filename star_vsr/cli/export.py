"""``star-vsr export``: write the student's streaming step as ONNX or TorchScript.

The file holds one step at a fixed LR frame size and scale (float32): inputs ``lr_frame``
(1, 3, h, w) in [0, 1] and the state ``hidden``, ``previous_features``, ``previous_frame`` (zeros
for the first frame; their sides are h and w rounded up to even, as the file's input shapes give them); outputs
``sr_frame`` (1, 3, H, W) and the next state. A runtime
streams a video by feeding each frame with the state the previous call returned, and zeros again
at a scene cut (``star_vsr.scene_cuts.scene_cuts``; ``star-vsr upscale`` does, the step does not:
README, "The student", its Deployment paragraph). ``--verify``
streams a few random frames through the file (onnxruntime on the CPU for ONNX) and PyTorch and
prints the largest difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError, why_missing
from .arguments import ParagraphsHelpFormatter, path_argument

#: Largest |exported - PyTorch| that ``--verify`` accepts (float32 arithmetic reordered).
VERIFY_TOLERANCE = 1e-3
#: What each format is written as, and the file name suffixes that name it.
EXPORT_FORMATS = ("onnx", "torchscript")
FORMAT_SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth", ".ts")}
ARTICLED = {"onnx": "an ONNX", "torchscript": "a TorchScript"}


def export_format(output: Path, format: str | None) -> str:
    """``format``, or the one ``output``'s suffix names; an InputError when they disagree or neither says."""
    named = [name for name, suffixes in FORMAT_SUFFIXES.items() if output.suffix.lower() in suffixes]
    if format is None:
        if not named and output.is_dir():
            raise InputError(f"{output} is a folder; name the file to write: -o {output / 'student.onnx'} (or "
                             f"student.pt for TorchScript)")
        if not named:
            raise InputError(f"cannot tell the format from the name {output.name}; pass --format onnx or "
                             "torchscript, or name the file .onnx or .pt")
        return named[0]
    if named and named[0] != format:
        raise InputError(f"{output.name} is the name of {ARTICLED[named[0]]} file but --format is {format}; "
                         f"name it {output.with_suffix(FORMAT_SUFFIXES[format][0]).name}")
    return format


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the student to ONNX or TorchScript", description=__doc__,
                                   formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("--model", type=path_argument,
                        help="student pipeline folder (default: the student that ships with star-vsr)")
    parser.add_argument("--format", choices=EXPORT_FORMATS,
                        help="onnx (for onnxruntime, TensorRT, ...) or torchscript (torch.jit.load); default: from "
                             "the output name, .onnx for onnx, .pt / .pth / .ts for torchscript")
    parser.add_argument("-o", "--output", type=path_argument, required=True,
                        help="output file (e.g. student.onnx, student.pt)")
    parser.add_argument("--height", type=int, default=180, help="LR frame height the export is made for (default 180)")
    parser.add_argument("--width", type=int, default=320, help="LR frame width the export is made for (default 320)")
    parser.add_argument("--upscale", type=float, default=None,
                        help="scale (default: the student's own; 4 for the shipped student)")
    parser.add_argument("--verify", action="store_true", help="compare the export with PyTorch on a few frames")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import explain_out_of_memory
    from ..export import MAX_EXPORT_SIDE, check_export_packages, export_student, verify_export
    from ..outputs import check_new_output
    from . import quiet_model_loading

    output = Path(args.output)
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value < 1:  # ("frame size must be positive, got 24x0", once the model had loaded)
            raise InputError(f"{flag} must be >= 1, got {value}")
        if value > MAX_EXPORT_SIDE:  # (before the model loads; export_student's own check names no flag)
            raise InputError(f"{flag} must be <= {MAX_EXPORT_SIDE} (the export runs the model once on a frame of "
                             f"that size), got {value}")
    args.format = export_format(output, args.format)
    check_export_packages(args.format, verify=args.verify)  # before the model loads
    if args.model is None:
        from ..student import default_student_folder

        args.model = str(default_student_folder())
    if not Path(args.model).is_dir():
        what = "is not a folder" if Path(args.model).exists() else why_missing(args.model)
        raise InputError(f"--model {args.model} {what}; it takes a student pipeline folder "
                         "(StarStudentPipeline.save_pretrained), or leave it out for the shipped student")
    default_name = "student.onnx" if args.format == "onnx" else "student.pt"
    check_new_output(args.output, args.overwrite, file_hint=f"name the file to write: -o {output / default_name}")
    if output.resolve().is_relative_to(Path(args.model).resolve()) and (output.exists() or output.is_symlink()):
        # with --overwrite it replaced the weights (or config) it was reading, the shipped student's included
        raise InputError(f"-o {output} is a file of the model being exported ({args.model}); write the export "
                         f"elsewhere, or to a new name")
    from star_vsr.pipelines.pipeline_star_student import missing_student_help

    from ..model_folder import check_pipeline_folder, saved_pipeline_class

    recorded = saved_pipeline_class(args.model)  # before its parts are checked: a StarVSR folder with one missing
    if recorded not in (None, "StarStudentPipeline"):  # was "the student pipeline at ... lists 'unet'"
        raise InputError(f"{args.model} holds a {recorded}; only student pipelines can be exported")
    check_pipeline_folder(Path(args.model), "student", missing_student_help(Path(args.model)))  # (STAR's help
    # would not fit)
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    from ..models.student import output_size

    quiet_model_loading()
    student = StarStudentPipeline.from_pretrained(args.model).student
    scale = student.check_scale(args.upscale)
    out_height, out_width = output_size(args.height, args.width, scale)
    def verify(written: Path) -> None:  # before the file is moved into place: a failed one is not left at -o
        difference = verify_export(written, student, args.format, args.height, args.width, args.upscale)
        print(f"largest |{args.format} - PyTorch| over 3 streamed frames: {difference:.2e}")
        if difference > VERIFY_TOLERANCE:
            raise InputError(f"the export differs from PyTorch by {difference:.2e} > {VERIFY_TOLERANCE:g}; "
                             f"nothing was written to {output}")

    with explain_out_of_memory(f"exporting the student for {args.width}x{args.height} frames",
                               "lower --height / --width (the export runs the model once at that size)"):
        export_student(student, output, args.format, args.height, args.width, args.upscale,
                       check=verify if args.verify else None, overwrite=args.overwrite)
    shown = repr(float(scale)).removesuffix(".0")  # (as given: 3.9999999 is no x4, which has its own head)
    print(f"wrote {output} ({args.format}, {args.width}x{args.height} LR frames -> {out_width}x{out_height}, "
          f"x{shown})")
    return 0
