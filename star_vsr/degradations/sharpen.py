"""Unsharp masking (USM) of the ground truth, as Real-ESRGAN and STAR train on it.

Real-ESRGAN (Wang et al. 2021, Sec. 4.1 "we sharpen the ground truth") and STAR's data code degrade the
*sharpened* HR clip and train against it, so the model learns to restore crisper detail than the
photographs hold. BasicSR's ``USMSharp``: with a Gaussian blur G (51 x 51, sigma 8, OpenCV's sigma for
that size) and the residual r = x - G * x,

    sharp = clip(x + w r, 0, 1),   mask = [255 |r| > threshold],   out = (G * mask) sharp + (1 - G * mask) x

(weight w = 0.5, threshold 10 levels): only edges and texture are sharpened, through a soft mask, and flat
areas keep their noise-free values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: BasicSR's USM settings (``USMSharp(radius=50)``, ``forward(img, weight=0.5, threshold=10)``).
USM_RADIUS, USM_WEIGHT, USM_THRESHOLD = 50, 0.5, 10
#: Frames sharpened at once (each frame on its own: the same result, bounded memory).
FRAMES_AT_ONCE = 4


def gaussian_1d(size: int) -> torch.Tensor:
    """(size,) float64 Gaussian, summing to 1, with OpenCV's sigma for a kernel of that size and sigma <= 0:
    0.3 ((size - 1) / 2 - 1) + 0.8 (8.0 for 51). (``cv2.getGaussianKernel`` takes fixed tables for sizes up to 9
    instead, 0.008 apart at most: the same from 11 up.)"""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def _separable_blur(clip: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``clip`` (n, c, h, w) convolved with the outer product of ``kernel`` (k,) with itself, as two 1-D passes:
    reflect padding (replicate where a frame is smaller than the pad, as ``filtering.filter_clip``)."""
    n, c, h, w = clip.shape
    pad = len(kernel) // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    planes = F.pad(clip.reshape(1, n * c, h, w), (pad, pad, pad, pad), mode=mode)  # (1, n c, h + 2 pad, w + 2 pad)
    weight = kernel.to(clip.dtype)
    rows = F.conv2d(planes, weight.view(1, 1, 1, -1).expand(n * c, 1, 1, len(kernel)), groups=n * c)  # (.., h+2p, w)
    out = F.conv2d(rows, weight.view(1, 1, -1, 1).expand(n * c, 1, len(kernel), 1), groups=n * c)  # (1, n c, h, w)
    return out.reshape(n, c, h, w)


def unsharp_mask(clip: torch.Tensor, weight: float = USM_WEIGHT, radius: int = USM_RADIUS,
                 threshold: float = USM_THRESHOLD) -> torch.Tensor:
    """The clip sharpened by BasicSR's masked unsharp masking (module docstring).

    Args:
        clip: (n, 3, H, W) float in [0, 1].
        weight: w, how much of the residual is added.
        radius: the blur's size, as BasicSR names it (made odd: 50 -> 51 pixels, as BasicSR does).
        threshold: residuals above this many 8-bit levels are sharpened.

    Returns:
        (n, 3, H, W) float32 in [0, 1].
    """
    size = radius + 1 if radius % 2 == 0 else radius
    kernel = gaussian_1d(size)
    out = []
    for start in range(0, len(clip), FRAMES_AT_ONCE):  # (frame by frame alike: a 32-frame 720p clip at once took
        frames = clip[start:start + FRAMES_AT_ONCE].float()  # 2.3 GB more at its peak in each data worker)
        residual = frames - _separable_blur(frames, kernel)  # (k, 3, H, W)
        soft_mask = _separable_blur((residual.abs() * 255 > threshold).float(), kernel)
        sharp = (frames + weight * residual).clamp(0, 1)
        out.append((soft_mask * sharp + (1 - soft_mask) * frames).clamp(0, 1))
    return torch.cat(out)
