"""Scene-cut detection for the recurrent student.

The student carries a state from frame to frame (``StarStudentState``): features and a temporally
filtered frame, warped to each new frame by optical flow. Across a hard cut the flow is meaningless
and the old scene's state bleeds into the new one. With the shipped student carrying its state through a
cut (6 frames of ``photo_clip("coffee")`` then 6 of ``photo_clip("rocket")``, 48x72 LR, x4), the frames
after the cut differed from the same frames upscaled as a video of their own by a mean absolute error
of 21.0, 8.8, 3.7, 1.7, 0.8, 0.4 (8-bit levels, frames 1 to 6 after the cut): a ghost of the old scene
fading over several frames. ``StarStudentPipeline`` therefore starts from a fresh state (zeros, as at
the start of a video) at every frame this module calls a cut, which makes that error 0.

The test is the mean absolute frame difference (MAFD, as FFmpeg's ``scdet`` filter scores frames) of
luma thumbnails: both LR frames are turned into BT.601 luma and averaged down to
``THUMBNAIL_SIZE`` x ``THUMBNAIL_SIZE`` (which removes noise and most of the camera motion), and a
cut is a difference above ``SCENE_CUT_THRESHOLD``. On the evaluation set (24 clips of 10 frames, 40x40
LR, camera motion) consecutive frames of a clip differ by at most 0.063 (median 0.029); the first frames
of two different clips differ by 0.243 (median over 276 pairs; 5 % below 0.066, mostly two views of the
same photograph). A missed cut costs what it did before this test (a few frames of ghosting); a false
one costs a few frames of temporal filtering while the state rebuilds.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
import torch.nn.functional as F

from .errors import InputError

#: Consecutive LR frames whose luma thumbnails differ by more than this (mean absolute difference,
#: pixel values in [0, 1]) are a scene cut.
SCENE_CUT_THRESHOLD = 0.1
#: Side of the luma thumbnails compared.
THUMBNAIL_SIZE = 32
#: BT.601 luma weights of R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check_frames(frames: torch.Tensor, what: str, count: Optional[int] = None) -> None:
    """``InputError`` unless ``frames`` is a float (k, 3, h, w) tensor (of ``count`` frames): uint8 frames were
    judged on 0..255 (a one-level change, a cut), other shapes failed deep in ``einsum`` or ``cat``. Values are
    not scanned (the student's per-chunk path; its frames are checked where they come in)."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3 or (
            count is not None and frames.shape[0] != count):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(f"{what} must be {'(k' if count is None else f'({count}'}, 3, h, w) RGB frames, got {shape}")
    if not frames.is_floating_point():
        raise InputError(f"{what} must be float in [0, 1], got {frames.dtype}")


def luma_thumbnails(frames: torch.Tensor) -> torch.Tensor:
    """(k, 3, h, w) RGB in [0, 1] -> (k, THUMBNAIL_SIZE, THUMBNAIL_SIZE) float32 BT.601 luma, area-averaged."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32, device=frames.device)
    luma = torch.einsum("kchw,c->khw", frames.float(), weights)  # (k, h, w)
    return F.adaptive_avg_pool2d(luma[:, None], THUMBNAIL_SIZE)[:, 0]


def frame_differences(frames: torch.Tensor, previous: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MAFD of each frame of ``frames`` (k, 3, h, w) and the frame before it: (k,) float32.

    ``previous`` (1, 3, h, w) is the frame before ``frames[0]``; without one the first difference is 0
    (not a cut: at the start of a video the state is fresh anyway; ``StarStudentPipeline`` fed the rest of a
    stream with a saved state passes the frame that state kept, ``StarStudentState.last_lr_frame``).
    """
    _check_frames(frames, "frames")
    if previous is not None:
        _check_frames(previous, "previous", count=1)
        if previous.shape[2:] != frames.shape[2:]:
            raise InputError(f"previous is {previous.shape[3]}x{previous.shape[2]}, frames {frames.shape[3]}x"
                             f"{frames.shape[2]}; the frame before them has their size")
    if len(frames) == 0:
        return torch.zeros(0, device=frames.device)
    thumbs = luma_thumbnails(frames if previous is None else torch.cat([previous, frames]))  # (k or k+1, s, s)
    differences = (thumbs[1:] - thumbs[:-1]).abs().mean(dim=(1, 2))
    if previous is None:
        differences = torch.cat([differences.new_zeros(1), differences])
    return differences


def scene_cuts(frames: torch.Tensor, previous: Optional[torch.Tensor] = None,
               threshold: float = SCENE_CUT_THRESHOLD) -> list[bool]:
    """Whether each frame of ``frames`` (k, 3, h, w) starts a new scene (see ``frame_differences``).

    One host transfer per call, so that a GPU stream synchronises once per chunk, not once per frame.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not math.isfinite(threshold) \
            or threshold < 0:
        raise InputError(f"threshold must be a number >= 0 (a mean absolute difference of [0, 1] luma), got "
                         f"{threshold!r}")
    return (frame_differences(frames, previous) > threshold).tolist()
