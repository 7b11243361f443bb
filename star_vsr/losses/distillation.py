"""Losses that distil a video SR teacher into a small student.

Terms (each switched on by a positive weight in :class:`DistillationLossConfig`):

- **Charbonnier** to the teacher's output and, optionally, to the ground truth
  (Lai et al. 2017): ``mean(sqrt((x - y)^2 + eps^2))``.
- **Log-MSE** to the ground truth (:func:`log_mse_loss`, the loss the shipped student was trained
  with): the mean over frames of ``log10(MSE_t)``, i.e. minus a tenth of the mean per-frame PSNR.
- **Space distillation** (Xiao et al., "Space-Time Distillation for Video Super-Resolution",
  CVPR 2021, Eq. 4-5): per-pixel attention maps ``M = sum_c |F_c|^2`` of the teacher's and the
  student's HR features, each normalised per frame, compared with L2. Channel counts may
  differ; spatial sizes must match.
- **Time distillation** (same paper, Eq. 6-7): the attention-map sequences of teacher and
  student run through one shared :class:`~star_vsr.distill.convlstm.ConvLSTM`; L2 between its
  final memory cells. The ConvLSTM trains with the student and freezes for good once the loss
  falls below ``freeze_threshold`` (1e-8 in the paper).
- **Feature L1** (layer-wise feature distillation as in DSCVSR, KSEM 2024): L1 between teacher
  features and student features mapped to the teacher's width by a 1x1 convolution where the
  widths differ.
- **Perceptual** (Johnson et al. 2016): L1 between VGG-19 features of output and target, with
  weights from a local torchvision VGG-19 file (never downloaded).

Clips are (b, n, 3, H, W) float tensors in [0, 1]; features are dicts of (b, n, c, h, w).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from ..distill.convlstm import ConvLSTM
from ..errors import InputError, MissingWeightsError, check_whole_number, is_damaged_weights_error, load_failure

CHARBONNIER_EPS = 1e-3
"""Charbonnier's epsilon: below ~1e-3 (a quarter of an 8-bit level) errors count quadratically."""

TIME_FREEZE_THRESHOLD = 1e-8
"""Time-distillation loss below which the shared ConvLSTM is frozen (Xiao et al. 2021, Sec. 3.3)."""

ATTENTION_EPS = 1e-12
"""Keeps the attention-map normalisation finite on all-zero features."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Input normalisation of torchvision's ImageNet-trained VGG-19."""

VGG19_LAYERS: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3, "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
}
"""Index in ``torchvision.models.vgg19().features`` of each named ReLU output."""

DEFAULT_VGG_LAYERS = ("relu2_2", "relu3_4", "relu4_4")
"""Mid-level VGG-19 layers compared by the perceptual loss by default."""


