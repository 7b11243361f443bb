"""Blur kernels of the real-world degradation model (Real-ESRGAN, Wang et al. 2021, Sec. 3.1).

All kernels are square, odd-sized, centred and normalised to sum to 1. For a pixel offset
``C = (x, y)`` from the centre and the covariance ``Sigma = R(theta) diag(sigma_x^2, sigma_y^2)
R(theta)^T`` the families are, with ``q = C^T Sigma^-1 C``:

- Gaussian:             ``k = exp(-q / 2) / N``
- generalized Gaussian: ``k = exp(-q^beta / 2) / N``   (Liu et al., heavier tails for beta < 1)
- plateau:              ``k = 1 / (1 + q^beta) / N``
- 2-D sinc (circular low-pass with cutoff omega_c, radius r = |C|):
  ``k = omega_c / (2 pi r) * J1(omega_c r) / N``, with ``omega_c^2 / (4 pi)`` at r = 0,
  where J1 is the Bessel function of the first kind, order 1 (paper Sec. 3.3).

Isotropic kinds use ``sigma_y = sigma_x`` and ``theta = 0``. Every kernel here is point-symmetric
(``k(C) = k(-C)``), so convolution and correlation with it are the same operation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from star_vsr.degradations.config import KERNEL_TYPES
from star_vsr.errors import InputError, check_whole_number

SINC_KIND = "sinc"
"""`KernelSpec.kind` of a 2-D sinc kernel (the blur families are `config.KERNEL_TYPES`)."""


@dataclass(frozen=True)
class KernelSpec:
    """Everything that defines one kernel; `build()` turns it into a tensor.

    Small and printable, so a clip's degradation parameters can be logged.

    Parameters:
        kind: One of `config.KERNEL_TYPES` or `SINC_KIND`.
        size: Odd side length in pixels.
        sigma_x: Standard deviation along the first principal axis, pixels (None for sinc).
        sigma_y: Standard deviation along the second principal axis, pixels (None for sinc).
        theta: Rotation of the principal axes, radians (None for sinc).
        beta: Shape exponent of generalized Gaussian and plateau kernels (None otherwise).
        cutoff: Cutoff frequency omega_c of a sinc kernel, radians per pixel (None otherwise).
    """

    kind: str
    size: int
    sigma_x: float | None = None
    sigma_y: float | None = None
    theta: float | None = None
    beta: float | None = None
    cutoff: float | None = None

    def __post_init__(self) -> None:
        """``InputError`` for a spec ``build`` cannot make a kernel of, naming the field: a NaN sigma, theta or beta
        (hand-edited ``--print-params`` values) gave a flat, near-black clip without an error, a missing sigma a
        TypeError."""
        if self.kind not in (SINC_KIND, *KERNEL_TYPES):
            raise InputError(f"Unknown kernel kind {self.kind!r}; use {SINC_KIND} or one of {', '.join(KERNEL_TYPES)}.")
        check_whole_number("KernelSpec.size", self.size, 1)
        fields = ("cutoff",) if self.kind == SINC_KIND else (
            ("sigma_x", "sigma_y", "theta") + (("beta",) if self.kind.startswith(("generalized", "plateau")) else ()))
        for name in fields:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                article = "an" if self.kind[0] in "aeiou" else "a"
                raise InputError(f"KernelSpec.{name} of {article} {self.kind} kernel must be a finite number, got "
                                 f"{value!r}")

    def build(self) -> torch.Tensor:
        """Return the kernel, float32 of shape (size, size), summing to 1."""
        if self.kind == SINC_KIND:
            return sinc_kernel(self.size, self.cutoff)
        if self.kind in ("iso", "aniso"):
            return gaussian_kernel(self.size, self.sigma_x, self.sigma_y, self.theta)
        if self.kind in ("generalized_iso", "generalized_aniso"):
            return generalized_gaussian_kernel(
                self.size, self.sigma_x, self.sigma_y, self.theta, self.beta
            )
        return plateau_kernel(self.size, self.sigma_x, self.sigma_y, self.theta, self.beta)  # (kinds checked)


def _offsets(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets (x, y) from the kernel centre, float64, each (size, size)."""
    if size < 1 or size % 2 == 0:
        raise InputError(f"Kernel size {size} must be a positive odd integer.")
    axis = torch.arange(size, dtype=torch.float64) - size // 2  # (size,)
    y, x = torch.meshgrid(axis, axis, indexing="ij")  # (size, size) each
    return x, y


def mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """``q = C^T Sigma^-1 C`` on the kernel grid, float64 (size, size).

    ``Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T``; sigmas in pixels, theta in radians.
    """
    if sigma_x <= 0 or sigma_y <= 0:
        raise InputError(f"Kernel sigmas must be > 0, got ({sigma_x}, {sigma_y}).")
    x, y = _offsets(size)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * x + sin * y  # offset along the first principal axis, (size, size)
    v = -sin * x + cos * y  # offset along the second principal axis, (size, size)
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(kernel: torch.Tensor) -> torch.Tensor:
    return (kernel / kernel.sum()).to(torch.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """Anisotropic Gaussian ``exp(-q / 2) / N``, float32 (size, size)."""
    return _normalised(torch.exp(-0.5 * mahalanobis_sq(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """Generalized Gaussian ``exp(-q^beta / 2) / N``, float32 (size, size); beta > 0."""
    if beta <= 0:
        raise InputError(f"Generalized Gaussian beta must be > 0, got {beta}.")
    q = mahalanobis_sq(size, sigma_x, sigma_y, theta)
    return _normalised(torch.exp(-0.5 * q**beta))


def plateau_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float, beta: float
) -> torch.Tensor:
    """Plateau-shaped ``1 / (1 + q^beta) / N``, float32 (size, size); beta > 0."""
    if beta <= 0:
        raise InputError(f"Plateau beta must be > 0, got {beta}.")
    q = mahalanobis_sq(size, sigma_x, sigma_y, theta)
    return _normalised(1.0 / (1.0 + q**beta))


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """2-D sinc (ideal circular low-pass) ``omega_c J1(omega_c r) / (2 pi r) / N``, float32.

    Args:
        size: Odd side in pixels.
        cutoff: omega_c in radians per pixel, 0 < omega_c <= pi (pi keeps everything up to Nyquist).

    Returns:
        (size, size) kernel summing to 1; it has negative side lobes (ringing).
    """
    if not 0 < cutoff <= math.pi:
        raise InputError(f"Sinc cutoff must be in (0, pi] radians per pixel, got {cutoff}.")
    x, y = _offsets(size)
    r = torch.sqrt(x**2 + y**2)  # (size, size)
    # The formula divided by omega_c^2 (N absorbs it): J1(z) / (2 pi z) with z = omega_c r, whose
    # limit at z = 0 is 1 / (4 pi). Without the division a tiny cutoff underflows to 0 / 0.
    z = cutoff * r
    centre = torch.full_like(r, 1 / (4 * math.pi))
    safe_z = torch.where(z > 0, z, torch.ones_like(z))
    ring = torch.special.bessel_j1(safe_z) / (2 * math.pi * safe_z)
    return _normalised(torch.where(z > 0, ring, centre))
