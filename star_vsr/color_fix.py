"""Colour correction of super-resolved frames against the LR input.

Diffusion upscalers drift in colour. STAR always applies an AdaIN colour fix: every output
frame takes the per-channel mean and standard deviation of its LR frame,

    y = (x - mu(x)) / s(x) * s(lr) + mu(lr),     s = sqrt(var + eps)          (AdaIN)

A wavelet fix (as in StableSR) keeps the output's high frequencies and takes the low
frequencies from the LR frame resized to the output size:

    y = x - low(x) + low(resize(lr))

where ``low`` is the residual of an ``WAVELET_LEVELS``-level a-trous (dilated) blur pyramid.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .errors import InputError
from .frames import check_unit_range

#: Added to the variance before the square root (AdaIN).
ADAIN_EPS = 1e-5
#: Levels of the a-trous wavelet decomposition (the low band is blurred at dilations 1..16).
WAVELET_LEVELS = 5
COLOR_FIX_MODES = ("adain", "wavelet")


def _check(target: torch.Tensor, source: torch.Tensor) -> None:
    """``InputError`` unless both are (k, c, h, w) float frames in [0, 1] with the same k and c and at least one
    pixel (uint8 or 0..255 frames came out as 0s and 1s, an empty one as a deep interpolate error)."""
    if target.ndim != 4 or source.ndim != 4 or target.shape[:2] != source.shape[:2]:
        raise InputError(f"colour fix needs (frames, channels, h, w) tensors with the same frames and channels; "
                         f"got target {tuple(target.shape)} and source {tuple(source.shape)}")
    if 0 in target.shape[2:] or 0 in source.shape[2:]:
        raise InputError(f"colour fix needs frames of at least one pixel; got target {tuple(target.shape)} and "
                         f"source {tuple(source.shape)}")
    check_unit_range(target, "colour fix target frames (the upscaled frames)")
    check_unit_range(source, "colour fix source frames (the LR frames)")


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mu and s = sqrt(var + eps) of (k, c, n) over n, each (k, c, 1): the unbiased variance, as STAR's, except of
    a single pixel (n = 1), whose unbiased variance is NaN (it made the frame NaN): 0 then."""
    return x.mean(-1, keepdim=True), (x.var(-1, keepdim=True, correction=int(x.shape[-1] > 1)) + ADAIN_EPS).sqrt()


def adain_color_fix(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Match each target frame's channel mean/std to its source frame's. Frames (k, c, h, w) in [0, 1]."""
    _check(target, source)
    t = target.float().flatten(2)  # (k, c, H*W)
    s = source.float().flatten(2)  # (k, c, h*w)
    (t_mean, t_std), (s_mean, s_std) = _mean_std(t), _mean_std(s)
    out = (t - t_mean) / t_std * s_std + s_mean
    return out.reshape(target.shape).clamp(0, 1).to(target.dtype)


def _wavelet_low(x: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """Low-frequency residual of an a-trous decomposition with a 3x3 binomial kernel."""
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    kernel = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    for i in range(levels):
        d = 2 ** i
        x = F.conv2d(F.pad(x, (d, d, d, d), mode="replicate"), kernel, dilation=d, groups=x.shape[1])
    return x


def wavelet_color_fix(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Output high frequencies + source low frequencies. Frames (k, c, h, w) in [0, 1]."""
    _check(target, source)
    t = target.float()
    s = F.interpolate(source.float(), size=target.shape[-2:], mode="bicubic", align_corners=False)
    out = t - _wavelet_low(t) + _wavelet_low(s)
    return out.clamp(0, 1).to(target.dtype)


def color_fix(target: torch.Tensor, source: torch.Tensor, mode: Optional[str]) -> torch.Tensor:
    """Apply ``mode`` ("adain", "wavelet" or None for no correction)."""
    if mode is None:
        return target
    if mode == "adain":
        return adain_color_fix(target, source)
    if mode == "wavelet":
        return wavelet_color_fix(target, source)
    raise InputError(f"color_fix must be one of {COLOR_FIX_MODES} or None, got {mode!r}")
