"""Upscale video files with any star-vsr pipeline, streaming frames from the input to the output.

``load_upscaler`` opens a model folder (a ``StarVSRPipeline`` or a ``StarStudentPipeline``, told
apart by its ``model_index.json``) on the right device; ``upscale_video`` streams a file through
it into an atomically written video that keeps the source's frame rate and audio. With a student
it saves checkpoints as it goes (``partial_folder``), so a stopped run goes on where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch
from tqdm.auto import tqdm

from .errors import CorruptVideoError, DeviceError, InputError, UnsupportedVideoError
from .models.student import StarStudentState

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Seconds of upscaling between checkpoints of a resumable run: at most this much work is lost when it stops.
CHECKPOINT_SECONDS = 60.0
#: Files of a resumable run's ``partial_folder``: the manifest and the recurrent state after N frames.
MANIFEST = "progress.json"
STATE_NAME = "state_{:09d}.safetensors"
STATE_FIELDS = tuple(field.name for field in dataclasses.fields(StarStudentState))


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks CUDA when present, else the CPU; asking for CUDA without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise InputError(f"unknown --device {device!r}: use auto, cpu, cuda or cuda:N")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} needs a CUDA GPU, and none is available; use --device cpu")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is float16 on CUDA and float32 on the CPU; float16 on the CPU is refused."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    if DTYPES[dtype] == torch.float16 and device.type == "cpu":
        raise DeviceError("fp16 needs a GPU; on the CPU use bf16 or fp32")
    return DTYPES[dtype]


def pipeline_class_name(folder: Union[str, Path]) -> str:
    """``_class_name`` recorded in a pipeline folder's model_index.json."""
    from star_vsr.pipelines.pipeline_star_vsr import MISSING_WEIGHTS_HELP

    from .model_folder import check_pipeline_folder

    return check_pipeline_folder(Path(folder), "star-vsr (student or StarVSR)", MISSING_WEIGHTS_HELP)


