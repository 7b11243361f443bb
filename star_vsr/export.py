"""Export the student's streaming step to ONNX or TorchScript, and check an export against PyTorch.

What is exported is one step of the stream, ``StarStudentModel.step_tensors`` at a fixed frame
size and scale, in float32:

- inputs: ``lr_frame`` (1, 3, h, w) in [0, 1], ``hidden`` (1, num_channels, h_p, w_p),
  ``previous_features`` (1, clean_feature_channels, h_p, w_p), ``previous_frame`` (1, 3, h_p, w_p)
  (all zeros for the first frame; h_p, w_p = h, w rounded up to even);
- outputs: ``sr_frame`` (1, 3, H, W) (not clamped), ``next_hidden``, ``next_previous_features``,
  ``next_previous_frame``, to feed back as the state of the next frame.

A runtime streams a video by calling the exported step once per frame. The TorchScript module also has
``initial_state(lr_frame)`` (the zero state, on the frame's device) and refuses frames of another size or
dtype and states of other shapes (``_CheckedStep``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import InputError, cannot_write, check_whole_number, is_out_of_memory, option, why_missing
from .io.atomic import check_no_replace, move_into_place, parent_folders, temporary_path
from .io.writer import X264_MAX_SIZE
from .models.student import StarStudentModel

#: Export formats ``export_student`` writes.
EXPORT_FORMATS = ("onnx", "torchscript")
#: The largest LR frame side an export is made for: the longest side x264 writes (a student's output is larger
#: still).
MAX_EXPORT_SIDE = X264_MAX_SIZE
#: ONNX opset of exported files.
ONNX_OPSET = 18
#: Names of the step's inputs and outputs in exported files.
INPUT_NAMES = ("lr_frame", "hidden", "previous_features", "previous_frame")
OUTPUT_NAMES = ("sr_frame", "next_hidden", "next_previous_features", "next_previous_frame")


class StarStudentStep(nn.Module):
    """``student.step_tensors`` at a fixed ``scale`` as a module with tensor inputs and outputs."""

    def __init__(self, student: StarStudentModel, scale: Optional[float] = None) -> None:
        super().__init__()
        self.student = student
        # checked before any float(): True and "4" were exports at x1 and x4, "abc" a ValueError (black-box hunt)
        self.scale = student.check_scale(scale)

    def forward(self, lr_frame: torch.Tensor, hidden: torch.Tensor, previous_features: torch.Tensor,
                previous_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.student.step_tensors(lr_frame, hidden, previous_features, previous_frame, self.scale)


def example_inputs(student: StarStudentModel, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Inputs of one exported step for ``height`` x ``width`` frames: a grey frame and a zero state."""
    frame = torch.full((1, 3, height, width), 0.5)
    return (frame, *student.init_state(1, height, width, device=torch.device("cpu"), dtype=torch.float32).tensors())


EXPORT_PACKAGES = {"onnx": ("onnx", "onnxscript"), "onnxruntime": ("onnxruntime",)}
"""What ``torch.onnx.export`` needs (an export) and what runs the file (``verify``); the ``export`` extra."""


def check_export_packages(format: str, verify: bool = False, export: bool = True) -> None:
    """`InputError` naming the install command when an ONNX export (or its check, ``verify``; ``export=False``:
    the check alone, which needs onnxruntime only) lacks its packages, which are not star-vsr's own dependencies
    (TorchScript needs none): torch's exporter failed with a traceback."""
    if format != "onnx":
        return
    wanted = (EXPORT_PACKAGES["onnx"] if export else ()) + (EXPORT_PACKAGES["onnxruntime"] if verify else ())
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        from . import __version__

        checking = f"checking an ONNX export ({option('verify_export', '--verify')})"
        what = checking if missing == ["onnxruntime"] else "ONNX export"
        torchscript = option('format="torchscript"', "-o student.pt")
        raise InputError(f"{what} needs {' and '.join(missing)}, which star-vsr installs only with its export "
                         f"extra: in a clone pip install -e \".[export]\", from a wheel pip install "
                         f"\"star_vsr-{__version__}-py3-none-any.whl[export]\"; TorchScript ({torchscript}) needs "
                         f"nothing more")


