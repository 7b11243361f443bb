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

import cv2
import torch

from star_vsr.degradations.filtering import filter_clip_separable

#: BasicSR's USM settings (``USMSharp(radius=50)``, ``forward(img, weight=0.5, threshold=10)``).
USM_RADIUS, USM_WEIGHT, USM_THRESHOLD = 50, 0.5, 10
#: Frames sharpened at once (each frame on its own: the same result, bounded memory).
FRAMES_AT_ONCE = 4


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
    kernel = torch.from_numpy(cv2.getGaussianKernel(size, 0, cv2.CV_64F)[:, 0])  # (size,): sigma 8 for 51
    out = []
    for start in range(0, len(clip), FRAMES_AT_ONCE):  # (frame by frame alike: a 32-frame 720p clip at once took
        frames = clip[start:start + FRAMES_AT_ONCE].float()  # 2.3 GB more at its peak in each data worker)
        residual = frames - filter_clip_separable(frames, kernel)  # (k, 3, H, W)
        soft_mask = filter_clip_separable((residual.abs() * 255 > threshold).float(), kernel)
        sharp = (frames + weight * residual).clamp(0, 1)
        out.append((soft_mask * sharp + (1 - soft_mask) * frames).clamp(0, 1))
    return torch.cat(out)