# --------------------------------------------------------------------------- pixel terms


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """Charbonnier (smooth L1) loss ``mean(sqrt((pred - target)^2 + eps^2))``; same-shaped inputs."""
    if pred.shape != target.shape:
        raise InputError(f"charbonnier_loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.sqrt((pred - target.to(pred.dtype)) ** 2 + eps * eps).mean()


#: Added to each frame's mean squared error before its logarithm (a perfect frame would give log 0).
LOG_MSE_FLOOR = 1e-10


def log_mse_loss(pred: torch.Tensor, target: torch.Tensor, floor: float = LOG_MSE_FLOOR) -> torch.Tensor:
    """Mean over frames of ``log10(MSE_t)``, each frame's mean squared error over its channels and pixels.

    With values in [0, 1], ``PSNR_t = -10 log10(MSE_t)``, so this is minus a tenth of the mean per-frame PSNR
    (on RGB), the average an evaluation reports. Its gradient weights each frame by ``1 / MSE_t``: a clean
    frame's small errors count as much, in dB, as a noisy frame's large ones, where a Charbonnier (or L2)
    loss is ruled by the frames with the largest errors. ``pred`` and ``target``: same shape (..., c, H, W).
    """
    if pred.shape != target.shape:
        raise InputError(f"log_mse_loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    per_frame = ((pred.float() - target.float()) ** 2).flatten(start_dim=-3).mean(dim=-1)  # (...)
    return torch.log10(per_frame + floor).mean()


# --------------------------------------------------------------------------- space distillation


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Spatial attention map ``M = sum_c |F_c|^2`` of each frame, normalised to unit RMS.

    Dividing by the map's root mean square (its L2 norm over ``sqrt(h w)``) removes the
    feature scale, which differs between networks, and keeps the loss independent of the frame
    size.

    Args:
        features: (..., c, h, w) features of one or more frames.

    The features are first divided by their largest magnitude in the frame, a constant to the gradient: ``M / rms``
    does not change with the features' scale, so its gradient is exact, and features of 1e-6 or 1e10 (``F^4``
    under- or overflowed float32) give the map of any other scale. ``ATTENTION_EPS`` is inside the square root:
    after it, the forward value of all-zero features was finite but ``sqrt``'s infinite slope at 0 made their
    gradient NaN, which ``clip_grad_norm_`` spread to every weight (a black frame to a fresh student: black-box
    hunt).

    Returns:
        (..., 1, h, w) maps with ``mean(M^2) = 1`` per frame (0, with a zero gradient, for all-zero features).
    """
    features = features.float()
    peak = features.detach().abs().amax(dim=(-3, -2, -1), keepdim=True)  # (..., 1, 1, 1)
    energy = (features / peak.clamp_min(torch.finfo(torch.float32).tiny)).pow(2).sum(dim=-3, keepdim=True)
    rms = energy.pow(2).mean(dim=(-2, -1), keepdim=True).add(ATTENTION_EPS ** 2).sqrt()  # (..., 1, 1, 1)
    return energy / rms  # (..., 1, h, w)


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.ndim != 5 or teacher.ndim != 5:
        raise InputError(f"{what}: features must be (b, n, c, h, w), got {tuple(student.shape)} (student) and "
                         f"{tuple(teacher.shape)} (teacher)")
    if student.shape[:2] != teacher.shape[:2] or student.shape[-2:] != teacher.shape[-2:]:
        raise InputError(f"{what}: student features {tuple(student.shape)} and teacher features "
                         f"{tuple(teacher.shape)} must agree in batch, frames, height and width")


def space_distillation_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """L2 (mean squared difference) between normalised attention maps of student and teacher.

    Args:
        student_features: (b, n, c_s, h, w).
        teacher_features: (b, n, c_t, h, w); c_t may differ from c_s.
    """
    _check_pair(student_features, teacher_features, "space distillation")
    return F.mse_loss(attention_map(student_features), attention_map(teacher_features.detach()))


# --------------------------------------------------------------------------- time distillation


class TimeDistillationLoss(nn.Module):
    """L2 between the final ConvLSTM memory cells of the student's and the teacher's attention maps.

    One ConvLSTM is shared by both branches and trained with the student (put this module's
    parameters in the optimizer). Call :meth:`observe` with each step's loss value: once it is
    below ``freeze_threshold`` the ConvLSTM stops learning for good. The ``frozen`` flag is a
    buffer, so it survives checkpoints. A small value can mean that the ConvLSTM collapsed (it is
    trained on the same L2 and can make it small by itself), not that the student matches the
    teacher in time: see ``star_vsr.distill.convlstm``.

    Parameters:
        hidden_channels: channels of the ConvLSTM state.
        kernel_size: ConvLSTM kernel side.
        freeze_threshold: loss value under which the ConvLSTM freezes.
    """

    def __init__(self, hidden_channels: int = 8, kernel_size: int = 3,
                 freeze_threshold: float = TIME_FREEZE_THRESHOLD) -> None:
        super().__init__()
        self.convlstm = ConvLSTM(in_channels=1, hidden_channels=hidden_channels, kernel_size=kernel_size)
        self.freeze_threshold = freeze_threshold
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))

    @property
    def is_frozen(self) -> bool:
        """Whether the shared ConvLSTM stopped learning (its loss fell below ``freeze_threshold``)."""
        return bool(self.frozen)

    def freeze(self) -> None:
        """Stop training the ConvLSTM (its parameters no longer receive gradients)."""
        self.frozen.fill_(True)
        self.convlstm.requires_grad_(False)

    def observe(self, loss_value: float) -> bool:
        """Apply the freeze rule to one step's (process-averaged) loss; returns whether frozen now."""
        if not self.is_frozen and loss_value < self.freeze_threshold:
            self.freeze()
        return self.is_frozen

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        """Args: student (b, n, c_s, h, w) and teacher (b, n, c_t, h, w) features. Returns a scalar."""
        _check_pair(student_features, teacher_features, "time distillation")
        if self.is_frozen and any(p.requires_grad for p in self.convlstm.parameters()):
            self.convlstm.requires_grad_(False)  # a frozen state loaded from a checkpoint
        _, cell_student = self.convlstm(attention_map(student_features))  # (b, c_hidden, h, w)
        _, cell_teacher = self.convlstm(attention_map(teacher_features.detach()))
        return F.mse_loss(cell_student, cell_teacher)


# --------------------------------------------------------------------------- feature L1


class FeatureDistillationLoss(nn.Module):
    """Mean over feature taps of ``L1(adapter(F_student), F_teacher)``.

    A tap whose student and teacher widths differ gets a trainable 1x1 convolution from the
    student's width to the teacher's (applied frame by frame); equal widths are compared directly.

    Parameters:
        student_channels: width of each compared student tap, e.g. ``{"hr_features": 16}``.
        teacher_channels: width of the same taps in the teacher.
    """

    def __init__(self, student_channels: Mapping[str, int], teacher_channels: Mapping[str, int]) -> None:
        super().__init__()
        missing = sorted(set(student_channels) ^ set(teacher_channels))
        if missing:
            raise InputError(f"feature distillation needs the same taps in student and teacher; "
                             f"only one side has {missing}")
        self.names = tuple(sorted(student_channels))
        self.student_channels, self.teacher_channels = dict(student_channels), dict(teacher_channels)
        self.adapters = nn.ModuleDict({
            name: nn.Conv2d(student_channels[name], teacher_channels[name], kernel_size=1)
            for name in self.names if student_channels[name] != teacher_channels[name]
        })

    def forward(self, student_features: Mapping[str, torch.Tensor],
                teacher_features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        losses = []
        for name in self.names:
            for side, features in (("student", student_features), ("teacher", teacher_features)):
                if name not in features:  # was a bare KeyError
                    raise InputError(f"feature distillation of {name!r}: the {side} features have no {name!r} tap "
                                     f"(they have {sorted(features)})")
            student, teacher = student_features[name], teacher_features[name].detach()
            _check_pair(student, teacher, f"feature distillation of {name!r}")
            for side, tensor, width in (("student", student, self.student_channels[name]),
                                        ("teacher", teacher, self.teacher_channels[name])):
                if tensor.shape[2] != width:  # was the 1x1 convolution's error
                    raise InputError(f"feature distillation of {name!r}: {side} features have {tensor.shape[2]} "
                                     f"channels, this loss was built for {width}")
            if name in self.adapters:
                b, n = student.shape[:2]
                adapter = self.adapters[name]
                flat = student.flatten(0, 1).to(adapter.weight.dtype)  # (bf16 features outside autocast: the conv's
                # "Input type and bias type should be the same")
                student = adapter(flat).unflatten(0, (b, n))  # (b, n, c_t, h, w)
            losses.append(F.l1_loss(student, teacher.to(student.dtype)))
        return torch.stack(losses).mean()


# --------------------------------------------------------------------------- perceptual


class VGGPerceptualLoss(nn.Module):
    """L1 between VGG-19 features of prediction and target, summed over the layers, from a LOCAL weights file.

    The file is a torchvision VGG-19 state dict (``vgg19-dcbb9e9d.pth`` as torchvision saves it,
    or any file with its ``features.<i>.weight/bias`` keys, .pth or .safetensors). Only the
    convolutions up to the deepest requested layer are built. Nothing is downloaded: a missing
    file raises :class:`MissingWeightsError`.

    Parameters:
        weights_path: path of the weights file.
        layers: names from :data:`VGG19_LAYERS`.
    """

    def __init__(self, weights_path: Union[str, Path], layers: Sequence[str] = DEFAULT_VGG_LAYERS) -> None:
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if not layers or unknown:
            raise InputError(f"VGG layers must be a non-empty list from {', '.join(VGG19_LAYERS)}; got {list(layers)}")
        self.layers = tuple(layers)
        depth = max(VGG19_LAYERS[name] for name in self.layers) + 1
        self.features = make_layers(cfgs["E"])[:depth]  # VGG-19 convolutions, ReLUs and pools
        self.halvings = sum(isinstance(layer, nn.MaxPool2d) for layer in self.features)  # (the frames' least side:
        # 2 ** halvings)
        self.features.load_state_dict(_load_vgg_features(weights_path, self.features))
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGPerceptualLoss":
        super().train(mode)
        self.features.eval()  # no dropout/batch-norm, but keep the frozen network in eval mode
        return self

    def _taps(self, frames: torch.Tensor) -> list[torch.Tensor]:
        x = (frames - self.mean) / self.std  # (k, 3, h, w)
        wanted = {VGG19_LAYERS[name]: name for name in self.layers}
        taps: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                taps[wanted[index]] = x
        return [taps[name] for name in self.layers]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: pred and target (..., 3, h, w) in [0, 1]. Returns the sum of per-layer L1 distances."""
        if pred.shape != target.shape or pred.shape[-3] != 3:
            raise InputError(f"perceptual loss needs equal (..., 3, h, w) shapes, got {tuple(pred.shape)} "
                             f"and {tuple(target.shape)}")
        halvings = self.halvings
        if min(pred.shape[-2:]) < 2 ** halvings:  # (a max-pool's RuntimeError: "Calculated output size: (256x0x0)")
            raise InputError(f"the perceptual loss's VGG layers {', '.join(self.layers)} halve the frames "
                             f"{halvings} time{'s' * (halvings != 1)}: they need frames of at least "
                             f"{2 ** halvings}x{2 ** halvings} pixels, got {pred.shape[-1]}x{pred.shape[-2]} (use "
                             f"larger crops, or shallower layers)")
        pred_taps = self._taps(pred.reshape(-1, *pred.shape[-3:]))
        with torch.no_grad():
            target_taps = self._taps(target.reshape(-1, *target.shape[-3:]).to(pred.dtype))
        return sum(F.l1_loss(p, t) for p, t in zip(pred_taps, target_taps, strict=True))


def _load_vgg_features(weights_path: Union[str, Path], features: nn.Sequential) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision VGG-19 file that ``features`` needs, keys without the prefix."""
    path = Path(weights_path)
    if not path.is_file():
        raise MissingWeightsError(
            f"VGG-19 weights not found at {path}. The perceptual loss never downloads; save torchvision's "
            "ImageNet VGG-19 state dict there (e.g. torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1')"
            ".state_dict(), PATH) on a machine with internet) or set the perceptual weight to 0.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load's own advice, weights_only=False, would run the file's code
        if not (isinstance(error, SafetensorError) or is_damaged_weights_error(error)):
            raise
        raise MissingWeightsError(f"{path} cannot be read as a VGG-19 state dict ({load_failure(error)[:200]}): it is "
                                  f"damaged or another file; save torchvision's ImageNet VGG-19 state dict there "
                                  f"again") from None
    if not isinstance(state, dict):
        raise MissingWeightsError(f"{path} holds a {type(state).__name__}, not a VGG-19 state dict")
    wanted = features.state_dict().keys()
    found = {key: state[f"features.{key}"] for key in wanted if f"features.{key}" in state}
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise MissingWeightsError(f"{path} is not a torchvision VGG-19 state dict: it lacks "
                                  f"{', '.join('features.' + k for k in missing[:4])}")
    return found


# --------------------------------------------------------------------------- all terms together


@dataclass
class DistillationLossConfig:
    """Weights and settings of every distillation term; a weight of 0 switches a term off.

    Parameters:
        teacher_charbonnier: weight of Charbonnier(student SR, teacher SR).
        gt_charbonnier: weight of Charbonnier(student SR, ground truth).
        gt_log_mse: weight of ``log_mse_loss``(student SR, ground truth): minus a tenth of the mean
            per-frame PSNR.
        space: weight of the attention-map space distillation loss.
        time: weight of the ConvLSTM time distillation loss.
        feature: weight of the feature L1 loss.
        perceptual: weight of the VGG-19 perceptual loss (to the ground truth when
            ``perceptual_target`` is "gt", else to the teacher).
        space_features / time_features / feature_names: feature taps each term compares.
        charbonnier_eps: Charbonnier epsilon.
        time_hidden_channels / time_kernel_size: the shared ConvLSTM's size.
        time_freeze_threshold: loss under which the ConvLSTM freezes.
        perceptual_weights_path: local torchvision VGG-19 weights file (needed when perceptual > 0).
        perceptual_layers: VGG-19 layer names.
        perceptual_target: "gt" or "teacher".
    """

    teacher_charbonnier: float = 1.0
    gt_charbonnier: float = 0.0
    gt_log_mse: float = 0.0
    space: float = 0.0
    time: float = 0.0
    feature: float = 0.0
    perceptual: float = 0.0
    space_features: tuple[str, ...] = ("hr_features",)
    time_features: tuple[str, ...] = ("hr_features",)
    feature_names: tuple[str, ...] = ("hr_features",)
    charbonnier_eps: float = CHARBONNIER_EPS
    time_hidden_channels: int = 8
    time_kernel_size: int = 3
    time_freeze_threshold: float = TIME_FREEZE_THRESHOLD
    perceptual_weights_path: Optional[str] = None
    perceptual_layers: tuple[str, ...] = DEFAULT_VGG_LAYERS
    perceptual_target: str = "gt"

    def __post_init__(self) -> None:
        for name in ("teacher_charbonnier", "gt_charbonnier", "gt_log_mse", "space", "time", "feature", "perceptual"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:  # (NumPy floats too)
                raise InputError(f"loss weight {name} must be a finite number >= 0, got {value!r}")
            setattr(self, name, float(value))
        for name, weight in (("space_features", self.space), ("time_features", self.time),
                             ("feature_names", self.feature), ("perceptual_layers", self.perceptual)):
            names = getattr(self, name)  # a string was split into one-letter tap names; None was a TypeError
            if isinstance(names, str) or not isinstance(names, (list, tuple)) \
                    or not all(isinstance(n, str) for n in names):
                example = f"[{names!r}]" if isinstance(names, str) else "['hr_features']"
                raise InputError(f"{name} must be a list of names, e.g. {example}, got {names!r}")
            if weight > 0 and not names:  # the term compared nothing
                raise InputError(f"{name} is empty, so its term (weight {weight:g}) would compare nothing")
            setattr(self, name, tuple(names))
        if self.perceptual_target not in ("gt", "teacher"):
            raise InputError(f"perceptual_target must be 'gt' or 'teacher', got {self.perceptual_target!r}")
        eps, threshold = self.charbonnier_eps, self.time_freeze_threshold
        # (a NaN eps made every loss NaN; 0 made the gradient NaN where prediction and target agree)
        if not (isinstance(eps, numbers.Real) and 0 < eps < math.inf):
            raise InputError(f"charbonnier_eps must be a finite number > 0, got {eps!r}")
        if not (isinstance(threshold, numbers.Real) and 0 <= threshold < math.inf):
            raise InputError(f"time_freeze_threshold must be a finite number >= 0, got {threshold!r}")
        for name in ("time_hidden_channels", "time_kernel_size"):  # (0 built a ConvLSTM of no width)
            check_whole_number(name, getattr(self, name), 1)
            setattr(self, name, int(getattr(self, name)))
        if self.total_weight == 0:
            raise InputError("every loss weight is 0; switch on at least one term")

    @property
    def total_weight(self) -> float:
        """Sum of the terms' weights (0: nothing to train on)."""
        return (self.teacher_charbonnier + self.gt_charbonnier + self.gt_log_mse + self.space + self.time
                + self.feature + self.perceptual)

    def terms_on(self, target: str) -> list[str]:
        """The weights (field names) of the switched-on terms that compare with ``target``: "teacher" (its output
        or features) or "gt" (the ground-truth clip); the perceptual term where ``perceptual_target`` says so."""
        names = ["teacher_charbonnier", "space", "time", "feature"] if target == "teacher" else \
            ["gt_charbonnier", "gt_log_mse"]
        names += ["perceptual"] if self.perceptual_target == target else []
        return [name for name in names if getattr(self, name) > 0]

    @property
    def needs_teacher(self) -> bool:
        """Whether any term needs the teacher's output or features."""
        return bool(self.terms_on("teacher"))

    @property
    def needs_gt(self) -> bool:
        """Whether any term needs the ground-truth clip."""
        return bool(self.terms_on("gt"))

    @property
    def teacher_feature_names(self) -> tuple[str, ...]:
        """Teacher feature taps the switched-on terms read."""
        names: list[str] = []
        for weight, taps in ((self.space, self.space_features), (self.time, self.time_features),
                             (self.feature, self.feature_names)):
            if weight > 0:
                names += [t for t in taps if t not in names]
        return tuple(names)


class DistillationCriterion(nn.Module):
    """All switched-on distillation terms and their trainable parts (ConvLSTM, 1x1 adapters, VGG).

    Put this module's trainable parameters in the optimizer with the student's. ``forward``
    returns the weighted total and the unweighted value of every active term.

    Parameters:
        config: weights and settings.
        student_channels: the student's feature widths (``StarStudentModel.feature_channels``).
        teacher_channels: the teacher's feature widths (from the teacher cache); needed when
            the feature term is on.
    """

    def __init__(self, config: DistillationLossConfig, student_channels: Mapping[str, int],
                 teacher_channels: Optional[Mapping[str, int]] = None) -> None:
        super().__init__()
        self.config = config
        for name in config.teacher_feature_names:
            if name not in student_channels:
                raise InputError(f"the student has no feature tap {name!r}; it has {sorted(student_channels)}")
            if teacher_channels is not None and name not in teacher_channels:
                raise InputError(f"the teacher features hold no {name!r}; they hold {sorted(teacher_channels)}")
        self.time_loss = TimeDistillationLoss(config.time_hidden_channels, config.time_kernel_size,
                                              config.time_freeze_threshold) if config.time > 0 else None
        self.feature_loss: Optional[FeatureDistillationLoss] = None
        if config.feature > 0:
            if teacher_channels is None:
                raise InputError("the feature loss needs the teacher's feature widths (teacher_channels)")
            self.feature_loss = FeatureDistillationLoss({n: student_channels[n] for n in config.feature_names},
                                                        {n: teacher_channels[n] for n in config.feature_names})
        self.perceptual_loss: Optional[VGGPerceptualLoss] = None
        if config.perceptual > 0:
            if config.perceptual_weights_path is None:
                raise MissingWeightsError("the perceptual loss is on but perceptual_weights_path is not set; give a "
                                          "local torchvision VGG-19 weights file or set its weight to 0")
            self.perceptual_loss = VGGPerceptualLoss(config.perceptual_weights_path, config.perceptual_layers)

    def forward(self, student_sr: torch.Tensor, student_features: Optional[Mapping[str, torch.Tensor]] = None,
                teacher_sr: Optional[torch.Tensor] = None,
                teacher_features: Optional[Mapping[str, torch.Tensor]] = None,
                gt: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total loss and ``{term: unweighted value}`` of the active terms.

        Args:
            student_sr: (b, n, 3, H, W) student output.
            student_features: the student's feature taps (b, n, c, h, w) (needed by space/time/feature).
            teacher_sr: (b, n, 3, H, W) teacher output (needed by the teacher terms).
            teacher_features: the teacher's taps (needed by space/time/feature).
            gt: (b, n, 3, H, W) ground truth (needed by the ground-truth terms).
        """
        c = self.config
        teacher_output_needed = c.teacher_charbonnier > 0 or (c.perceptual > 0 and c.perceptual_target == "teacher")
        if teacher_sr is None and teacher_output_needed:
            raise InputError("these loss weights need the teacher's output; give teacher_sr (a teacher cache)")
        if c.needs_gt and gt is None:
            raise InputError("these loss weights need the ground truth; give gt (clips with ground truth)")
        names = c.teacher_feature_names
        if names and (student_features is None or teacher_features is None):
            raise InputError(f"space/time/feature distillation need student and teacher features {list(names)}; "
                             "cache the teacher with its features")
        for side, features in (("student", student_features), ("teacher", teacher_features)):
            missing = [name for name in names if name not in (features or {})]  # (was a bare KeyError)
            if missing:
                raise InputError(f"space/time/feature distillation need the feature taps {list(names)}; the {side} "
                                 f"features have no {', '.join(map(repr, missing))} (they have {sorted(features)})")
        terms: dict[str, torch.Tensor] = {}
        if c.teacher_charbonnier > 0:
            terms["teacher_charbonnier"] = charbonnier_loss(student_sr, teacher_sr, c.charbonnier_eps)
        if c.gt_charbonnier > 0:
            terms["gt_charbonnier"] = charbonnier_loss(student_sr, gt, c.charbonnier_eps)
        if c.gt_log_mse > 0:
            terms["gt_log_mse"] = log_mse_loss(student_sr, gt)
        if c.space > 0:
            terms["space"] = torch.stack([space_distillation_loss(student_features[n], teacher_features[n])
                                          for n in c.space_features]).mean()
        if self.time_loss is not None:
            terms["time"] = torch.stack([self.time_loss(student_features[n], teacher_features[n])
                                         for n in c.time_features]).mean()
        if self.feature_loss is not None:
            terms["feature"] = self.feature_loss(student_features, teacher_features)
        if self.perceptual_loss is not None:
            target = gt if c.perceptual_target == "gt" else teacher_sr
            terms["perceptual"] = self.perceptual_loss(student_sr, target)
        weights = {"teacher_charbonnier": c.teacher_charbonnier, "gt_charbonnier": c.gt_charbonnier,
                   "gt_log_mse": c.gt_log_mse, "space": c.space, "time": c.time, "feature": c.feature,
                   "perceptual": c.perceptual}
        total = sum(weights[name] * value for name, value in terms.items())
        return total, terms
