"""Dynamic frequency loss of STAR (Xie et al. 2025, Sec. 3.3), with a spatial-frequency split.

STAR adds to the v-prediction loss a term on the *decoded* clean-video estimate
``x0_hat = alpha_t x_t - sigma_t v_hat`` that first stresses low spatial frequencies (structure)
at large timesteps and high frequencies (detail) at small ones:

    L     = L_v + b(t) * L_DF                                            (paper Eq. 7)
    L_DF  = c(t) * L_low + (1 - c(t)) * L_high                           (paper Eq. 6)
    c(t)  = (t / t_max) ** alpha          (alpha = 2 is the paper's best, Table 5)
    b(t)  = beta * (1 - t / t_max)        (beta = 1)

``L_low`` / ``L_high`` compare the low / high spatial-frequency bands of the prediction and of
the ground truth. The bands come from an *ideal radial low-pass filter in the 2-D DFT* of each
frame (see :meth:`DynamicFrequencyLoss.bands`): a Fourier coefficient at frequency
``(f_y, f_x)`` (cycles per pixel, each in [-1/2, 1/2)) belongs to the low band when its radius
``rho = sqrt(f_y^2 + f_x^2)`` is at most ``cutoff``. The default cutoff, 1/8 cycle per pixel,
is the Nyquist frequency of a x4 low-resolution frame measured in high-resolution pixels
(``0.5 / scale``): the low band holds what the LR input can represent, the high band what the
model must synthesise. The two bands are real images that sum to the input.

Two defects of STAR's released training code are fixed here: its "low" mask was built from the
coefficient *magnitude*, not the frequency (a soft mask ``sigmoid(10 (q - |F|))`` with ``q`` the 80th
percentile of ``|F|``: the 80 % smallest coefficients count as "low", the largest 20 % as "high"; on
natural images the largest coefficients are the low frequencies, DC included, so the two bands come out
mostly swapped), and its term carried an undocumented extra factor 0.01. This module weighs the term
exactly as the equations above.
(The third defect, a decode under ``torch.no_grad()``, is the caller's business; see
``star_vsr.losses.objective``.)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from star_vsr.errors import InputError, check_whole_number

#: Default t_max: the largest training timestep of STAR's 1000-step schedule.
DEFAULT_T_MAX = 999
#: Paper's best exponent of c(t) (Table 5).
DEFAULT_ALPHA = 2.0
#: Paper's weight of the frequency term.
DEFAULT_BETA = 1.0
#: Default low-pass cutoff in cycles per pixel: Nyquist of a x4 LR frame in HR pixels, 0.5 / 4.
DEFAULT_CUTOFF = 0.5 / 4
#: Largest meaningful cutoff: the corner of the DFT, sqrt(0.5^2 + 0.5^2) cycles per pixel.
MAX_CUTOFF = 0.5 * 2 ** 0.5

Distance = Literal["l1", "l2"]
DISTANCES: tuple[str, ...] = ("l1", "l2")


def radial_frequency(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Radius ``rho = sqrt(f_y^2 + f_x^2)`` in cycles per pixel of every coefficient of ``rfft2``.

    Returns:
        (height, width // 2 + 1) float32 tensor, laid out like ``torch.fft.rfft2``'s output
        (``f_y = fftfreq(height)``, ``f_x = rfftfreq(width)``).
    """
    f_y = torch.fft.fftfreq(height, device=device)  # (h,) cycles / pixel in [-0.5, 0.5)
    f_x = torch.fft.rfftfreq(width, device=device)  # (w // 2 + 1,) in [0, 0.5]
    return torch.sqrt(f_y[:, None] ** 2 + f_x[None, :] ** 2)  # (h, w // 2 + 1)


