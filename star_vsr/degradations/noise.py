"""Sensor noise (Real-ESRGAN, Wang et al. 2021, Sec. 3.1 "Noise").

The noise *type and level* of a clip are drawn once per clip by the caller; the noise
*realisation* is drawn here for every frame from the given generator, so frames get different
noise as a real sensor does.
"""

from __future__ import annotations

import torch

from star_vsr.degradations.frames import EIGHT_BIT_MAX

POISSON_COUNTS_AT_WHITE = 255.0
"""Photon count of a white pixel (intensity 1.0) for Poisson noise: the count of an 8-bit
pixel is its level, as in Real-ESRGAN applied to 8-bit images."""

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 RGB weights of the luminance that grey (luminance-only) Poisson noise uses."""


def add_gaussian_noise(
    clip: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator
) -> torch.Tensor:
    """Add zero-mean Gaussian noise and clamp to [0, 1].

    Args:
        clip: (n, 3, h, w) float tensor in [0, 1].
        sigma: Standard deviation in 8-bit levels (e.g. 10 means 10/255).
        gray: If True the same noise is added to all channels (luminance noise), else each
            channel gets its own (colour noise).
        generator: Source of the noise realisation (a CPU `torch.Generator`).

    Returns:
        (n, 3, h, w) noisy clip in [0, 1].
    """
    n, c, h, w = clip.shape
    channels = 1 if gray else c
    noise = torch.randn(
        (n, channels, h, w), generator=generator, dtype=clip.dtype
    )  # (n, 1|c, h, w)
    return (clip + noise * (sigma / EIGHT_BIT_MAX)).clamp_(0.0, 1.0)


def add_poisson_noise(
    clip: torch.Tensor, scale: float, gray: bool, generator: torch.Generator
) -> torch.Tensor:
    """Add shot noise ``scale * (Poisson(x * K) / K - x)`` and clamp to [0, 1].

    ``K = POISSON_COUNTS_AT_WHITE``, so the noise grows with the square root of the intensity.

    Args:
        clip: (n, 3, h, w) float tensor in [0, 1].
        scale: Multiplier of the noise (Real-ESRGAN draws 0.05..3).
        gray: If True the noise is computed on the BT.601 luminance and added to all channels,
            else on each channel independently.
        generator: Source of the noise realisation (a CPU `torch.Generator`).

    Returns:
        (n, 3, h, w) noisy clip in [0, 1].
    """
    if gray:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=clip.dtype).view(1, 3, 1, 1)
        signal = (clip * weights).sum(dim=1, keepdim=True)  # (n, 1, h, w)
    else:
        signal = clip  # (n, 3, h, w)
    rate = signal.clamp(min=0.0) * POISSON_COUNTS_AT_WHITE
    noise = torch.poisson(rate, generator=generator) / POISSON_COUNTS_AT_WHITE - signal
    return (clip + noise * scale).clamp_(0.0, 1.0)