def _frame_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) as ints: whole numbers >= 1 (9.0 as YAML may give it; 9.5 or "9" was torch.full's
    TypeError)."""
    for name, side in (("height", height), ("width", width)):
        check_whole_number(name, side, 1)
    return int(height), int(width)


def _student_model(student: Any) -> StarStudentModel:
    """``student``, or the model of the ``StarStudentPipeline`` given in its place (it was an AttributeError,
    "'StarStudentPipeline' object has no attribute 'float'"); ``InputError`` for anything else."""
    model = student if isinstance(student, StarStudentModel) else getattr(student, "student", None)
    if not isinstance(model, StarStudentModel):
        raise InputError(f"student must be a StarStudentModel (or a StarStudentPipeline), got {type(student).__name__}")
    return model


def export_student(student: StarStudentModel, path: Union[str, Path], format: str, height: int, width: int,
                   scale: Optional[float] = None, check: Optional[Callable[[Path], None]] = None,
                   overwrite: bool = True) -> Path:
    """Write the streaming step of ``student`` for ``height`` x ``width`` LR frames to ``path``.

    Args:
        student: the model (not modified; a float32 CPU copy is exported), or a ``StarStudentPipeline``.
        path: output file (.onnx or .pt by convention).
        format: "onnx" or "torchscript".
        height, width: LR frame size the export is specialised to.
        scale: output / input size (default: the student's ``config.scale``).
        check: called with the written file before it is moved to ``path`` (``verify_export``); what it raises
            leaves nothing at ``path``.
        overwrite: False: a file at ``path`` when the export is done (another run wrote it meanwhile) is kept and
            ``OutputExistsError`` raised.
    """
    if format not in EXPORT_FORMATS:
        raise InputError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    student = _student_model(student)
    student.check_scale(scale)  # before the packages and the output are looked at
    path = Path(path).expanduser()  # "~/student.onnx" as the command line takes it
    height, width = _frame_size(height, width)
    if max(height, width) > MAX_EXPORT_SIDE:  # (near the 64-bit limit: torch overflow tracebacks)
        raise InputError(f"frame sides must be at most {MAX_EXPORT_SIDE} (the export runs the model once on a frame "
                         f"of that size), got {width}x{height}")
    check_export_packages(format)
    check_no_replace(path, overwrite)  # before the export, not after it (where move_into_place refuses)
    # no parameter requires grad: the saved TorchScript module's did, so a caller's stream without torch.no_grad()
    # chained every frame's autograd graph through the state and grew by 185 MiB a 320x180 frame
    model = copy.deepcopy(student).to(device="cpu").float().eval().requires_grad_(False)
    model.to(memory_format=torch.contiguous_format)
    step = StarStudentStep(model, scale).eval()
    inputs = example_inputs(model, height, width)
    path = Path(path)
    try:
        with parent_folders(path):  # a failed check or a stop leaves no folders made for the file
            temp = temporary_path(path)  # the file appears whole or not at all (a kill mid-save left a truncated one)
            try:
                _save_step(step, inputs, temp, format)
                if check is not None:
                    check(temp)
                move_into_place(temp, path, overwrite)
            finally:
                temp.unlink(missing_ok=True)
    except OSError as error:  # a full disk, a read-only folder: said with the file, as other outputs are
        raise cannot_write(path, error) from None
    return path


def export_metadata(scale: float, height: int, width: int) -> dict[str, str]:
    """What an ONNX export records in its ``metadata_props`` (onnxruntime: ``get_modelmeta().custom_metadata_map``):
    the scale as Python writes the float (``"4.0"``, ``"3.9999999"``: the output size alone does not tell a
    near-integer scale's resampling from the integer scale's head), the LR frame size and the star-vsr version. A
    TorchScript export has them as the module's ``scale``, ``height`` and ``width``."""
    from . import __version__

    return {"star_vsr.scale": repr(float(scale)), "star_vsr.lr_height": str(height),
            "star_vsr.lr_width": str(width), "star_vsr.version": __version__}


def _save_step(step: "StarStudentStep", inputs: tuple[torch.Tensor, ...], path: Path, format: str) -> None:
    with torch.no_grad(), warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir"):
        # the export is specialised to this frame size on purpose, which is what these warn about; the ONNX
        # optimiser logs every multi-output op (Split) it does not fold, which is no fault of the export
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
        height, width = inputs[0].shape[-2:]
        if format == "onnx":
            program = torch.onnx.export(step, inputs, dynamo=True, opset_version=ONNX_OPSET,
                                        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                                        external_data=False, verbose=False)
            program.model.metadata_props.update(export_metadata(step.scale, int(height), int(width)))
            program.save(str(path))
        else:
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.(script|save)", category=FutureWarning)
            traced = torch.jit.trace(step, inputs, check_trace=False)
            shapes = [list(tensor.shape) for tensor in inputs[1:]]
            checked = torch.jit.script(_CheckedStep(traced, int(height), int(width), step.scale, shapes))
            buffer = io.BytesIO()  # torch.jit.save onto a full disk aborted the process (a C++ exception)
            torch.jit.save(checked, buffer)
            path.write_bytes(buffer.getvalue())


class _CheckedStep(nn.Module):
    """The traced step behind checks of its inputs, with ``initial_state`` (the zero state of the first frame).

    Traced, a non-integer scale's output size is a constant, so frames of another size came out resized to it
    without an error (ONNX refuses them itself); a state of another shape failed deep inside with "The size of
    tensor a (17) must match ...", and uint8 frames, or float ones on 8-bit levels, came out as garbage."""

    def __init__(self, step: torch.jit.ScriptModule, height: int, width: int, scale: float,
                 state_shapes: list[list[int]]) -> None:
        super().__init__()
        self.step, self.height, self.width, self.scale = step, height, width, scale
        self.state_shapes = state_shapes  # hidden, previous_features, previous_frame: [1, c, h_p, w_p] each

    def forward(self, lr_frame: torch.Tensor, hidden: torch.Tensor, previous_features: torch.Tensor,
                previous_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if lr_frame.dim() != 4 or lr_frame.shape[0] != 1 or lr_frame.shape[1] != 3:
            raise ValueError("this export takes one RGB frame at a time, lr_frame of shape [1, 3, "
                             + str(self.height) + ", " + str(self.width) + "], got " + str(lr_frame.shape))
        if lr_frame.shape[-2] != self.height or lr_frame.shape[-1] != self.width:
            raise ValueError("this export takes lr_frame of " + str(self.width) + "x" + str(self.height)
                             + " pixels, got " + str(lr_frame.shape[-1]) + "x" + str(lr_frame.shape[-2])
                             + "; export again with --height / --width for that size")
        if lr_frame.dtype != torch.float32:
            raise ValueError("this export takes float32 frames with values in [0, 1] (uint8 / 255.0)")
        low, high = float(lr_frame.min()), float(lr_frame.max())  # (both NaN where any value is)
        if not (math.isfinite(low) and math.isfinite(high)):  # NaN passes any comparison; inf has no integer
            raise ValueError("this export takes float32 frames with values in [0, 1] (uint8 / 255.0), got values "
                             "that are not finite (inf or NaN)")
        if low < -0.5 or high > 1.5:  # 8-bit levels (0-255) or [-1, 1] input came out as garbage
            raise ValueError("this export takes float32 frames with values in [0, 1] (uint8 / 255.0), got values "
                             "from about " + str(int(round(low))) + " to " + str(int(round(high))))
        names = ["hidden", "previous_features", "previous_frame"]
        for i, tensor in enumerate([hidden, previous_features, previous_frame]):
            if tensor.shape != self.state_shapes[i]:
                raise ValueError("this export takes " + names[i] + " of shape " + str(self.state_shapes[i])
                                 + ", got " + str(tensor.shape) + "; start a stream from initial_state(lr_frame)")
        return self.step(lr_frame, hidden, previous_features, previous_frame)

    @torch.jit.export
    def initial_state(self, lr_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state of a stream's first frame (and after a scene cut): zeros, on ``lr_frame``'s device."""
        return (lr_frame.new_zeros(self.state_shapes[0], dtype=torch.float32),
                lr_frame.new_zeros(self.state_shapes[1], dtype=torch.float32),
                lr_frame.new_zeros(self.state_shapes[2], dtype=torch.float32))


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from the ``logging`` loggers ``names`` (and their children) inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _onnx_runner(path: Path) -> tuple[Callable[..., list[np.ndarray]], tuple[int, int]]:
    """(a run of the ONNX step at ``path``, the (height, width) of the frames it was exported for)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        return session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, inputs)))

    height, width = session.get_inputs()[0].shape[-2:]  # [1, 3, h, w]
    return run, (height, width)