def radial_low_pass_mask(height: int, width: int, cutoff: float,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Ideal radial low-pass mask in the ``rfft2`` layout: 1 where ``rho <= cutoff``, else 0.

    Returns:
        (height, width // 2 + 1) float32 tensor of zeros and ones.
    """
    return (radial_frequency(height, width, device) <= cutoff).float()


@dataclass
class DynamicFrequencyTerms:
    """Parts of the dynamic frequency loss for one batch.

    Args:
        loss: ``mean_b[ b(t) * (c(t) * L_low + (1 - c(t)) * L_high) ]``, a scalar.
        loss_low: ``L_low`` per sample, (b,).
        loss_high: ``L_high`` per sample, (b,).
        c_t: band balance per sample, (b,).
        b_t: weight of the term per sample, (b,).
    """

    loss: torch.Tensor
    loss_low: torch.Tensor
    loss_high: torch.Tensor
    c_t: torch.Tensor
    b_t: torch.Tensor


class DynamicFrequencyLoss(nn.Module):
    r"""``b(t) * L_DF``: STAR's timestep-aware loss on the low and high spatial-frequency bands.

    Parameters:
        alpha (`float`, defaults to 2.0): exponent of ``c(t) = (t / t_max) ** alpha``.
        beta (`float`, defaults to 1.0): scale of ``b(t) = beta * (1 - t / t_max)``.
        t_max (`int`, defaults to 999): largest timestep; ``t`` is clamped to [0, t_max].
        cutoff (`float`, defaults to 0.125): radius of the radial low-pass filter in cycles per
            pixel (0 < cutoff <= sqrt(2) / 2); use ``0.5 / scale`` for a x``scale`` model.
        distance (`str`, defaults to `"l1"`): ``"l1"`` (mean absolute difference of the band
            images) or ``"l2"`` (mean squared difference). STAR's code instead takes the L1 of the masked
            FFT coefficients times 0.01, which grows with sqrt(h w): the band images, as in the paper's
            equations, keep the term's weight against the v-loss independent of the frame size.

    ``forward(pred, target, timesteps)`` takes decoded frames (b, n, c, h, w) in any fixed range
    (the training script passes the VAE's [-1, 1]) and the diffusion timesteps (b,), and returns
    the weighted scalar term.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA, t_max: int = DEFAULT_T_MAX,
                 cutoff: float = DEFAULT_CUTOFF, distance: Distance = "l1") -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta)):  # NaN made every loss NaN
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        check_whole_number("t_max", t_max, 1)  # 1.9 was truncated to 1
        if not isinstance(cutoff, numbers.Real):  # a string was a TypeError from the comparison below
            raise InputError(f"cutoff must be a number of cycles per pixel, got {cutoff!r}")
        if not 0 < cutoff <= MAX_CUTOFF:
            raise InputError(f"cutoff must be in (0, {MAX_CUTOFF:.4f}] cycles per pixel, got {cutoff}")
        if distance not in DISTANCES:
            raise InputError(f"distance must be one of {DISTANCES}, got {distance!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.t_max = int(t_max)
        self.cutoff = float(cutoff)
        self.distance = distance

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, t_max={self.t_max}, cutoff={self.cutoff}, "
                f"distance={self.distance!r}")

    # ------------------------------------------------------------------ schedules
    def _fraction(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timesteps.float().clamp(0, self.t_max) / self.t_max  # t / t_max in [0, 1]

    def c_t(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Band balance ``c(t) = (t / t_max) ** alpha``: 0 (all high band) at t = 0, 1 at t_max."""
        return self._fraction(timesteps) ** self.alpha

    def b_t(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Term weight ``b(t) = beta * (1 - t / t_max)``: beta at t = 0, 0 at t_max."""
        return self.beta * (1.0 - self._fraction(timesteps))

    # ------------------------------------------------------------------ bands
    def bands(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split frames into their low and high spatial-frequency parts.

        ``low = irfft2(rfft2(x) * M)`` with the radial mask ``M`` of ``radial_low_pass_mask``,
        ``high = x - low``. Each frame (last two dimensions) is transformed on its own, so the
        DFT treats it as periodic; computed in float32.

        Args:
            x: (..., h, w) real tensor, e.g. frames (b, n, c, h, w).

        Returns:
            ``(low, high)``, each shaped like ``x`` (float32), with ``low + high == x``.
        """
        if x.ndim < 2:
            raise InputError(f"bands needs at least (h, w) dimensions, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = x.float()
        mask = radial_low_pass_mask(h, w, self.cutoff, device=x.device)  # (h, w // 2 + 1)
        low = torch.fft.irfft2(torch.fft.rfft2(x) * mask, s=(h, w))  # (..., h, w)
        return low, x - low

    def _distance(self, diff: torch.Tensor) -> torch.Tensor:
        # diff: (b, ...) -> (b,)
        per_element = diff.abs() if self.distance == "l1" else diff.square()
        return per_element.flatten(1).mean(dim=1)

    # ------------------------------------------------------------------ loss
    def terms(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> DynamicFrequencyTerms:
        """All parts of the loss (see ``DynamicFrequencyTerms``).

        Args:
            pred: decoded prediction, (b, n, c, h, w) (any shape with the batch first and (h, w) last).
            target: ground-truth frames, same shape and range as ``pred``.
            timesteps: (b,) diffusion timesteps of the samples.
        """
        if pred.shape != target.shape:
            raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
        if not isinstance(timesteps, torch.Tensor):  # a list was an AttributeError
            raise InputError(f"timesteps must be a torch.Tensor shaped ({pred.shape[0]},), got "
                             f"{type(timesteps).__name__}")
        if timesteps.ndim != 1 or timesteps.shape[0] != pred.shape[0]:
            raise InputError(f"timesteps must be shaped ({pred.shape[0]},), got {tuple(timesteps.shape)}")
        # the DFT is linear: the bands of (pred - target) are the differences of the bands
        low_diff, high_diff = self.bands(pred.float() - target.float())  # (b, ...)
        loss_low = self._distance(low_diff)  # (b,)
        loss_high = self._distance(high_diff)  # (b,)
        c_t = self.c_t(timesteps).to(loss_low.device)  # (b,)
        b_t = self.b_t(timesteps).to(loss_low.device)  # (b,)
        loss = (b_t * (c_t * loss_low + (1.0 - c_t) * loss_high)).mean()
        return DynamicFrequencyTerms(loss=loss, loss_low=loss_low, loss_high=loss_high, c_t=c_t, b_t=b_t)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``mean_b[ b(t) * L_DF ]`` for decoded frames (b, n, c, h, w) and timesteps (b,)."""
        return self.terms(pred, target, timesteps).loss