def load_upscaler(folder: Union[str, Path], device: str = "auto", dtype: str = "auto") -> Any:
    """Load the pipeline saved in ``folder`` onto ``device`` with weights in ``dtype``."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    name = pipeline_class_name(folder)
    if name == "StarVSRPipeline":
        from star_vsr.pipelines.pipeline_star_vsr import StarVSRPipeline as cls
    elif name == "StarStudentPipeline":
        from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline as cls
    else:
        raise InputError(f"{folder} holds a {name}, which star-vsr cannot run")
    return cls.from_pretrained(folder, dtype=torch_dtype).to(torch_device)


def upscale_video(pipe: Any, input_path: Union[str, Path], output_path: Union[str, Path], *,
                  codec: Optional[str] = None, crf: Optional[int] = None, keep_audio: bool = True,
                  progress: bool = True, restart: bool = False, checkpoint_seconds: Optional[float] = None,
                  **pipeline_kwargs: Any) -> Path:
    """Run ``pipe`` over a video file or image folder and write the result.

    Frames stream from the input through the pipeline into the output, which appears under
    ``output_path`` only when everything succeeded (and keeps the input's fps and audio).
    ``pipeline_kwargs`` go to the pipeline call (``upscale``, ``num_inference_steps``, ...).

    With a student pipeline the run is resumable: every ``checkpoint_seconds`` (None:
    ``CHECKPOINT_SECONDS``) it commits the
    frames written so far as a segment and saves the recurrent state after them in
    ``partial_folder(output_path)``. If the run stops (Ctrl-C, a crash, a full disk), the same call
    goes on from the last checkpoint with the frames an uninterrupted run computes (with FFV1 or PNG
    the output is the same, bit for bit; H.264/H.265 get a key frame at every checkpoint); ``restart``
    discards the saved work instead. A saved run with other settings (input, weights, scale, codec,
    ...) is an ``InputError`` that names them. The diffusion pipeline is not resumable.
    """
    from star_vsr.pipelines.pipeline_star_student import StarStudentPipeline

    from .frames import FileFrameSource, frames_to_uint8

    source = FileFrameSource(input_path)
    info_fps = _frame_rate(input_path)
    audio = str(input_path) if keep_audio and Path(input_path).is_file() else None
    work = partial_folder(output_path)
    if restart:
        shutil.rmtree(work, ignore_errors=True)
    pipe.set_progress_bar_config(disable=not progress, desc="upscale", unit="step")
    if isinstance(pipe, StarStudentPipeline):
        every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
        return _upscale_resumable(pipe, source, Path(output_path), info_fps, codec=codec, crf=crf, audio=audio,
                                  progress=progress, checkpoint_seconds=every, **pipeline_kwargs)
    if (work / MANIFEST).is_file():
        raise InputError(f"{work} holds an unfinished run of a student model to {output_path}; "
                         f"pass --restart (restart=True) to discard it")
    from .io import VideoWriter

    with VideoWriter(output_path, info_fps, codec=codec, crf=crf, audio_from=audio, progress=progress,
                     total_frames=source.num_frames) as writer:

        def sink(frames: torch.Tensor) -> None:  # (k, 3, H, W) in [0, 1]
            writer.write(frames_to_uint8(frames))

        pipe(source, frame_sink=sink, **pipeline_kwargs)
    return Path(output_path)


def partial_folder(output_path: Union[str, Path]) -> Path:
    """The hidden folder next to ``output_path`` where an unfinished resumable run keeps its work."""
    output = Path(output_path)
    return output.parent / f".{output.name}.partial"


def _upscale_resumable(pipe: Any, source: Any, output: Path, fps: Any, *, codec: Optional[str],
                       crf: Optional[int], audio: Optional[str], progress: bool, checkpoint_seconds: float,
                       **pipeline_kwargs: Any) -> Path:
    """``upscale_video`` for a student pipeline: segments and recurrent state saved as it goes."""
    from .frames import frames_to_uint8
    from .io.segments import SegmentedVideoWriter

    work = partial_folder(output)
    writer = SegmentedVideoWriter(output, fps, work, codec=codec, crf=crf, audio_from=audio, progress=progress,
                                  total_frames=source.num_frames)
    settings = _run_settings(pipe, source.path, writer, audio, float(pipeline_kwargs.get("upscale", 4)))
    saved = _load_checkpoint(work, settings, pipe.student)
    state, start = None, 0
    if saved is not None:
        writer.segments, state, start = saved
        _say(progress, f"{output}: going on after frame {start} of {source.num_frames} (saved in {work} by an "
                       f"earlier run; --restart starts over)")
    last_checkpoint = time.monotonic()

    def frame_sink(frames: torch.Tensor) -> None:  # (k, 3, H, W) in [0, 1]
        writer.write(frames_to_uint8(frames))

    def state_sink(frames_done: int, state: Any) -> None:
        nonlocal last_checkpoint
        if time.monotonic() - last_checkpoint >= checkpoint_seconds:
            writer.commit()
            _save_checkpoint(work, settings, writer.segments, frames_done, state)
            last_checkpoint = time.monotonic()

    try:
        pipe(source, frame_sink=frame_sink, state=state, start_frame=start, state_sink=state_sink,
             **pipeline_kwargs)
        writer.finish()
    except (InputError, CorruptVideoError, UnsupportedVideoError):  # the input: going on would fail again
        writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    except BaseException:
        writer.abort()
        if (work / MANIFEST).is_file():
            frames = json.loads((work / MANIFEST).read_text())["frames"]
            _say(progress, f"{output}: stopped; {frames} frames are saved in {work}. Run the same command again "
                           f"to go on from there (--restart starts over)")
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return output


def _say(enabled: bool, message: str) -> None:
    if enabled:
        tqdm.write(message, file=sys.stderr)


def _run_settings(pipe: Any, input_path: Path, writer: Any, audio: Optional[str], upscale: float) -> dict[str, Any]:
    """What a saved run must share with this one to go on from it."""
    student = pipe.student
    weights = hashlib.sha256()
    for name, tensor in student.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().float().cpu().numpy().tobytes())
    return {"input": str(Path(input_path).resolve()), "input_files": _fingerprint(Path(input_path)),
            "student_weights": weights.hexdigest()[:16], "dtype": str(student.dtype).removeprefix("torch."),
            "upscale": upscale, "codec": writer.codec, "crf": writer.crf, "audio": audio is not None}


def _fingerprint(path: Path) -> list[int]:
    """[bytes, latest modification time in ns, files] of an input file or image folder."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0), len(stats)]


def _save_checkpoint(work: Path, settings: dict[str, Any], segments: list[tuple[str, int]], frames: int,
                     state: Any) -> None:
    """Save the recurrent state after ``frames`` frames, then the manifest that points at it and at the
    committed segments (replaced atomically: a crash leaves the previous checkpoint whole)."""
    from safetensors.torch import save_file

    if frames != sum(count for _, count in segments):
        raise RuntimeError(f"checkpoint of {frames} frames with {segments} committed")  # a bug, not the user's
    name = STATE_NAME.format(frames)
    tensors, layout = {}, {}
    for field, tensor in zip(STATE_FIELDS, state.tensors()):
        tensors[field] = tensor.detach().cpu().contiguous()
        layout[field] = str(not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last))
    save_file(tensors, str(work / name), metadata=layout)
    manifest = {"settings": settings, "frames": frames, "state": name, "segments": segments}
    temp = work / (MANIFEST + ".tmp")
    temp.write_text(json.dumps(manifest, indent=1))
    os.replace(temp, work / MANIFEST)
    _remove_unlisted(work, manifest)