def _torchscript_runner(path: Path) -> tuple[Callable[..., list[np.ndarray]], tuple[Optional[int], Optional[int]]]:
    """(a run of the TorchScript step at ``path``, the (height, width) of the frames it was exported for, or
    (None, None) for an export that does not record them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")

    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = module(*(torch.from_numpy(x) for x in inputs))
        return [o.numpy() for o in outputs]

    # (`_CheckedStep`'s; a file exported before it has no size of its own: the one asked for is taken)
    return run, (getattr(module, "height", None), getattr(module, "width", None))


def verify_export(path: Union[str, Path], student: StarStudentModel, format: str, height: int, width: int,
                  scale: Optional[float] = None, num_frames: int = 3, seed: int = 0) -> float:
    """Largest absolute difference between an exported step and PyTorch over a short stream.

    ``num_frames`` random frames are streamed through both (each carrying its own state); the
    ONNX file runs in onnxruntime on the CPU, the TorchScript file in ``torch.jit``. ``student`` as
    ``export_student`` takes it.
    """
    if format not in EXPORT_FORMATS:
        raise InputError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    student = _student_model(student)
    check_whole_number("num_frames", num_frames, 1)  # (0 compared nothing and returned 0.0: a perfect match)
    student.check_scale(scale)  # before the file loads
    height, width = _frame_size(height, width)
    check_export_packages(format, verify=True, export=False)  # (a missing onnxruntime read as a damaged file)
    path = Path(path).expanduser()
    if not path.is_file():  # (onnxruntime's "NO_SUCHFILE", torch's "open file failed")
        raise InputError(f"{path} {why_missing(path) if not path.exists() else 'is not a file'}: no exported file "
                         f"to verify")
    kinds = {"onnx": "an ONNX", "torchscript": "a TorchScript"}
    try:
        run, exported_size = _onnx_runner(path) if format == "onnx" else _torchscript_runner(path)
    except Exception as error:  # onnxruntime's InvalidProtobuf, torch's "PytorchStreamReader failed reading zip"
        if is_out_of_memory(error):
            raise
        detail = (str(error).strip().splitlines() or ["no detail"])[0]
        other = kinds["torchscript" if format == "onnx" else "onnx"]
        raise InputError(f"{path} cannot be loaded as {kinds[format]} export ({type(error).__name__}: {detail}); "
                         f"is it {other} file, or damaged?") from None
    if None not in exported_size and exported_size != (height, width):  # (the export's own refusal, or a
        # TorchScript interpreter traceback)
        raise InputError(f"{path} was exported for frames of {exported_size[1]}x{exported_size[0]}, not "
                         f"{width}x{height}: verify it at the size it was exported for")
    model = copy.deepcopy(student).to(device="cpu").float().eval()
    step = StarStudentStep(model, scale)
    generator = torch.Generator().manual_seed(seed)
    _, *state = example_inputs(model, height, width)
    exported_state = [s.contiguous().numpy() for s in state]
    worst = 0.0
    with torch.no_grad():
        for _ in range(int(num_frames)):
            frame = torch.rand(1, 3, height, width, generator=generator)
            sr, *state = step(frame, *state)
            sr_exported, *exported_state = run(frame.numpy(), *exported_state)
            if sr_exported.shape != sr.shape:  # (numpy's "operands could not be broadcast together")
                raise InputError(f"{path} gives outputs of {sr_exported.shape[-1]}x{sr_exported.shape[-2]} and the "
                                 f"student at scale {scale or model.config.scale} of {sr.shape[-1]}x{sr.shape[-2]}: "
                                 f"verify it with the scale it was exported at")
            worst = max(worst, float(np.abs(sr_exported - sr.numpy()).max()))
    return worst
