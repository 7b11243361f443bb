"""Conversions between clip tensors and 8-bit frame stacks.

Clip tensors are float (n, 3, h, w) in [0, 1]; frame stacks are `numpy.uint8` (n, h, w, 3) RGB,
the format of the JPEG and video-codec stages and of star-vsr's I/O boundaries.
"""

from __future__ import annotations

import numpy as np
import torch

from ..frames import frames_to_uint8

EIGHT_BIT_MAX = 255.0
"""Largest 8-bit level."""


def quantize(clip: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the nearest 8-bit level; same shape and dtype."""
    return (clip * EIGHT_BIT_MAX).round_().clamp_(0.0, EIGHT_BIT_MAX) / EIGHT_BIT_MAX


def clip_to_frames(clip: torch.Tensor) -> np.ndarray:
    """(n, 3, h, w) float tensor in [0, 1] -> (n, h, w, 3) uint8 frames (rounded, clamped): the conversion
    the pipelines' outputs take to video, ``star_vsr.frames.frames_to_uint8``."""
    return frames_to_uint8(clip)


def frames_to_clip(frames: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, h, w, 3) uint8 frames -> (n, 3, h, w) float tensor in [0, 1]."""
    levels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (n, 3, h, w)
    return levels.to(dtype) / EIGHT_BIT_MAX