def _remove_unlisted(work: Path, manifest: dict[str, Any]) -> None:
    """Delete what the manifest does not name (older states, a segment or temporary file of a run that stopped)."""
    keep = {MANIFEST, manifest["state"], *(name for name, _ in manifest["segments"])}
    for path in work.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _load_checkpoint(work: Path, settings: dict[str, Any], student: Any) -> Optional[tuple[list, Any, int]]:
    """(segments, state, frames) saved in ``work`` for a run with ``settings``; None when there is none.

    Raises:
        InputError: the saved run had other settings, or its files are damaged.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    if not (work / MANIFEST).is_file():
        shutil.rmtree(work, ignore_errors=True)  # a run that stopped before its first checkpoint
        return None
    fix = f"delete {work} or pass --restart (restart=True) to start over"
    try:
        manifest = json.loads((work / MANIFEST).read_text())
        saved_settings, frames, segments = manifest["settings"], int(manifest["frames"]), manifest["segments"]
        with safe_open(str(work / manifest["state"]), framework="pt") as file:
            layout = file.metadata() or {}
            tensors = [file.get_tensor(field) for field in STATE_FIELDS]
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as error:
        raise InputError(f"{work} holds an unfinished run whose files are damaged ({error}); {fix}") from None
    changed = [key for key in settings if saved_settings.get(key) != settings[key]]
    if changed:
        details = ", ".join(f"{key} {saved_settings.get(key)!r} -> {settings[key]!r}" for key in changed)
        raise InputError(f"{work} holds an unfinished run ({frames} frames done) with other settings: {details}; "
                         f"run with the earlier settings to go on, or {fix}")
    missing = [name for name, _ in segments if not (work / name).exists()]
    if missing:
        raise InputError(f"{work} holds an unfinished run whose segments {missing} are missing; {fix}")
    _remove_unlisted(work, manifest)
    weight = student.fuse.weight
    state = StarStudentState(*(
        t.to(weight.device).contiguous(memory_format=torch.channels_last) if layout.get(field) == "True"
        else t.to(weight.device)
        for field, t in zip(STATE_FIELDS, tensors)))
    return [tuple(segment) for segment in segments], state, frames


def _frame_rate(path: Union[str, Path]):
    from .io import probe_video

    return probe_video(path).frame_rate
