"""Spatial operations on a whole clip at once: kernel filtering and resizing.

A clip is a float tensor (n, c, h, w). Both operations treat every frame and channel the same
way, so one kernel or one resize applies identically to the whole clip (temporal coherence).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from star_vsr.errors import InputError


def filter_clip(clip: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every frame and channel of `clip` with the same 2-D `kernel`.

    Borders are reflect-padded; a frame smaller than the kernel's half-width (possible after a
    strong down-resize) is replicate-padded instead, since reflection needs more pixels than the
    pad. The output keeps the input size.

    Args:
        clip: (n, c, h, w) float tensor.
        kernel: (k, k) float tensor, k odd.

    Returns:
        (n, c, h, w) filtered clip, same dtype.
    """
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise InputError(
            f"Kernel must be square with an odd side, got shape {tuple(kernel.shape)}."
        )
    n, c, h, w = clip.shape
    pad = kernel.shape[0] // 2
    # All frames and channels as the channels of one image: a depthwise convolution with one
    # shared kernel is much faster on CPU than n * c single-channel images.
    planes = _padded_planes(clip, pad)  # (1, n c, h + 2 pad, w + 2 pad)
    # conv2d correlates; flipping the kernel makes it a true convolution.
    weight = torch.flip(kernel, dims=(0, 1)).to(clip.dtype)  # (k, k)
    weight = weight.expand(n * c, 1, *kernel.shape)  # (n c, 1, k, k)
    out = F.conv2d(planes, weight, groups=n * c)  # (1, n c, h, w)
    return out.reshape(n, c, h, w)


def filter_clip_separable(clip: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``filter_clip`` with the (k, k) kernel ``outer(kernel, kernel)`` of a symmetric (k,) ``kernel`` (a
    Gaussian), as a row pass and a column pass: 2k multiplications a pixel instead of k^2 (51 x 51 for USM)."""
    n, c, h, w = clip.shape
    k = len(kernel)
    planes = _padded_planes(clip, k // 2)  # (1, n c, h + 2 pad, w + 2 pad)
    weight = kernel.to(clip.dtype)
    rows = F.conv2d(planes, weight.view(1, 1, 1, k).expand(n * c, 1, 1, k), groups=n * c)  # (1, n c, h', w)
    out = F.conv2d(rows, weight.view(1, 1, k, 1).expand(n * c, 1, k, 1), groups=n * c)  # (1, n c, h, w)
    return out.reshape(n, c, h, w)


def _padded_planes(clip: torch.Tensor, pad: int) -> torch.Tensor:
    """``clip`` (n, c, h, w) as one image of n c channels (1, n c, h + 2 pad, w + 2 pad), reflect-padded, or
    replicate-padded where a frame is smaller than the pad (reflection needs more pixels than the pad)."""
    n, c, h, w = clip.shape
    mode = "reflect" if pad < min(h, w) else "replicate"
    return F.pad(clip, (pad, pad, pad, pad), mode=mode).reshape(1, n * c, h + 2 * pad, w + 2 * pad)


def resize_clip(clip: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize every frame of `clip` to `size` = (height, width) with one interpolation mode.

    `mode` is "area", "bilinear" or "bicubic" (half-pixel centres, no anti-aliasing, so
    down-sizing aliases as cheap cameras and scalers do). Bicubic may overshoot [0, 1]; callers
    clamp where it matters. A clip already at `size` is returned unchanged.

    Args:
        clip: (n, c, h, w) float tensor.
        size: Target (height, width) in pixels, each >= 1.
        mode: Interpolation mode.

    Returns:
        (n, c, size[0], size[1]) tensor.
    """
    if size[0] < 1 or size[1] < 1:
        raise InputError(f"Resize target {size} must be at least 1x1 pixels.")
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    if mode not in ("area", "bilinear", "bicubic"):
        raise InputError(f"Unknown resize mode {mode!r}; use area, bilinear or bicubic.")
    with one_thread():
        if mode == "area":
            return F.interpolate(clip, size=size, mode="area")
        return F.interpolate(clip, size=size, mode=mode, align_corners=False, antialias=False)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the block, for resizes whose result must not depend on the machine: torch's resize
    kernels differ in the last bit with the number of threads (how the rows are split across them; in float64
    too), and the Poisson noise and JPEG after a resize turn that into whole levels (`star-vsr degrade` on 2
    threads and on 1 gave clips up to 75 levels apart); a DataLoader's workers run on one thread, the main process
    on every core. A resize of a clip is milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
