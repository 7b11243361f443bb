"""Teachers for distillation: one interface over a diffusion pipeline, a student, or any callable.

A :class:`Teacher` maps one LR clip (n, 3, h, w) float in [0, 1] to a :class:`TeacherOutput`:
the HR clip (n, 3, H, W) in [0, 1] and, when the teacher exposes them, named per-frame features
(n, c, h_f, w_f) for the space / time / feature distillation terms. Outputs are float32 on the
CPU, ready for the teacher cache.

:func:`load_teacher` accepts

- a folder saved by ``StarVSRPipeline.save_pretrained`` (the STAR diffusion teacher; one feature tap,
  ``hr_features``: its VAE decoder's last up-block output),
- a folder saved by ``StarStudentPipeline.save_pretrained`` (e.g. a large student distilled into a
  smaller one; its feature taps are available),
- a loaded pipeline or ``StarStudentModel``,
- any callable ``f(lq (n, 3, h, w)) -> sr (n, 3, H, W)`` or ``-> (sr, {name: (n, c, h_f, w_f)})``.
"""

from __future__ import annotations

import hashlib
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from ..errors import InputError

DEFAULT_TEACHER_STEPS = 15
"""Denoising steps of a diffusion teacher (STAR's default)."""


@dataclass
class TeacherOutput:
    """What a teacher produced for one clip.

    Attributes:
        sr: (n, 3, H, W) float32 HR clip in [0, 1], on the CPU.
        features: feature taps by name, each (n, c, h_f, w_f) float32 on the CPU (may be empty).
    """

    sr: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


