"""StarStudentModel: a compact online recurrent network for real-world video super-resolution.

The student that STAR is distilled into. It is *online*: output frame t depends only on LR frames
0..t, so a video of any length streams through it frame by frame with a fixed-size state
(``StarStudentState``), in the spirit of RLSP / RRN / unidirectional BasicVSR. One step:

1. Cleaning front end: the LR frame is pixel-unshuffled by 2 and a few residual blocks at half
   resolution (a large receptive field for denoising, deblurring and deblocking at a quarter of
   the cost) predict a cleaned LR frame (a residual on the input) and clean features.
2. Alignment: dense optical flow from the cleaned frame to the previous filtered frame by
   pyramidal Lucas-Kanade (``lucas_kanade_flow``, no parameters), backward warping of the whole
   state by it (``backward_warp``), and a motion-compensated recursive filter
   (``RecursiveFilter``: ``e_t = c_t + a_t (W(e_{t-1}) - c_t)`` with a learned per-pixel gain
   ``a_t``) that averages the noise of aligned frames over time, as video denoisers do.
3. Propagation: the filtered frame, the clean features of this frame and the warped features of
   the previous frame and hidden state are fused by a 3x3 conv and refined by residual blocks at
   LR resolution; the result (``lr_features``) is the new hidden state.
4. Reconstruction: integer scales (2, 3, 4 by default) use their own conv + pixel shuffle
   (``hr_features``); any other scale in [1, 4] resamples the x4 features bilinearly to the target
   size and modulates them with a scale-conditioned FiLM (Perez et al. 2018), in the spirit of
   Meta-SR's scale-aware upsampling. A last 1x1 conv turns ``hr_features`` into a residual that
   is added to the bilinearly upsampled filtered frame. For integer scales the whole step runs at
   LR resolution (the last conv and the bilinear upsampling are folded before one final pixel
   shuffle), which is what makes x4 fast on a CPU.

Why the alignment is not learned: without it the recurrent state barely helped (an earlier
student without it gained only ~0.1 dB from frame 0 to frame 9 of a clip, even on clips without motion); a
small learned flow estimator (two stride-2 convs, a residual block) trained with the student,
with or without a photometric loss on the ground truth, kept predicting a near-constant flow
(~0.1 px where the camera moved ~1 px per frame). Lucas-Kanade needs no training and its error
against the known camera motion of the training clips is 0.2-0.3 px.

Residual blocks of depthwise 3x3 + pointwise 1x1 pairs in ``small`` (the default student) and
``base``, dense 3x3 convs in ``tiny``; channels_last (``step`` converts its input). Operators were
chosen by measurement (``benchmarks/student_speed.py --ops``, 320x180 feature map, 2 threads): on the
project's shared 2-core machines a dense 3x3 conv beat the depthwise + pointwise pair (5-8x fewer FLOPs)
at 16-32 channels in some runs and lost in others, while a whole ``small`` step made of pairs was about
25 % faster than the dense layout (90-120 against 119-162 ms at 320x180 x4, alternating rounds) for
0.03 dB less gain over bicubic after the same training, so ``small`` and ``base`` use the pairs
(``residual_block="separable"``; ``"dense"`` still builds the dense layout). channels_last ran the
same dense conv 2-3.5x faster than NCHW. The measurements, run by run, are in
``star_vsr/weights/MODEL_CARD.md``; end-to-end speed against Real-ESRGAN in ncnn is in the README
("Benchmarks") and the model card.

Presets (``STUDENT_PRESETS``), for one 320x180 -> 1280x720 (x4) frame, model only, 2 CPU threads
(``benchmarks/student_speed.py --model-only --presets tiny small base``, median of 8 steps, on
2026-12-01 on a 2-core machine with AVX-512 and BF16 instructions but no AMX; repeated runs on the
shared machines vary by up to ~25 %, and more between days):

=========  ==========  ===================  ==========  ===========
preset     parameters  GFLOPs per 720p out  float32 ms  bfloat16 ms
=========  ==========  ===================  ==========  ===========
``tiny``   52,696      4.0                  105.6       129.3
``small``  130,448     9.5                  148.8       172.6
``base``   390,408     29.9                 224.1       382.4
=========  ==========  ===================  ==========  ===========

(FLOPs = 2 x multiply-accumulates of the convolutions and linears, counted by ``count_flops``
with ``torch.utils.flop_counter``; interpolation, pixel shuffle, activations and the Lucas-Kanade
flow are not counted; the Lucas-Kanade flow and the warps always run in float32, and bfloat16 pays
off only on a CPU with AMX: on a 2-core Xeon with AMX on 2026-12-02 the same command gave 59.8 / 80.4
/ 184.0 ms in float32 and 34.3 / 54.4 / 91.8 ms in bfloat16, which is why ``--dtype auto`` picks
bfloat16 for students there, ``star_vsr.upscale.resolve_dtype``.) With dense residual blocks ``small`` has
224,912 parameters and 17.7 GFLOPs and ``base`` 847,752 and 76.5; those dense presets took 47.7 / 94.0 / 261.6 ms in float32 and 33.0 / 52.4
/ 96.4 ms in bfloat16 on an earlier machine, 82.7 / 136.8 / 372.9 and 76.6 / 213.5 / 663.3 ms on this
one on another day.

Feature taps for distillation (``return_features=True``), each (b, n, c, h_f, w_f):
``clean_frame`` (3, LR), ``flow`` (2, LR, the Lucas-Kanade flow), ``filtered_frame`` (3, LR, the
recursive filter's output), ``clean_features`` (LR), ``lr_features`` (the propagated hidden state,
LR) and ``hr_features`` (HR features right before the last conv: the Space-Time Distillation
tap). ``model.feature_channels`` gives their channel counts.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..errors import InputError, option
from ..frames import check_unit_range
from .loading import LocalModelMixin

#: Output / input size ratios the student accepts.
MIN_SCALE, MAX_SCALE = 1.0, 4.0
#: Names of the feature taps ``forward(..., return_features=True)`` returns (see the module docstring).
FEATURE_TAPS = ("clean_frame", "flow", "filtered_frame", "clean_features", "lr_features", "hr_features")
#: The cleaning front end works on the LR frame pixel-unshuffled by this factor.
CLEAN_UNSHUFFLE = 2
#: Negative slope of every LeakyReLU.
LEAKY_SLOPE = 0.1
#: Residual blocks start with their second conv scaled down (EDSR-style) so a deep trunk starts
#: close to the identity.
RESIDUAL_INIT_SCALE = 0.1
#: Kinds of ``ResidualBlock``: dense 3x3 convs, or depthwise 3x3 + pointwise 1x1 pairs.
RESIDUAL_BLOCKS = ("dense", "separable")
#: Hidden width of the MLP that maps the scale to FiLM parameters.
SCALE_EMBED_CHANNELS = 32
#: Pyramidal Lucas-Kanade flow (``lucas_kanade_flow``): levels (LR, 1/2, 1/4), the finest level
#: estimated (1 = half LR resolution), iterations per level, default window side (the model's
#: ``flow_window``), Tikhonov regularisation
#: (in squared luma differences per pixel). Chosen on motion clips of the training photos
#: (mean error against the camera motion with a 15-pixel window 0.22 px on degraded, 0.18 px on clean LR
#: frames; 11 pixels: 0.29 / 0.23; a student trained with 15 gained +0.49 dB on the evaluation set, with 11 +0.44).
FLOW_LEVELS = 3
FLOW_FINEST_LEVEL = 1
FLOW_ITERATIONS = 2
FLOW_WINDOW = 15
FLOW_REGULARISATION = 3e-3
#: Hidden width of the recursive filter's blend-weight network.
BLEND_CHANNELS = 16
#: Initial bias of the blend-weight logit: sigmoid(-3) = 0.05, so a fresh model barely blends.
BLEND_INIT_BIAS = -3.0

#: Architecture of each named size; ``StarStudentModel.from_preset`` fills the config from these.
#: ``tiny`` keeps dense blocks (at 16 channels the depthwise + pointwise pair was the slower one in the
#: latest ``--ops`` runs); ``small`` and ``base`` use separable ones (faster at 32 and 64 channels).
STUDENT_PRESETS: dict[str, dict[str, Union[int, str]]] = {
    "tiny": dict(clean_channels=16, num_clean_blocks=1, clean_feature_channels=16, num_channels=16,
                 num_blocks=2, hr_channels=4, residual_block="dense"),
    "small": dict(clean_channels=32, num_clean_blocks=2, clean_feature_channels=16, num_channels=32,
                  num_blocks=4, hr_channels=8, residual_block="separable"),
    "base": dict(clean_channels=48, num_clean_blocks=2, clean_feature_channels=24, num_channels=64,
                 num_blocks=6, hr_channels=12, residual_block="separable"),
}
#: Preset used when none is named.
DEFAULT_PRESET = "small"
#: Largest width and block count a config may ask for, far beyond any compact student ("base": 64 channels, 6
#: blocks): a damaged or crafted config.json asking for 10**9 blocks built them for minutes, 10**6 channels tried
#: to allocate terabytes, before its weights were compared with it.
MAX_CHANNELS, MAX_BLOCKS = 1024, 256


def check_student_scale(scale: Optional[float], upsample_scales: Sequence[int], default: float,
                        config_key: bool = False) -> float:
    """``scale`` as a float (``default``, the config's scale, for None); ``InputError`` outside
    [MIN_SCALE, the largest of ``upsample_scales``] (and MAX_SCALE). A module function so that the command
    line can check ``--upscale`` against a saved config before the weights load (its errors name the flag there,
    as the diffusion pipeline's do; ``config_key``: they name the config's ``scale``, which a folder's config.json
    gives where no --upscale was typed)."""
    what = "the config's scale" if config_key else option("the scale", "--upscale")
    if (scale is not None or config_key) and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
        raise InputError(f"{what} must be a real number (int or float), got {type(scale).__name__} {scale!r}")
    if scale is not None and not math.isfinite(scale):
        raise InputError(f"{what} must be a finite number, got {scale!r}")
    scale = float(default if scale is None else scale)
    top = min(MAX_SCALE, max(upsample_scales))
    if not MIN_SCALE <= scale <= top:
        if config_key:
            raise InputError(f"the config's scale {scale:.10g} is unsupported: the student upscales by {MIN_SCALE:g} "
                             f"to {top:g}")
        raise InputError(f"unsupported {option('scale', '--upscale')} {scale:.10g}: the student upscales by "
                         f"{MIN_SCALE:g} to {top:g}")
    return scale


def student_architecture(preset: str, overrides: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The full architecture of ``StarStudentModel.from_preset(preset, **overrides)``: the constructor's defaults,
    the preset's keys and ``overrides`` on top (``scale`` and ``preset``, which shape no weight, left out); None for
    an unknown preset. Overrides that repeat the preset's own values leave it as the preset's."""
    if preset not in STUDENT_PRESETS:
        return None
    defaults = {k: p.default for k, p in inspect.signature(StarStudentModel.__init__).parameters.items()
                if k != "self"}
    config = {**defaults, **STUDENT_PRESETS[preset], **overrides}
    try:  # as the model keeps them: JSON's [2, 3, 4] is the default (2, 3, 4)
        config["upsample_scales"] = tuple(sorted({int(r) for r in config["upsample_scales"]}))
    except (TypeError, ValueError):  # (refused when the model is built)
        pass
    return {k: v for k, v in config.items() if k not in ("scale", "preset")}


def student_setting_names() -> list[str]:
    """The ``StarStudentModel`` settings an architecture consists of (``student_overrides`` may change them): its
    constructor's arguments but ``scale`` and ``preset``, which shape no weight."""
    return [name for name in inspect.signature(StarStudentModel.__init__).parameters
            if name not in ("self", "scale", "preset")]


def output_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """HR frame size (H, W) for an LR frame of ``height`` x ``width`` upscaled by ``scale``: each side times
    ``scale``, rounded to the nearest integer, halves to even (Python's ``round``: 5 x 1.5 -> 8, 3 x 1.5 -> 4),
    as ``StarVSRPipeline`` rounds."""
    return round(int(height) * scale), round(int(width) * scale)


@dataclass
class StarStudentState:
    """What ``StarStudentModel.step`` carries from one frame to the next.

    Args:
        hidden: the previous frame's ``lr_features`` (b, num_channels, h_p, w_p), zeros at the start.
        previous_features: the previous frame's clean features (b, clean_feature_channels, h_p, w_p).
        previous_frame: the previous frame's temporally filtered clean LR frame (b, 3, h_p, w_p).
        last_lr_frame: the previous raw LR frame (b, 3, h, w), or None. The model does not use it (it is not
            one of ``tensors()``); ``StarStudentPipeline`` sets it in the states it hands out, for the
            scene-cut test of the next frame when the rest of a stream is fed with the state, and to refuse the
            state for frames of another size (without it, one of a video a pixel narrower or shorter, padded to
            the same even size, is taken).

    ``h_p``, ``w_p`` are the LR height and width rounded up to even (the front end's unshuffle).
    All zeros is the state before the first frame.
    """

    hidden: torch.Tensor
    previous_features: torch.Tensor
    previous_frame: torch.Tensor
    last_lr_frame: Optional[torch.Tensor] = None

    #: The fields the model carries, in ``tensors()`` order (``last_lr_frame`` is not one).
    TENSOR_FIELDS: ClassVar[tuple[str, str, str]] = ("hidden", "previous_features", "previous_frame")

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state as a tuple (for export and CUDA graphs): (hidden, previous_features, previous_frame),
        the order of the fields (``StarStudentState(*tensors)`` rebuilds it)."""
        return self.hidden, self.previous_features, self.previous_frame

    def detach(self) -> "StarStudentState":
        """Cut the graph (truncated back-propagation through time)."""
        last = None if self.last_lr_frame is None else self.last_lr_frame.detach()
        return StarStudentState(*(t.detach() for t in self.tensors()), last_lr_frame=last)


@dataclass
class StarStudentOutput(BaseOutput):
    """Output of ``StarStudentModel``.

    Args:
        sample: upscaled clip (b, n, 3, H, W), not clamped (roughly [0, 1]).
        features: with ``return_features``, the feature taps, each (b, n, c, h_f, w_f); else None.
        state: the state after the last frame, to continue the clip with another call.
    """

    sample: torch.Tensor
    features: Optional[dict[str, torch.Tensor]] = None
    state: Optional[StarStudentState] = None


class ResidualBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))`` with no normalisation (EDSR).

    ``"dense"``: each conv is a dense 3x3. ``"separable"``: each is a depthwise 3x3 (``dw1``, ``dw2``)
    followed by a pointwise 1x1 (``conv1``, ``conv2``), MobileNet-style: 9 + c instead of 9c
    multiply-accumulates per output value (measured speed and quality: the module docstring).
    """

    def __init__(self, channels: int, kind: str = "dense") -> None:
        super().__init__()
        if kind not in RESIDUAL_BLOCKS:
            raise InputError(f"residual_block must be one of {', '.join(RESIDUAL_BLOCKS)}, got {kind!r}")
        separable = kind == "separable"
        depthwise = (lambda: nn.Conv2d(channels, channels, 3, padding=1, groups=channels)) if separable else nn.Identity
        k = 1 if separable else 3  # kernel of conv1 / conv2: pointwise after a depthwise conv, else dense
        self.dw1 = depthwise()
        self.conv1 = nn.Conv2d(channels, channels, k, padding=k // 2)
        self.dw2 = depthwise()
        self.conv2 = nn.Conv2d(channels, channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, c, h, w)
        return x + self.conv2(self.dw2(F.leaky_relu_(self.conv1(self.dw1(x)), LEAKY_SLOPE)))


class CleaningFrontEnd(nn.Module):
    """Real-world cleaning at half resolution: LR frame -> (cleaned frame, clean features).

    ``x`` is pixel-unshuffled by ``CLEAN_UNSHUFFLE`` (b, 12, h/2, w/2), processed by a 3x3 conv and
    ``num_blocks`` residual blocks; two last convs predict, pixel-shuffled back to (h, w), the clean
    features and a residual that is added to ``x`` to give the cleaned frame.
    """

    def __init__(self, channels: int, num_blocks: int, feature_channels: int, residual_block: str = "dense") -> None:
        super().__init__()
        r2 = CLEAN_UNSHUFFLE ** 2
        self.feature_channels = feature_channels
        self.conv_in = nn.Conv2d(3 * r2, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, residual_block) for _ in range(num_blocks)])
        self.to_features = nn.Conv2d(channels, feature_channels * r2, 3, padding=1)
        self.to_residual = nn.Conv2d(channels, 3 * r2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: (b, 3, h, w), h, w even
        y = F.leaky_relu_(self.conv_in(F.pixel_unshuffle(x, CLEAN_UNSHUFFLE)), LEAKY_SLOPE)  # (b, c, h/2, w/2)
        y = self.blocks(y)
        features = F.leaky_relu_(F.pixel_shuffle(self.to_features(y), CLEAN_UNSHUFFLE), LEAKY_SLOPE)  # (b, cf, h, w)
        residual = F.pixel_shuffle(self.to_residual(y), CLEAN_UNSHUFFLE)  # (b, 3, h, w)
        return x + residual, features


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of ``x`` (b, c, h, w) over the ``window`` x ``window`` box around each pixel (odd ``window``).

    Boxes are cut at the border (the mean of the pixels inside). Separable: a vertical then a
    horizontal 1-D mean, exact because the count inside a cut box is the product of the two
    counts; about 3x faster on a CPU than the 2-D ``avg_pool2d`` at ``FLOW_WINDOW``.
    """
    pad = window // 2
    x = F.avg_pool2d(x, (window, 1), stride=1, padding=(pad, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, window), stride=1, padding=(0, pad), count_include_pad=False)


def lucas_kanade_flow(frame: torch.Tensor, previous_frame: torch.Tensor, window: int = FLOW_WINDOW) -> torch.Tensor:
    """Dense backward optical flow from ``frame`` to ``previous_frame`` by pyramidal Lucas-Kanade.

    Lucas & Kanade (1981) with Bouguet's coarse-to-fine pyramid: on the luma of both frames,
    averaged down ``FLOW_LEVELS - 1`` times by 2, from the coarsest level to level
    ``FLOW_FINEST_LEVEL`` (1 = half LR resolution), ``FLOW_ITERATIONS`` times per level: warp the
    previous frame by the current flow (``backward_warp``), and solve per pixel the 2x2 system

        [Sxx + lambda, Sxy; Sxy, Syy + lambda] d = -[Sxt; Syt]

    with ``Sab = box_W(I_a I_b)`` the products of the spatial gradients ``I_x``, ``I_y`` (central
    differences of the mean of the two frames) and the temporal difference ``I_t`` summed over a
    ``window`` x ``window`` box (odd); ``lambda = FLOW_REGULARISATION`` keeps flat areas at the coarser estimate.
    Each update is clamped to 1 pixel of its level. The flow is then upsampled to (h, w).

    No parameters and no gradient: the inputs are detached, the arithmetic runs in float32 (any
    input dtype). A few ms per 320x180 frame on a CPU; a learned estimator trained with the student
    did not learn to see motion in this project's training budget (see the module docstring).

    Args:
        frame, previous_frame: (b, 3, h, w).
        window: side of the summation window, pixels of each pyramid level (odd).

    Returns:
        flow (b, 2, h, w): (dx, dy) in LR pixels, such that ``previous_frame(p + flow(p))`` shows what
        ``frame(p)`` shows.
    """
    current = frame.detach().float().mean(1, keepdim=True)  # (b, 1, h, w) luma
    previous = previous_frame.detach().float().mean(1, keepdim=True)
    pyramid = [(current, previous)]
    for _ in range(FLOW_LEVELS - 1):
        c, p = pyramid[-1]
        pyramid.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(p, 2, ceil_mode=True)))
    flow = current.new_zeros(current.shape[0], 2, *pyramid[-1][0].shape[-2:])  # (b, 2, h_L, w_L)
    for level in range(FLOW_LEVELS - 1, FLOW_FINEST_LEVEL - 1, -1):
        c, p = pyramid[level]
        if flow.shape[-2:] != c.shape[-2:]:  # one level finer: twice the pixels, twice the displacement
            flow = 2 * F.interpolate(flow, size=c.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(FLOW_ITERATIONS):
            warped = backward_warp(p, flow)  # (b, 1, h_l, w_l)
            mean = (warped + c) / 2
            # central differences, 0 at the border (the crop keeps a 1-pixel-wide level 1 pixel wide)
            gx = F.pad(mean[..., 2:] - mean[..., :-2], (1, 1))[..., :mean.shape[-1]] / 2
            gy = F.pad(mean[..., 2:, :] - mean[..., :-2, :], (0, 0, 1, 1))[..., :mean.shape[-2], :] / 2
            gt = warped - c
            sums = box_mean(torch.cat([gx * gx, gy * gy, gx * gy, gx * gt, gy * gt], dim=1), window)  # (b, 5, h_l, w_l)
            sxx, syy, sxy, sxt, syt = sums.unbind(1)
            sxx, syy = sxx + FLOW_REGULARISATION, syy + FLOW_REGULARISATION
            det = sxx * syy - sxy * sxy  # >= lambda^2 > 0
            update = torch.stack([(sxy * syt - syy * sxt) / det, (sxy * sxt - sxx * syt) / det], dim=1)
            flow = flow + update.clamp(-1, 1)
    scale = 2 ** FLOW_FINEST_LEVEL
    flow = scale * F.interpolate(flow, size=frame.shape[-2:], mode="bilinear", align_corners=False)  # (b, 2, h, w)
    return flow.to(frame.dtype)


def backward_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` (b, c, h, w) at ``p + flow(p)`` for every pixel p: ``out(p) = x(p + flow(p))``.

    ``flow`` (b, 2, h, w) holds (dx, dy) in pixels. Bilinear, borders replicated.

    Coordinates and sampling are at least float32 whatever the dtype of ``x`` (the result has it):
    bfloat16's 8-bit mantissa cannot hold a pixel position (columns 256-511 come in steps of 2, and a
    grid coordinate in [-1, 1] is off by up to 0.6 pixel at 320 wide; float16's by 0.5 pixel at 1920),
    which warped bfloat16 students' states to wrong places.
    """
    b, _, h, w = x.shape
    work = torch.promote_types(x.dtype, torch.float32)
    flow = flow.to(work)
    # 0, 1, ..., n - 1 from new_ones, not torch.arange(device=...): a traced (TorchScript) step then takes the
    # device of its input instead of the one it was exported on (exact: integers below 2^24 in float32)
    ys = flow.new_ones(h).cumsum(0).sub_(1).view(1, h, 1)
    xs = flow.new_ones(w).cumsum(0).sub_(1).view(1, 1, w)
    # pixel centre coordinates -> [-1, 1] (align_corners=False: pixel i covers [i, i + 1) / size)
    grid_x = (2 * (xs + flow[:, 0]) + 1) / w - 1  # (b, h, w)
    grid_y = (2 * (ys + flow[:, 1]) + 1) / h - 1
    grid = torch.stack([grid_x, grid_y], dim=-1)  # (b, h, w, 2)
    warped = F.grid_sample(x.to(work), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.to(x.dtype)


class RecursiveFilter(nn.Module):
    """Motion-compensated recursive filter of the cleaned LR frames (temporal denoising).

        e_t = c_t + a_t * (W(e_{t-1}) - c_t),   a_t = sigmoid(g(c_t, W(e_{t-1}), |W(e_{t-1}) - c_t|))

    ``c_t`` is the cleaned frame, ``W`` the backward warp by the estimated flow, ``e_t`` the filtered
    frame and ``a_t`` (b, 1, h, w) a per-pixel blend weight from a two-conv network ``g``: close to 1
    where the warped history agrees with the frame (noise is averaged over time, as in a Kalman
    filter with a learned gain), close to 0 where it does not (occlusion, wrong flow, first frame).
    Starts near ``a = 0.05`` (``BLEND_INIT_BIAS``).
    """

    def __init__(self, channels: int = BLEND_CHANNELS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(9, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, frame: torch.Tensor, warped_previous: torch.Tensor) -> torch.Tensor:  # (b, 3, h, w) each
        difference = warped_previous - frame
        y = F.leaky_relu_(self.conv1(torch.cat([frame, warped_previous, difference.abs()], dim=1)), LEAKY_SLOPE)
        blend = torch.sigmoid(self.conv2(y))  # (b, 1, h, w)
        return frame + blend * difference  # (b, 3, h, w)


class ScaleModulation(nn.Module):
    """FiLM conditioned on the scale: ``f * (1 + gamma(s)) + beta(s)`` per channel.

    The scale enters as (1/s, s / MAX_SCALE); a two-layer MLP gives gamma and beta.
    """

    def __init__(self, channels: int, hidden: int = SCALE_EMBED_CHANNELS) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))

    def forward(self, features: torch.Tensor, scale: float) -> torch.Tensor:  # (b, c, H, W)
        # built with fills, not from host data, so a CUDA graph can capture it; new_full follows the input's device
        # and dtype in a traced step too
        code = torch.cat([features.new_full((1, 1), 1.0 / scale), features.new_full((1, 1), scale / MAX_SCALE)], dim=1)
        gamma, beta = self.mlp(code).chunk(2, dim=1)  # (1, c) each
        return features * (1 + gamma[..., None, None]) + beta[..., None, None]


class StarStudentModel(LocalModelMixin, ModelMixin, ConfigMixin):
    r"""Compact online recurrent video SR network with a cleaning front end and any scale in [1, 4].

    Parameters:
        scale (`int`, defaults to 4): the scale used when a call does not name one.
        preset (`str`, defaults to "custom"): the size preset this config came from (informational;
            the architecture is given by the arguments below; ``from_preset`` sets it, and labels a
            model "custom" when overrides changed it).
        clean_channels (`int`, defaults to 32): width of the cleaning front end (at half resolution).
        num_clean_blocks (`int`, defaults to 2): residual blocks of the front end.
        clean_feature_channels (`int`, defaults to 16): clean features handed to the propagation.
        num_channels (`int`, defaults to 32): width of the propagation trunk and of the hidden state.
        num_blocks (`int`, defaults to 4): residual blocks of the trunk.
        hr_channels (`int`, defaults to 8): channels of ``hr_features`` (HR space, before the last conv).
        flow_window (`int`, defaults to 15): window side of the Lucas-Kanade flow (odd; larger is
            steadier on camera motion, smaller follows small moving objects).
        upsample_scales (`tuple[int]`, defaults to (2, 3, 4)): integer scales with their own pixel
            shuffle head; other scales resample the largest one's features.
        residual_block (`str`, defaults to "dense"): "dense" 3x3 convs in every residual block (front
            end and trunk) or "separable" depthwise 3x3 + pointwise 1x1 pairs (faster on a CPU; what the
            ``small`` and ``base`` presets choose). The default keeps folders saved before this option
            existed (no ``residual_block`` in their config) loading as the dense models they are.
    """

    @register_to_config
    def __init__(
        self,
        scale: int = 4,
        preset: str = "custom",
        clean_channels: int = 32,
        num_clean_blocks: int = 2,
        clean_feature_channels: int = 16,
        num_channels: int = 32,
        num_blocks: int = 4,
        hr_channels: int = 8,
        flow_window: int = FLOW_WINDOW,
        upsample_scales: Sequence[int] = (2, 3, 4),
        residual_block: str = "dense",
    ) -> None:
        super().__init__()
        sizes = {"clean_channels": clean_channels, "clean_feature_channels": clean_feature_channels,
                 "num_channels": num_channels, "hr_channels": hr_channels, "num_clean_blocks": num_clean_blocks,
                 "num_blocks": num_blocks}
        for name, value in sizes.items():  # (a width of 0 built, then failed in its first conv: "expected weight to
            blocks = name.startswith("num_") and name.endswith("blocks")  # be at least 1 at dimension 0")
            least, most = (0, MAX_BLOCKS) if blocks else (1, MAX_CHANNELS)
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
                raise InputError(f"{name} must be a whole number in [{least}, {most}], got {value!r}")
        try:  # (a string or a number: int("a")'s ValueError, "'int' object is not iterable")
            scales = tuple(int(s) for s in upsample_scales)
        except (TypeError, ValueError, OverflowError):  # (OverflowError: JSON's Infinity)
            scales = ()
        if not scales or any(s != r or not 1 <= r <= MAX_SCALE for s, r in zip(upsample_scales, scales)):
            raise InputError(f"upsample_scales must be integers in [1, {MAX_SCALE:g}], got {upsample_scales!r}")
        self.upsample_scales = tuple(sorted(set(scales)))
        if isinstance(flow_window, bool) or not isinstance(flow_window, int) or flow_window < 1 or flow_window % 2 == 0:
            raise InputError(f"flow_window must be an odd number >= 1, got {flow_window!r}")  # ints only, as above
        check_student_scale(scale, self.upsample_scales, MAX_SCALE, config_key=True)
        # 1. cleaning front end
        self.clean = CleaningFrontEnd(clean_channels, num_clean_blocks, clean_feature_channels, residual_block)
        # 2. alignment: flow to the previous frame, motion-compensated recursive filter
        self.temporal_filter = RecursiveFilter()
        # 3. propagation: fuse (filtered frame, current and warped previous clean features, warped hidden)
        self.fuse = nn.Conv2d(3 + 2 * clean_feature_channels + num_channels, num_channels, 3, padding=1)
        self.trunk = nn.Sequential(*[ResidualBlock(num_channels, residual_block) for _ in range(num_blocks)])
        # 4. reconstruction: one pixel-shuffle head per integer scale, FiLM for the others, last conv
        self.upsamplers = nn.ModuleDict({
            str(r): nn.Conv2d(num_channels, hr_channels * r * r, 3, padding=1) for r in self.upsample_scales
        })
        self.scale_modulation = ScaleModulation(hr_channels)
        self.conv_last = nn.Conv2d(hr_channels, 3, 1)  # in HR space
        for r in self.upsample_scales:  # fixed, rebuilt on construction, not saved
            self.register_buffer(f"bilinear_kernel_x{r}", bilinear_subpixel_kernel(r), persistent=False)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str = DEFAULT_PRESET, **overrides: Any) -> "StarStudentModel":
        """A fresh model of preset ``name`` ("tiny", "small", "base"); ``overrides`` change config keys."""
        if name not in STUDENT_PRESETS:
            raise InputError(f"unknown student preset {name!r}; choose one of {', '.join(STUDENT_PRESETS)}")
        config = dict(STUDENT_PRESETS[name])
        changes_architecture = student_architecture(name, overrides) != student_architecture(name, {})
        config.update(overrides)
        config.setdefault("preset", "custom" if changes_architecture else name)
        return cls(**config)

    def reset_parameters(self, generator: torch.Generator, bilinear_start: bool = False) -> None:
        """Re-draw every weight from ``generator`` (He-normal for LeakyReLU, zero biases).

        The second conv of each residual block is scaled by ``RESIDUAL_INIT_SCALE``. With
        ``bilinear_start`` (the start of training) the two output convs (the front end's residual
        and ``conv_last``) are zeroed and the recursive filter's blend weight is set to
        sigmoid(``BLEND_INIT_BIAS``) everywhere, so the model starts as nearly exact bilinear
        upsampling (a neutral start for residual learning) while computing everything else as usual.
        """
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    fan_in = module.weight[0].numel()
                    draw = torch.randn(module.weight.shape, generator=generator) * (gain / math.sqrt(fan_in))
                    module.weight.copy_(draw)
                    if module.bias is not None:
                        module.bias.zero_()
            for module in self.modules():
                if isinstance(module, ResidualBlock):
                    module.conv2.weight.mul_(RESIDUAL_INIT_SCALE)
            if bilinear_start:
                for module in (self.clean.to_residual, self.conv_last, self.temporal_filter.conv2):
                    module.weight.zero_()
                self.temporal_filter.conv2.bias.fill_(BLEND_INIT_BIAS)

    @property
    def feature_channels(self) -> dict[str, int]:
        """Channels of each feature tap returned by ``forward(..., return_features=True)``."""
        widths = (3, 2, 3, self.config.clean_feature_channels, self.config.num_channels, self.config.hr_channels)
        return dict(zip(FEATURE_TAPS, widths))

    # ---------------------------------------------------------------- state
    def init_state(self, batch: int, height: int, width: int, device: Optional[torch.device] = None,
                   dtype: Optional[torch.dtype] = None) -> StarStudentState:
        """The state before the first frame of a clip of ``height`` x ``width`` LR frames: zeros."""
        weight = self.fuse.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        h_p, w_p = height + height % CLEAN_UNSHUFFLE, width + width % CLEAN_UNSHUFFLE

        def zeros(channels: int) -> torch.Tensor:
            return torch.zeros(batch, channels, h_p, w_p, device=device, dtype=dtype).contiguous(
                memory_format=torch.channels_last)

        return StarStudentState(hidden=zeros(self.config.num_channels),
                                previous_features=zeros(self.config.clean_feature_channels),
                                previous_frame=zeros(3))

    # ---------------------------------------------------------------- scale
    def check_scale(self, scale: Optional[float]) -> float:
        """``scale`` as a float (the config's scale for None); InputError outside [MIN_SCALE, top head]."""
        return check_student_scale(scale, self.upsample_scales, self.config.scale)

    def _has_head(self, scale: float) -> bool:
        """Whether ``scale`` has its own pixel-shuffle head."""
        return scale.is_integer() and int(scale) in self.upsample_scales

    def _resampled_hr_features(self, lr_features: torch.Tensor, scale: float,
                               lr_size: tuple[int, int]) -> torch.Tensor:
        """Scales without a head: LR features (b, c, h_p, w_p) -> ``hr_features`` (b, hr_channels, H, W).

        The largest head's pixel-shuffled features, bilinearly resampled to the output size
        (antialiased when shrinking) and FiLM-modulated by the scale.
        """
        h, w = lr_size
        top = max(self.upsample_scales)
        hr = F.pixel_shuffle(self.upsamplers[str(top)](lr_features), top)[..., :top * h, :top * w]
        # float32: PyTorch's antialiased resampling has no bfloat16 kernel on the CPU
        hr = F.interpolate(hr.float(), size=output_size(h, w, scale), mode="bilinear", align_corners=False,
                           antialias=scale < top).to(hr.dtype)
        hr = self.scale_modulation(hr, scale)
        return F.leaky_relu_(hr, LEAKY_SLOPE)  # (b, hr_channels, H, W)

    def _reconstruct_subpixel(self, lr_features: torch.Tensor, clean_frame: torch.Tensor, r: int,
                              lr_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer scale ``r``: everything at LR resolution, one pixel shuffle at the end.

        ``conv_last`` is a 1x1 conv in HR space, so ``conv_last(PS(f)) = PS(conv(f, kron(W, I_r2)))``;
        the bilinear upsampling of the cleaned frame is a fixed 3x3 conv to r^2 sub-pixels per
        channel (exact, borders included). Returns (sr (b, 3, H, W), the pre-shuffle features
        (b, hr_channels * r^2, h, w) whose activated pixel shuffle is ``hr_features``).
        """
        h, w = lr_size
        r2 = r * r
        head = F.leaky_relu_(self.upsamplers[str(r)](lr_features)[..., :h, :w], LEAKY_SLOPE)  # (b, c_hr*r2, h, w)
        eye = head.new_ones(r2).diag()  # (r2, r2) identity on head's device, in a traced step too
        last = self.conv_last.weight[:, :, 0, 0]  # (3, c_hr)
        weight = (last[:, None, :, None] * eye[None, :, None, :]).reshape(3 * r2, -1, 1, 1)  # kron(W, I_r2)
        bias = self.conv_last.bias[:, None].expand(3, r2).reshape(-1)  # (3*r2,)
        out = F.conv2d(head, weight, bias)  # (b, 3*r2, h, w)
        padded = F.pad(clean_frame, (1, 1, 1, 1), mode="replicate")  # (b, 3, h+2, w+2)
        base = F.conv2d(padded, getattr(self, f"bilinear_kernel_x{r}").to(head.dtype), groups=3)  # (b, 3*r2, h, w)
        return F.pixel_shuffle(out + base, r), head  # (b, 3, r*h, r*w)

    # ---------------------------------------------------------------- one frame
    def _step(self, lr_frame: torch.Tensor, state: StarStudentState, scale: float,
              return_features: bool) -> tuple[torch.Tensor, StarStudentState, Optional[dict[str, torch.Tensor]]]:
        if lr_frame.ndim != 4 or lr_frame.shape[1] != 3:
            raise InputError(f"a frame batch must be (batch, 3, h, w), got {tuple(lr_frame.shape)}")
        _check_float_pixels(lr_frame)
        b, _, h, w = lr_frame.shape
        x = lr_frame.to(self.fuse.weight.dtype).contiguous(memory_format=torch.channels_last)  # (b, 3, h, w)
        pad_h, pad_w = h % CLEAN_UNSHUFFLE, w % CLEAN_UNSHUFFLE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # (b, 3, h_p, w_p)
        if state.hidden.shape[-2:] != x.shape[-2:] or state.hidden.shape[0] != b:
            raise InputError(f"the state is for frames of {tuple(state.hidden.shape[-2:])} (batch "
                             f"{state.hidden.shape[0]}), got a frame batch {tuple(lr_frame.shape)}; "
                             f"make one with init_state({b}, {h}, {w})")
        channels = (self.config.num_channels, self.config.clean_feature_channels, 3)  # TENSOR_FIELDS' order
        for name, tensor, c in zip(StarStudentState.TENSOR_FIELDS, state.tensors(), channels):
            if tensor.shape != (b, c, *x.shape[-2:]):  # another student's state: torch's "split_with_sizes expects"
                raise InputError(f"the state's {name} is shaped {tuple(tensor.shape)}, this student needs "
                                 f"{(b, c, *x.shape[-2:])} (another student's state?); make one with "
                                 f"init_state({b}, {h}, {w})")
            if tensor.dtype != x.dtype or tensor.device != x.device:  # else a conv's "Input type ... bias type"
                raise InputError(f"the state's {name} is {tensor.dtype} on {tensor.device}, the model runs in "
                                 f"{x.dtype} on {x.device}; make one with init_state({b}, {h}, {w}) (the "
                                 f"model's dtype and device) or convert it")

        # 1. Cleaning front end
        clean_frame, clean_features = self.clean(x)  # (b, 3, h_p, w_p), (b, cf, h_p, w_p)

        # 2. Alignment: warp the state to this frame, filter the cleaned frames over time
        flow = lucas_kanade_flow(clean_frame, state.previous_frame, self.config.flow_window)  # (b, 2, h_p, w_p)
        previous = torch.cat([state.previous_frame, state.previous_features, state.hidden], dim=1)
        previous_frame, previous_features, hidden = backward_warp(previous, flow).split(
            [3, self.config.clean_feature_channels, self.config.num_channels], dim=1)
        filtered_frame = self.temporal_filter(clean_frame, previous_frame)  # (b, 3, h_p, w_p)

        # 3. Propagation: fuse the filtered frame, clean features and the warped state
        fused = torch.cat([filtered_frame, clean_features, previous_features, hidden], dim=1)
        fused = F.leaky_relu_(self.fuse(fused), LEAKY_SLOPE)  # (b, c, h_p, w_p)
        lr_features = fused + self.trunk(fused)  # (b, c, h_p, w_p)

        # 4. Reconstruction: HR features -> residual on the bilinearly upsampled filtered frame
        base_frame = filtered_frame[..., :h, :w]  # (b, 3, h, w)
        if self._has_head(scale):
            sr, head = self._reconstruct_subpixel(lr_features, base_frame, int(scale), (h, w))
            hr_features = F.pixel_shuffle(head, int(scale)) if return_features else None
        else:
            hr_features = self._resampled_hr_features(lr_features, scale, (h, w))  # (b, c_hr, H, W)
            base = F.interpolate(base_frame, size=hr_features.shape[-2:], mode="bilinear", align_corners=False)
            sr = self.conv_last(hr_features) + base  # (b, 3, H, W)

        # in the model's dtype, as init_state makes it: under autocast these come out in bf16/fp16, and the
        # next step would refuse them (the check above)
        new_state = StarStudentState(hidden=lr_features.to(x.dtype), previous_features=clean_features.to(x.dtype),
                                     previous_frame=filtered_frame.to(x.dtype))
        taps = None
        if return_features:
            taps = {"clean_frame": clean_frame[..., :h, :w], "flow": flow[..., :h, :w],
                    "filtered_frame": base_frame, "clean_features": clean_features[..., :h, :w],
                    "lr_features": lr_features[..., :h, :w], "hr_features": hr_features}
        return sr, new_state, taps

    def step(self, lr_frame: torch.Tensor, state: StarStudentState,
             scale: Optional[float] = None) -> tuple[torch.Tensor, StarStudentState]:
        """Upscale one frame of a stream.

        Args:
            lr_frame: (b, 3, h, w) in [0, 1] (its values are not checked here, on the streaming path of every
                frame; ``forward`` and the pipeline check them).
            state: from ``init_state`` for the first frame, then from the previous ``step``.
            scale: output / input size in [1, 4]; None for ``config.scale``.

        Returns:
            (sr_frame (b, 3, H, W) not clamped, the state for the next frame).
        """
        sr, state, _ = self._step(lr_frame, state, self.check_scale(scale), return_features=False)
        return sr, state

    def step_tensors(self, lr_frame: torch.Tensor, hidden: torch.Tensor, previous_features: torch.Tensor,
                     previous_frame: torch.Tensor, scale: Optional[float] = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``step`` on plain tensors (for export, ``torch.compile`` and CUDA graphs).

        Returns (sr_frame (b, 3, H, W), hidden, previous_features, previous_frame).
        """
        sr, state = self.step(lr_frame, StarStudentState(hidden, previous_features, previous_frame), scale)
        return (sr, *state.tensors())

    # ---------------------------------------------------------------- clip
    def forward(self, lr: torch.Tensor, scale: Optional[float] = None, return_features: bool = False,
                state: Optional[StarStudentState] = None) -> StarStudentOutput:
        """Upscale a clip; identical to calling ``step`` on its frames in order.

        Args:
            lr: LR clip (b, n, 3, h, w) in [0, 1].
            scale: output / input size in [1, 4]; None for ``config.scale``.
            return_features: also return the feature taps (see the module docstring).
            state: continue from an earlier call's ``output.state`` (default: a fresh stream).
        """
        if lr.ndim != 5 or lr.shape[2] != 3:
            raise InputError(f"lr must be (batch, frames, 3, h, w), got {tuple(lr.shape)}")
        if lr.numel() == 0:  # no frames, no batch or no pixels: torch.stack's or a convolution's error
            raise InputError(f"lr has no {'frames' if lr.shape[1] == 0 else 'pixels'} (shape {tuple(lr.shape)})")
        _check_float_pixels(lr)
        check_unit_range(lr, "lr")  # 0..255 values came out as garbage (one check per clip; step checks the dtype)
        scale = self.check_scale(scale)
        b, n, _, h, w = lr.shape
        if state is None:
            state = self.init_state(b, h, w, device=lr.device)
        frames, taps = [], []
        for t in range(n):
            sr, state, tap = self._step(lr[:, t], state, scale, return_features)
            frames.append(sr)
            taps.append(tap)
        features = None
        if return_features:
            features = {name: torch.stack([tap[name] for tap in taps], dim=1) for name in self.feature_channels}
        return StarStudentOutput(sample=torch.stack(frames, dim=1), features=features, state=state)


def _check_float_pixels(frames: torch.Tensor) -> None:
    """Refuse integer frames: the model reads pixels as floats in [0, 1], so uint8 frames (0..255) would
    come out as garbage rather than fail."""
    if not frames.is_floating_point():
        raise InputError(f"frames must be floating point in [0, 1], got {frames.dtype} (uint8 frames: "
                         "frames.float() / 255)")


def bilinear_subpixel_kernel(r: int, device: Optional[torch.device] = None,
                             dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """Fixed weights (3 * r^2, 1, 3, 3) that turn bilinear x``r`` upsampling into a grouped conv.

    With ``align_corners=False`` the HR pixel at sub-position i of LR pixel y samples the LR
    signal at ``y + (i + 0.5) / r - 0.5``, a blend of y and one neighbour; on an input padded by
    replication (PyTorch clamps at the borders the same way) a grouped 3x3 conv followed by
    ``pixel_shuffle(., r)`` reproduces ``F.interpolate(x, scale_factor=r, mode="bilinear")``.
    """
    taps = torch.zeros(r, 3, dtype=torch.float64)  # (sub-position, LR offset -1..1)
    for i in range(r):
        offset = (i + 0.5) / r - 0.5
        taps[i, 1] = 1 - abs(offset)
        taps[i, 2 if offset > 0 else 0] += abs(offset)
    kernel = taps[:, None, :, None] * taps[None, :, None, :]  # (r, r, 3, 3) for (sub_y, sub_x)
    kernel = kernel.reshape(r * r, 1, 3, 3).repeat(3, 1, 1, 1)  # (3 * r^2, 1, 3, 3), channel-major
    return kernel.to(device=device, dtype=dtype or torch.float32)


def count_flops(model: StarStudentModel, height: int = 180, width: int = 320, scale: Optional[float] = None) -> int:
    """Floating-point operations (2 x multiply-accumulates of convs and linears) of one ``step``.

    Counted with ``torch.utils.flop_counter`` on a frame of ``height`` x ``width`` in the model's dtype.
    """
    from torch.utils.flop_counter import FlopCounterMode

    weight = model.fuse.weight
    frame = torch.zeros(1, 3, height, width, device=weight.device, dtype=weight.dtype)
    state = model.init_state(1, height, width)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.step(frame, state, scale)
    return counter.get_total_flops()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
