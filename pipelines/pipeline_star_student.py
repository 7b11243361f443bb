"""StarStudentPipeline: fast real-world video super-resolution with the distilled student.

The student (``StarStudentModel``) is online and recurrent, so the pipeline streams a video of any
length: LR frames are read a chunk at a time, each frame goes through ``student.step`` with the
state carried over, and finished HR chunks go to ``frame_sink`` (or are collected). With a sink,
memory stays flat in the video's length. At a scene cut (``star_vsr.scene_cuts``) the state starts
afresh, as at the start of a video, so that the old scene does not bleed into the new one.

Three ways to run a step: eager PyTorch (default; channels_last, any device, float32/bfloat16 on
the CPU, float16/bfloat16 on CUDA), ``enable_torch_compile()`` (opt-in) and
``use_cuda_graph=True`` (CUDA only: the step is captured once per frame size and replayed).

Load with ``StarStudentPipeline.from_pretrained(folder)`` (``DiffusionPipeline.from_pretrained``
cannot find this out-of-tree class).
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from star_vsr.errors import (DeviceError, InputError, explain_out_of_memory_of_call, named, one_generator, option,
                             restart_note)
from star_vsr.frames import FrameSource, VideoInput, as_frame_source, frames_to_output, skip_frames
from star_vsr.model_folder import (CheckedPipeline, check_components, check_pipeline_folder,
                                   check_weight_format, load_checked, local_load_kwargs)
from star_vsr.models.student import StarStudentModel, StarStudentState, output_size
from star_vsr.scene_cuts import SCENE_CUT_THRESHOLD, scene_cuts
from star_vsr.student import bundled_student_help, is_bundled_student
from star_vsr.units import count_of

#: LR frames read, upscaled and handed to ``frame_sink`` at once.
DEFAULT_CHUNK_SIZE = 8
#: Eager steps run on a side stream before a CUDA graph is captured (cuDNN picks its kernels).
CUDA_GRAPH_WARMUP_STEPS = 3
#: How far (any pixel, [0, 1] scale) frame ``start_frame - 1`` may be from the last frame a resumed state saw: half
#: an 8-bit level (the same frame, decoded again, is equal; a state given with another ``start_frame`` went on
#: from the wrong frame without a word).
RESUME_FRAME_TOLERANCE = 0.5 / 255

MISSING_STUDENT_HELP = """\
A student pipeline folder holds model_index.json and student/ (config + weights). Train one with
`accelerate launch training/distill_student.py --config configs/distill_student.yaml` (its output
folder is such a folder; README, "The student"), then pass it to
StarStudentPipeline.from_pretrained / `star-vsr upscale --model`. Without --model, `star-vsr upscale`
uses the student that ships inside the package. For speed tests without weights,
star_vsr.student.build_student_pipeline(preset) makes a randomly initialised student."""


def missing_student_help(folder: Path, otherwise: str = MISSING_STUDENT_HELP) -> str:
    """What to do about a student folder with a missing or damaged part: ``otherwise`` (`MISSING_STUDENT_HELP`),
    or, for the student that ships with star-vsr, a reinstall (the other help says to use that one)."""
    return bundled_student_help(folder) if is_bundled_student(folder) else otherwise


def _ignore_diffusion_arguments(arguments: dict[str, Any]) -> None:
    """Warn that the student ignores ``arguments``, which only ``StarVSRPipeline.__call__`` takes (a
    ``TypeError`` names one that neither pipeline takes, as Python does)."""
    if not arguments:
        return
    import inspect

    from star_vsr.pipelines.pipeline_star_vsr import StarVSRPipeline
    from star_vsr.user_warnings import warn_user

    known = inspect.signature(StarVSRPipeline.__call__).parameters
    for name in arguments:
        if name not in known:
            raise TypeError(f"StarStudentPipeline.__call__() got an unexpected keyword argument {name!r}")
    many = len(arguments) > 1
    warn_user(f"{', '.join(arguments)} only appl{'y' if many else 'ies'} to diffusion models (StarVSRPipeline); "
              f"the student ignores {'them' if many else 'it'}")  # (the caller's line: said for each caller)


def memory_advice(upscale: float, on_gpu: bool = False) -> str:
    """What to change when a run upscaling by ``upscale`` (on a GPU: ``on_gpu``) does not fit in memory (the
    student's memory grows with the frame size), naming command-line flags or Python arguments
    (``star_vsr.errors.option``): a smaller factor only where there is one to offer (it advised --upscale 2 to a
    run by 2), the CPU only to a GPU run."""
    smaller = "; ".join(filter(None, (named("upscale", 2), restart_note())))
    factor = f" or by a smaller factor ({smaller})" if upscale > 2 else ""
    to_cpu = option("pipe.to('cpu')", "--device cpu")
    cpu = f"; from a GPU, the CPU ({to_cpu}) usually has more memory" if on_gpu else ""
    return f"free some memory, or upscale a smaller video{factor}{cpu}"


@dataclass
class StarStudentPipelineOutput(BaseOutput):
    """Output of ``StarStudentPipeline``.

    Args:
        frames: the upscaled video, (1, n, 3, H, W) float in [0, 1] for ``output_type="pt"``,
            (1, n, H, W, 3) for "np", a list of lists of PIL images for "pil", or None when the
            frames went to ``frame_sink``.
    """

    frames: Any


#: ``student.step_tensors``: (lr_frame, *state, scale) -> (sr_frame, *next_state)
StepFunction = Callable[..., tuple[torch.Tensor, ...]]
#: ``state_sink(frames_done, state)``: frames of the video upscaled so far and the state after them
StateSink = Callable[[int, StarStudentState], None]


class CudaGraphStep:
    """``student.step_tensors`` at one frame size and scale, captured as a CUDA graph.

    The LR frame and the state live in static device buffers; each call copies the frame in,
    replays the graph and copies the new state back into the state buffers, so a whole video
    runs through one captured graph.

    Args:
        student: the model, already on a CUDA device.
        height, width: LR frame size.
        scale: output / input size.
        warmup_steps: eager steps run before the capture.
    """

    def __init__(self, student: StarStudentModel, height: int, width: int, scale: float,
                 warmup_steps: int = CUDA_GRAPH_WARMUP_STEPS) -> None:
        check_cuda_graph_support(student)
        weight = student.fuse.weight
        self.frame = torch.zeros(1, 3, height, width, device=weight.device, dtype=weight.dtype)
        self.state = student.init_state(1, height, width)
        side = torch.cuda.Stream(weight.device)
        side.wait_stream(torch.cuda.current_stream(weight.device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(warmup_steps):
                student.step_tensors(self.frame, *self.state.tensors(), scale)
        torch.cuda.current_stream(weight.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.sr, *self.next_state = student.step_tensors(self.frame, *self.state.tensors(), scale)

    def __call__(self, lr_frame: torch.Tensor) -> torch.Tensor:
        """(1, 3, h, w) on the graph's device -> sr (1, 3, H, W), a fresh tensor."""
        self.frame.copy_(lr_frame)
        self.graph.replay()
        for buffer, new in zip(self.state.tensors(), self.next_state):
            buffer.copy_(new)
        return self.sr.clone()


def check_cuda_graph_support(student: StarStudentModel) -> None:
    """Raise ``DeviceError`` unless CUDA is available and ``student`` is on a CUDA device."""
    if not torch.cuda.is_available():
        raise DeviceError("use_cuda_graph=True needs a CUDA GPU, and none is available; leave it off on the CPU")
    if student.fuse.weight.device.type != "cuda":
        raise DeviceError(f"use_cuda_graph=True needs the student on a CUDA device, it is on "
                          f"{student.fuse.weight.device}; call pipe.to('cuda') first")


class StarStudentPipeline(CheckedPipeline, DiffusionPipeline):
    r"""Online video super-resolution with a ``StarStudentModel``, streaming any length.

    Args:
        student: the distilled student network.
    """

    model_cpu_offload_seq = "student"
    MEMORY_ADVICE = "The student has no attention layers; its memory grows with the frame size, not the video's length."

    def __init__(self, student: StarStudentModel) -> None:
        check_components(type(self), dict(student=student))
        super().__init__()
        student.to(memory_format=torch.channels_last)  # the fast layout for convs on CPUs and tensor cores
        self.register_modules(student=student)
        self._compiled_step: Optional[StepFunction] = None

    # ---------------------------------------------------------------- loading and devices
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike],
                        **kwargs: Any) -> "StarStudentPipeline":
        """Load a folder written by ``save_pretrained`` (e.g. by ``training/distill_student.py``). Never downloads."""
        folder = Path(pretrained_model_name_or_path).expanduser()  # "~/student" "did not exist"
        help_text = missing_student_help(folder)
        check_pipeline_folder(folder, "student", help_text, expected_class=cls, variant=kwargs.get("variant"),
                              passed=kwargs)
        check_weight_format(folder, kwargs.get("use_safetensors"), passed=kwargs)
        kwargs = local_load_kwargs(kwargs)
        return load_checked(folder, "student", help_text,
                            lambda: super(StarStudentPipeline, cls).from_pretrained(folder, **kwargs))

    def enable_xformers_memory_efficient_attention(self, attention_op: Optional[Callable] = None) -> None:
        """A warning and nothing more: the student has no attention layers (diffusers' own method changed nothing
        without a word, where ``StarVSRPipeline``'s switches its attention to xformers)."""
        from star_vsr.user_warnings import warn_user

        warn_user("StarStudentPipeline has no attention layers; enable_xformers_memory_efficient_attention changes "
                  "nothing")

    def enable_torch_compile(self, mode: Optional[str] = None, dynamic: bool = False) -> None:
        """Run each step through ``torch.compile`` (opt-in; the first frames pay the compilation).

        Measured once on this project's 2-core CPU machine (shipped ``small`` student, 320x180 x4,
        2 threads, an ad-hoc timing script that also set ``torch._inductor.config.freezing``, which
        this method does not): compiling took about 45 s, the compiled step ran 88-95 ms against
        91-104 ms eager (outputs within 2.4e-7). A few ms per frame win back 45 s only after
        thousands of frames, so on a CPU it stays opt-in.

        Args:
            mode: ``torch.compile`` mode (None: torch.compile's default; "max-autotune-no-cudagraphs" is worth
                trying on GPUs).
            dynamic: compile for changing frame sizes instead of recompiling per size.
        """
        has_compiler = any(shutil.which(c) for c in ("c++", "g++", "clang++"))
        if self.student.fuse.weight.device.type == "cpu" and not has_compiler:
            raise DeviceError("torch.compile on the CPU needs a C++ compiler (c++, g++ or clang++) on PATH; "
                              "install one or run the student eagerly")
        self._compiled_step = torch.compile(self.student.step_tensors, mode=mode, dynamic=dynamic)

    def disable_torch_compile(self) -> None:
        """Go back to eager steps."""
        self._compiled_step = None

    def _check_device_dtype(self, device: torch.device) -> None:
        if device.type == "cpu" and self.student.dtype == torch.float16:
            raise DeviceError("float16 weights need a GPU; on the CPU load the student with "
                              "dtype=torch.bfloat16 or torch.float32.")

    # ---------------------------------------------------------------- inputs
    def check_inputs(self, upscale: Optional[float], output_type: str, chunk_size: int, start_frame: int = 0,
                     state: Optional[StarStudentState] = None, height: int = 0, width: int = 0,
                     scene_cut_threshold: Optional[float] = SCENE_CUT_THRESHOLD) -> None:
        """Raise ``InputError`` for arguments ``__call__`` cannot run with (``height`` x ``width``: the LR frames')."""
        self.student.check_scale(upscale)
        if scene_cut_threshold is not None and (isinstance(scene_cut_threshold, bool) or not isinstance(
                scene_cut_threshold, numbers.Real) or not 0 <= scene_cut_threshold < math.inf):
            raise InputError(f"scene_cut_threshold must be a number >= 0 or None, got {scene_cut_threshold!r}")
        if output_type not in ("pt", "np", "pil"):
            raise InputError(f"output_type must be 'pt', 'np' or 'pil', got {output_type!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
            raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        if isinstance(start_frame, bool) or not isinstance(start_frame, numbers.Integral) or start_frame < 0:
            raise InputError(f"start_frame must be an integer >= 0, got {start_frame!r}")
        if start_frame and state is None:
            raise InputError("start_frame needs the state after those frames (state=, as state_sink gave it)")
        if state is not None and not isinstance(state, StarStudentState):
            raise InputError(f"state must be a StarStudentState that state_sink gave, got {type(state).__name__}")
        if state is not None:
            expected = self.student.init_state(1, height, width, device="meta").tensors()
            shapes = [tuple(t.shape) for t in state.tensors()]
            if shapes != [tuple(t.shape) for t in expected]:
                raise InputError(f"the state does not fit this student and a {width}x{height} video: its tensors "
                                 f"are {shapes}, expected {[tuple(t.shape) for t in expected]}")
            broken = [name for name in (*state.TENSOR_FIELDS, "last_lr_frame")
                      if getattr(state, name) is not None and not torch.isfinite(getattr(state, name)).all()]
            if broken:  # (it would give NaN frames from the first on: a state saved from a diverged run, say)
                raise InputError(f"the state holds NaN or infinite values (in {', '.join(broken)}): start "
                                 f"without it (state=None) or from one saved before")
            last = state.last_lr_frame  # the exact size (the tensors are padded to even sizes)
            if last is not None and tuple(last.shape[-2:]) != (height, width):
                raise InputError(f"the state comes from a {last.shape[-1]}x{last.shape[-2]} video, not "
                                 f"{width}x{height}")

    # ---------------------------------------------------------------- main
    @torch.no_grad()
    @explain_out_of_memory_of_call("upscaling with the student", lambda pipe, call: memory_advice(
        pipe.student.config.scale if call["upscale"] is None else call["upscale"], pipe.device.type != "cpu"))
    def __call__(
        self,
        video: Union[VideoInput, FrameSource],
        upscale: Optional[float] = None,
        output_type: str = "pt",
        return_dict: bool = True,
        frame_sink: Optional[Callable[[torch.Tensor], None]] = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        use_cuda_graph: bool = False,
        state: Optional[StarStudentState] = None,
        start_frame: int = 0,
        state_sink: Optional[StateSink] = None,
        generator: Union[torch.Generator, list[torch.Generator], None] = None,
        scene_cut_threshold: Optional[float] = SCENE_CUT_THRESHOLD,
        **diffusion_kwargs: Any,
    ) -> Union[StarStudentPipelineOutput, tuple]:
        r"""Upscale a video frame by frame.

        Args:
            video: a path (video file or image folder), a (n, 3, h, w) float tensor in [0, 1], a
                (n, h, w, 3) uint8 array (grey: (n, h, w, 1)), or a list of PIL images / arrays ((h, w, 3), grey
                (h, w) or (h, w, 1)). Files are read at 8 bits (a 10- or 16-bit video or image rounded, as
                ``star_vsr.io`` reads them); arrays, tensors and PIL images keep their precision (a uint16 array or
                16-bit image is scaled by 65535).
            upscale: output size / input size, between 1 and 4 (2, 3 and 4 use pixel shuffle heads); None: the
                student's own scale (``student.config.scale``, 4 for the bundled student).
            output_type: "pt", "np" or "pil".
            return_dict: return a ``StarStudentPipelineOutput`` rather than a tuple.
            frame_sink: if given, called with each finished chunk (k, 3, H, W) in [0, 1] on the host
                instead of collecting frames; memory then stays flat in the video's length.
            chunk_size: frames read and handed to ``frame_sink`` at once.
            use_cuda_graph: replay the step as a CUDA graph (CUDA only).
            state: the recurrent state to start from instead of zeros: one that ``state_sink`` was given,
                with ``start_frame`` the frame count it came with. Going on from there gives the frames
                an uninterrupted run gives; so does ``start_frame=0`` with ``video`` the frames that follow
                (a stream fed in pieces): the scene-cut test of its first frame uses the frame before it,
                which the state keeps (``StarStudentState.last_lr_frame``; a state without one, e.g. one
                rebuilt from ``tensors()``, skips that test, and the check that it comes from frames of this exact
                size: its tensors are of the size rounded up to even).
            start_frame: frames at the start of ``video`` that ``state`` has seen; they are decoded and
                dropped, not upscaled, and the output starts with frame ``start_frame``.
            state_sink: called after each chunk with the number of frames of ``video`` done so far
                (``start_frame`` included) and the state after them, e.g. to save a checkpoint; the
                state is the caller's to keep (later steps make new tensors; a CUDA graph's state
                buffers, which change in place, are copied).
            generator: not used: the student draws no random numbers, so its output is the same with any
                generator or none. Accepted (and checked) as ``StarVSRPipeline`` takes it, so that code can call
                either pipeline with the same arguments.
            scene_cut_threshold: a frame whose luma thumbnail differs from the previous frame's by more than
                this (mean absolute difference in [0, 1], ``star_vsr.scene_cuts``) starts a new scene: the state
                is reset to zeros first, so the frames after a cut are those the new scene alone gives. None
                carries the state through every frame.
            diffusion_kwargs: arguments of ``StarVSRPipeline.__call__`` that a student has no use for
                (``num_inference_steps``, ``prompt``, ...): ignored with a warning, as ``star-vsr upscale`` ignores
                their flags, so that code can call either pipeline with the same arguments. Any other name is a
                ``TypeError``.
        """
        # 1. Check inputs
        _ignore_diffusion_arguments(diffusion_kwargs)
        source = as_frame_source(video)
        self.check_inputs(upscale, output_type, chunk_size, start_frame, state, source.height, source.width,
                          scene_cut_threshold)
        chunk_size, start_frame = int(chunk_size), int(start_frame)  # NumPy's integers too
        one_generator(generator)  # not used, but refused where StarVSRPipeline refuses it
        if start_frame > source.num_frames:
            raise InputError(f"start_frame {start_frame} is past the end of the video "
                             f"({count_of(source.num_frames, 'frame')})")
        for name, hook in (("frame_sink", frame_sink), ("state_sink", state_sink)):
            if hook is not None and not callable(hook):  # else a TypeError once the first chunk is done
                raise InputError(f"{name} must be a callable, got {hook!r}")
        device = self._execution_device
        self._check_device_dtype(device)
        dtype = self.student.dtype
        upscale = float(self.student.config.scale if upscale is None else upscale)  # None: the student's own

        # 2. The step function and the initial state
        graph = CudaGraphStep(self.student, source.height, source.width, upscale) if use_cuda_graph else None
        step = self._compiled_step or self.student.step_tensors
        if state is None:
            tensors = self.student.init_state(1, source.height, source.width, device=device, dtype=dtype).tensors()
        else:
            tensors = tuple(t.to(device=device, dtype=dtype) for t in state.tensors())
        if graph is not None:
            for buffer, tensor in zip(graph.state.tensors(), tensors):
                buffer.copy_(tensor)
            tensors = graph.state.tensors()  # the graph's buffers, updated in place by each replay

        # 3. Stream: read a chunk, step through its frames, hand it on
        collected, done = [], start_frame
        previous, take_previous = None, start_frame > 0  # the LR frame before the chunk, for the scene-cut test
        last = None if state is None or start_frame else state.last_lr_frame  # a stream fed in pieces
        if last is not None and tuple(last.shape[-2:]) == (source.height, source.width):  # (not another video's)
            previous = last.to(device=device, dtype=torch.float32)
        with self.progress_bar(total=source.num_frames) as progress:
            progress.n = progress.last_print_n = start_frame  # tqdm's `initial`: no burst in the rate
            # resuming, the frame before `start_frame` is decoded too: the scene-cut test of the first frame needs it
            for lr in skip_frames(source.iter_chunks(chunk_size), max(start_frame - 1, 0)):  # (k, 3, h, w), host
                # float32 until the scene-cut test has seen them (in bfloat16, frames just under its threshold
                # were cut: black-box hunt)
                lr = lr.to(device=device, dtype=torch.float32)
                if take_previous:
                    previous, lr, take_previous = lr[:1], lr[1:], False
                    seen = None if state is None else state.last_lr_frame
                    # (in the state's precision: one saved before its frame was kept in float32 has it rounded)
                    seen = None if seen is None else seen.to(previous.device)
                    if seen is not None and float((previous.to(seen.dtype) - seen).float().abs().max()) > \
                            RESUME_FRAME_TOLERANCE:
                        raise InputError(f"the state does not go with start_frame={start_frame}: the last frame it "
                                         f"saw is not frame {start_frame - 1} of this video; pass the frame count "
                                         f"state_sink gave with it")
                    if not len(lr):
                        continue
                cuts = [False] * len(lr) if scene_cut_threshold is None else scene_cuts(lr, previous,
                                                                                         scene_cut_threshold)
                previous, lr = lr[-1:].clone(), lr.to(dtype)  # (the state keeps the float32 frame; a copy: not
                # the whole float32 chunk held by a view)
                frames = []
                for i in range(lr.shape[0]):
                    if cuts[i]:  # a new scene: the state before its first frame is that of a new video
                        if graph is not None:
                            for buffer in tensors:
                                buffer.zero_()
                        else:
                            tensors = self.student.init_state(1, source.height, source.width, device=device,
                                                              dtype=dtype).tensors()
                    if graph is not None:
                        sr = graph(lr[i:i + 1])
                    else:
                        sr, *tensors = step(lr[i:i + 1], *tensors, upscale)
                    frames.append(sr.clamp_(0, 1))  # (1, 3, H, W)
                chunk = torch.cat(frames).float().cpu()  # (k, 3, H, W)
                if frame_sink is not None:
                    frame_sink(chunk)
                else:
                    collected.append(chunk)
                done += lr.shape[0]
                if state_sink is not None:
                    kept = tensors if graph is None else tuple(t.clone() for t in tensors)
                    state_sink(done, StarStudentState(*kept, last_lr_frame=previous))  # (a copy already, above)
                progress.update(lr.shape[0])

        # 4. Output
        if not collected:  # resumed from a state taken after the last frame: nothing left
            collected.append(torch.empty(0, 3, *self.output_size(source.height, source.width, upscale)))
        frames_out = frames_to_output(collected, output_type) if frame_sink is None else None
        if not return_dict:
            return (frames_out,)
        return StarStudentPipelineOutput(frames=frames_out)

    def output_size(self, height: int, width: int, upscale: Optional[float] = None) -> tuple[int, int]:
        """Size (H, W) of the frames this pipeline makes from ``height`` x ``width`` LR frames (``upscale`` as in
        ``__call__``; None: the student's own scale, ``check_scale``: a scale it cannot make is an ``InputError``)."""
        return output_size(height, width, self.student.check_scale(upscale))