class Teacher(ABC):
    """A video SR model that the student learns from.

    Attributes:
        scale: integer HR / LR size ratio of the outputs.
        feature_names: feature taps this teacher returns (empty when it returns none).
    """

    scale: int
    feature_names: tuple[str, ...] = ()

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description (kind, source, settings), recorded in the cache manifest."""

    @abstractmethod
    def __call__(self, lq: torch.Tensor, *, index: int = 0, caption: Optional[str] = None) -> TeacherOutput:
        """Upscale one clip.

        Args:
            lq: (n, 3, h, w) float LR clip in [0, 1].
            index: the clip's index in its data set; stochastic teachers seed with it so that
                every clip's output is reproducible whatever order the clips run in.
            caption: text describing the clip, for teachers that take a prompt.
        """

    def _finish(self, lq: torch.Tensor, sr: torch.Tensor, features: Mapping[str, torch.Tensor]) -> TeacherOutput:
        """Check shapes and move everything to float32 CPU tensors."""
        n, _, h, w = lq.shape
        expected = (n, 3, h * self.scale, w * self.scale)
        if tuple(sr.shape) != expected:
            raise InputError(f"{type(self).__name__} returned a clip of shape {tuple(sr.shape)} for an input of "
                             f"{tuple(lq.shape)}; expected {expected} (scale {self.scale})")
        cpu = {name: value.detach().float().cpu() for name, value in features.items()}
        for name, value in cpu.items():
            if value.ndim != 4 or value.shape[0] != n or 0 in value.shape:  # (an empty one: the whole cache
                # built, then its shards refused as out of layout)
                raise InputError(f"teacher feature {name!r} must be (n, c, h, w) with n = {n} and no side 0, "
                                 f"got {tuple(value.shape)}")
        return TeacherOutput(sr.detach().float().clamp(0, 1).cpu(), cpu)


class CallableTeacher(Teacher):
    """Any function ``lq (n, 3, h, w) -> sr`` or ``-> (sr, {name: (n, c, h_f, w_f)})`` as a teacher.

    Parameters:
        fn: the function (a ``torch.nn.Module`` is run under ``torch.no_grad``).
        scale: its upscaling factor.
        name: how the manifest names it, and so which cache it may resume: the same name is the same teacher
            (default: the function's qualified name, with a fingerprint of what it computes,
            ``_callable_fingerprint``: another lambda is another teacher).
        device: device the input is moved to before the call.
    """

    def __init__(self, fn: Callable[[torch.Tensor], Any], scale: int = 4, name: Optional[str] = None,
                 device: Union[str, torch.device] = "cpu") -> None:
        if not callable(fn):
            raise InputError(f"a teacher must be callable, got {type(fn).__name__}")
        self.fn, self.scale, self.device = fn, int(scale), torch.device(device)
        self.name, self.named = name or getattr(fn, "__qualname__", type(fn).__qualname__), name is not None

    def describe(self) -> dict[str, Any]:
        # unnamed, a fingerprint of what it computes, taken now (weights loaded after it was built count): two
        # lambdas were one teacher ("<lambda>"), and a cache went on with the other
        return {"kind": "callable", "name": self.name, "scale": self.scale,
                **({} if self.named else {"code": _callable_fingerprint(self.fn)})}

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, *, index: int = 0, caption: Optional[str] = None) -> TeacherOutput:
        result = self.fn(lq.to(self.device))
        if isinstance(result, tuple) and len(result) != 2:  # ("too many values to unpack")
            raise InputError(f"a callable teacher returns sr or (sr, dict of features); got a tuple of {len(result)}")
        sr, features = result if isinstance(result, tuple) else (result, {})
        if not isinstance(sr, torch.Tensor):  # ("'numpy.ndarray' object has no attribute 'detach'")
            raise InputError(f"a callable teacher returns sr as a torch.Tensor (n, 3, H, W); got {type(sr).__name__}")
        if not isinstance(features, Mapping):
            raise InputError(f"a callable teacher returns sr or (sr, dict of features); got {type(features).__name__}")
        self.feature_names = tuple(features)
        return self._finish(lq, sr, features)


def _callable_fingerprint(fn: Any, depth: int = 0) -> str:
    """A hash of what the teacher function ``fn`` computes, the same in every process: a module's class and weights
    (``weights_fingerprint``; a bound method's module's too), a function's code (bytecode, constants, names; nested
    functions' too), its default arguments and the values it closes over (so fingerprinted), a tensor's values; a
    plain value by its ``repr`` (sets sorted: their order changes with Python's string hashing), else its type's
    name (a ``repr`` with a memory address changes every run). Not the globals it reads: a teacher that loads its
    model from a global is told apart by ``name=``. ``depth``: of nesting (a function that closes over itself
    stops there)."""
    from ..fingerprints import tensor_digest, weights_fingerprint

    if depth > 4:
        return type(fn).__qualname__
    if isinstance(fn, torch.nn.Module):
        return f"{type(fn).__qualname__}:{weights_fingerprint([fn])}"
    if isinstance(fn, torch.Tensor):
        return tensor_digest(fn)
    if isinstance(fn, (set, frozenset)):
        return "{" + ",".join(sorted(_callable_fingerprint(v, depth + 1) for v in fn)) + "}"
    if isinstance(fn, (tuple, list)):
        return "(" + ",".join(_callable_fingerprint(v, depth + 1) for v in fn) + ")"
    if isinstance(fn, dict):
        return "{" + ",".join(sorted(f"{_callable_fingerprint(k, depth + 1)}:{_callable_fingerprint(v, depth + 1)}"
                                     for k, v in fn.items())) + "}"
    if isinstance(fn, types.CodeType):
        return hashlib.sha256(fn.co_code + repr(fn.co_names).encode() + ",".join(
            _callable_fingerprint(c, depth + 1) for c in fn.co_consts).encode()).hexdigest()[:16]
    function = getattr(fn, "__func__", fn)  # a bound method: its function, and what it is bound to
    code = getattr(function, "__code__", None)
    if isinstance(code, types.CodeType):
        cells = [cell.cell_contents for cell in getattr(function, "__closure__", None) or ()]
        parts = [code, getattr(function, "__defaults__", None), getattr(function, "__kwdefaults__", None), cells,
                 getattr(fn, "__self__", None)]
        return hashlib.sha256(",".join(_callable_fingerprint(p, depth + 1) for p in parts).encode()).hexdigest()[:16]
    text = repr(fn)
    return type(fn).__qualname__ if " at 0x" in text else text


class StudentTeacher(Teacher):
    """A (usually larger) ``StarStudentModel`` as the teacher, with its feature taps.

    Parameters:
        model: the student network.
        scale: output scale (default: the model's own).
        features: names of the feature taps to return (from ``model.feature_channels``).
        source: where the model came from (for the manifest).
    """

    def __init__(self, model: torch.nn.Module, scale: Optional[int] = None, features: Sequence[str] = (),
                 source: Optional[str] = None) -> None:
        available = dict(getattr(model, "feature_channels", {}))
        unknown = [name for name in features if name not in available]
        if unknown:
            raise InputError(f"the student teacher has no feature taps {unknown}; it has {sorted(available)}")
        self.model = model.eval()
        self.scale = int(scale if scale is not None else model.config.scale)
        if hasattr(model, "check_scale"):  # here, not at the first clip (after the progress bar started)
            model.check_scale(self.scale)
        self.feature_names = tuple(dict.fromkeys(features))  # a tap named twice is returned (and cached) once
        self.source = source

    def describe(self) -> dict[str, Any]:
        from ..fingerprints import cast_weights_fingerprints, weights_fingerprint

        return {"kind": "student", "source": self.source, "scale": self.scale,
                "config": {k: v for k, v in dict(self.model.config).items() if not k.startswith("_")},
                "features": list(self.feature_names), "weights": weights_fingerprint([self.model]),
                "weights_as": cast_weights_fingerprints([self.model]),
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch.")}

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, *, index: int = 0, caption: Optional[str] = None) -> TeacherOutput:
        parameter = next(self.model.parameters())
        output = self.model(lq[None].to(parameter.device, parameter.dtype), scale=self.scale,
                            return_features=bool(self.feature_names))
        features = {name: output.features[name][0] for name in self.feature_names}  # (n, c, h_f, w_f)
        return self._finish(lq, output.sample[0], features)


#: Feature taps of the diffusion teacher, by name.
DIFFUSION_FEATURES = {
    "hr_features": "the VAE decoder's last up-block output (n, c, H, W) at the output resolution, before its "
                   "output conv (c = 128 for Stable Video Diffusion's VAE: about 33 MB per 5-frame 160x160 clip in "
                   "the cache's default float16, 65 MB in float32)",
}


#: ``DiffusionTeacher``'s ``"kind"`` in a cache's manifest: the one teacher whose outputs depend on the clips' captions
#: (its prompt).
DIFFUSION_TEACHER_KIND = "star_vsr"


class DiffusionTeacher(Teacher):
    """A ``StarVSRPipeline`` as the teacher (slow: run it once into a cache).

    Its feature tap ``hr_features`` (:data:`DIFFUSION_FEATURES`) is read with a forward hook on the
    VAE decoder's last up block: the pipeline blends overlapping windows in latent space and
    decodes every frame once, in order, so the hooked outputs are the clip's frames in order.

    Each clip is denoised with a generator seeded by ``seed + index``, so a clip's output does not
    depend on which clips ran before it (an interrupted cache resumes with identical results).

    Parameters:
        pipe: the pipeline.
        scale: upscaling factor.
        num_inference_steps: denoising steps.
        seed: base seed.
        source: where the pipeline came from (for the manifest).
        call_kwargs: further ``pipe(...)`` arguments (guidance_scale, noise_level, tile_size, ...).
        features: feature taps to return (names from :data:`DIFFUSION_FEATURES`).
    """

    def __init__(self, pipe: Any, scale: int = 4, num_inference_steps: int = DEFAULT_TEACHER_STEPS, seed: int = 0,
                 source: Optional[str] = None, features: Sequence[str] = (), **call_kwargs: Any) -> None:
        unknown = sorted(set(features) - set(DIFFUSION_FEATURES))
        if unknown:
            raise InputError(f"the StarVSR diffusion teacher has no feature taps {unknown}; it has "
                             f"{sorted(DIFFUSION_FEATURES)}")
        from star_vsr.pipelines.pipeline_star_vsr import check_sampling_kwargs

        check_sampling_kwargs({**call_kwargs, "upscale": scale, "num_inference_steps": num_inference_steps})
        self.pipe, self.scale, self.num_inference_steps, self.seed = pipe, int(scale), num_inference_steps, seed
        self.source, self.call_kwargs = source, call_kwargs
        self.feature_names = tuple(dict.fromkeys(features))  # a tap named twice is returned (and cached) once
        pipe.set_progress_bar_config(disable=True)

    def describe(self) -> dict[str, Any]:
        from ..fingerprints import FINGERPRINT_SAMPLES, cast_weights_fingerprints, diffusion_models, \
            diffusion_weights_fingerprint

        # its weights and precision: a cache resumed after either changed would mix two teachers
        return {"kind": DIFFUSION_TEACHER_KIND, "source": self.source, "scale": self.scale,
                "features": list(self.feature_names),
                "num_inference_steps": self.num_inference_steps, "seed": self.seed,
                "call_kwargs": {k: v for k, v in self.call_kwargs.items() if isinstance(v, (int, float, str, bool))},
                "weights": diffusion_weights_fingerprint(self.pipe),
                "weights_as": cast_weights_fingerprints(diffusion_models(self.pipe), FINGERPRINT_SAMPLES),
                "dtype": str(self.pipe.unet.dtype).removeprefix("torch.")}

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, *, index: int = 0, caption: Optional[str] = None) -> TeacherOutput:
        kwargs = dict(self.call_kwargs)
        if caption:
            kwargs["prompt"] = caption
        generator = torch.Generator().manual_seed(self.seed + index)
        decoded: list[torch.Tensor] = []  # the last up block's output of each decode call, (k, c, H_canvas, W_canvas)
        hook = None
        if self.feature_names:
            hook = self.pipe.vae.decoder.up_blocks[-1].register_forward_hook(
                lambda module, args, output: decoded.append(output.detach().float().cpu()))
        try:
            frames = self.pipe(lq, upscale=self.scale, num_inference_steps=self.num_inference_steps,
                               generator=generator, output_type="pt", **kwargs).frames  # (1, n, 3, H, W)
        finally:
            if hook is not None:
                hook.remove()
        height, width = frames.shape[-2:]
        features = {"hr_features": torch.cat(decoded)[..., :height, :width]} if self.feature_names else {}
        return self._finish(lq, frames[0], features)


def load_teacher(source: Any, *, scale: int = 4, features: Sequence[str] = (), device: str = "auto",
                 dtype: str = "auto", num_inference_steps: int = DEFAULT_TEACHER_STEPS, seed: int = 0,
                 **pipeline_kwargs: Any) -> Teacher:
    """Wrap ``source`` as a :class:`Teacher`.

    Args:
        source: a model folder (StarVSR or student pipeline), a loaded pipeline, a
            ``StarStudentModel``, a :class:`Teacher`, or a callable video-to-video function.
        scale: upscaling factor of the teacher's outputs (a student teacher runs its head of that scale).
        features: feature taps to return (student and diffusion teachers).
        device, dtype: where and in what precision a folder is loaded ("auto": float16 on CUDA, float32 on
            the CPU even for a student, as its outputs are training targets; ``star_vsr.upscale.resolve_dtype``).
        num_inference_steps, seed, pipeline_kwargs: diffusion teacher settings.

    Raises:
        InputError: features asked of a teacher that has none, or an unusable source.
        MissingWeightsError: a folder that holds no star-vsr model.
    """
    if isinstance(source, Teacher):
        return source
    name = str(source) if isinstance(source, (str, Path)) else None
    if isinstance(source, (str, Path)):
        from star_vsr.pipelines.pipeline_star_student import missing_student_help

        from ..errors import option
        from ..model_folder import check_pipeline_folder
        from ..upscale import load_upscaler, resolve_device

        teacher_help = (f"{option('The teacher', '--teacher')} is a StarVSR pipeline folder (`star-vsr convert-star` "
                        f"makes one from STAR's released weights) or a student pipeline folder (the output folder of "
                        f"training/distill_student.py).")
        check_pipeline_folder(Path(source), "teacher (StarVSR or student)",  # before load_upscaler's upscale help
                              missing_student_help(Path(source), teacher_help))

        if dtype == "auto" and resolve_device(device).type == "cpu":
            dtype = "fp32"  # training targets: not the bfloat16 that upscaling picks on CPUs with AMX
        source = load_upscaler(source, device=device, dtype=dtype)
    kind = type(source).__name__
    if kind == "StarVSRPipeline":
        return DiffusionTeacher(source, scale=scale, num_inference_steps=num_inference_steps, seed=seed,
                                source=name, features=features, **pipeline_kwargs)
    if kind == "StarStudentPipeline":
        source = source.student
        kind = type(source).__name__
    if kind == "StarStudentModel":
        return StudentTeacher(source, scale=scale, features=features, source=name)
    if callable(source):
        if features:
            raise InputError("feature taps can only be chosen for student and StarVSR teachers; a callable teacher "
                             "returns whatever features it returns")
        return CallableTeacher(source, scale=scale)
    raise InputError(f"cannot use a {kind} as a teacher: give a model folder, a pipeline or a callable")
