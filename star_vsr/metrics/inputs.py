"""Checking and converting the frames that the metrics receive.

Every metric in :mod:`star_vsr.metrics` accepts frames the way the rest of star-vsr passes them
at I/O boundaries: RGB ``numpy`` arrays shaped (h, w, 3) for one frame or (n, h, w, 3) for a
clip, either

- ``uint8`` with values in [0, 255], or
- floating point (``float16``/``float32``/``float64``) with values in **[0, 1]**; a float frame
  with values outside [0, 1] is refused (it is almost always a [0, 255] float or an
  unclamped model output: clamp it or convert it to ``uint8`` first).

Nothing is rounded: a float frame ``x`` is compared as ``255 * x``, so the metrics of a float
frame and of its exact ``uint8`` quantisation against a third frame agree (in float64; in float32 to
about 1e-7 dB; float16 cannot hold k / 255 exactly: about 0.01 dB of PSNR off on a photo). Against each
other they are not identical outside float64: a float32 frame scores about 160 dB of PSNR-Y against its
own quantisation, not inf.
"""

from __future__ import annotations

import numpy as np

from star_vsr.errors import InputError

#: Peak value of the 8-bit scale that PSNR/SSIM are computed on (SR papers' convention).
PIXEL_MAX_8BIT = 255.0


def check_frames(frames: np.ndarray, name: str, ndim: int) -> None:
    """Check that ``frames`` is an RGB frame (``ndim=3``) or clip (``ndim=4``) in a known range.

    Raises:
        InputError: not a numpy array, wrong rank, not 3 channels, empty, unsupported dtype, or
            floats outside [0, 1] / not finite.
    """
    layout = {3: "(h, w, 3)", 4: "(n, h, w, 3)"}.get(ndim, "(..., 3)")
    if not isinstance(frames, np.ndarray):
        raise InputError(f"{name} must be a numpy array shaped {layout}, got {type(frames).__name__}.")
    if frames.ndim != ndim or frames.shape[-1] != 3:
        raise InputError(f"{name} must be RGB shaped {layout}, got shape {tuple(frames.shape)}.")
    if frames.size == 0:
        raise InputError(f"{name} is empty (shape {tuple(frames.shape)}).")
    if frames.dtype == np.uint8:
        return
    if not np.issubdtype(frames.dtype, np.floating):
        raise InputError(
            f"{name} has dtype {frames.dtype}; use uint8 in [0, 255] or float in [0, 1]."
        )
    low, high = float(np.min(frames)), float(np.max(frames))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > 1.0:
        raise InputError(
            f"{name} is float with values in [{low:.4g}, {high:.4g}]; float frames must lie in "
            "[0, 1] (clamp them, or pass uint8 frames in [0, 255])."
        )


def check_same_shape(pred: np.ndarray, gt: np.ndarray, pred_name: str, gt_name: str) -> None:
    """Raise :class:`InputError` naming both shapes when ``pred`` and ``gt`` differ in shape."""
    if pred.shape != gt.shape:
        raise InputError(
            f"{pred_name} has shape {tuple(pred.shape)} but {gt_name} has shape "
            f"{tuple(gt.shape)}; they must match (crop or resize one of them)."
        )


def to_float255(frames: np.ndarray) -> np.ndarray:
    """Return ``frames`` as ``float64`` on the 8-bit scale [0, 255] (uint8 as is, floats x255)."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float64)
    return frames.astype(np.float64) * PIXEL_MAX_8BIT


def to_float01(frames: np.ndarray) -> np.ndarray:
    """Return ``frames`` as ``float32`` in [0, 1] (uint8 divided by 255, floats as they are)."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / np.float32(PIXEL_MAX_8BIT)
    return frames.astype(np.float32)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Return ``frames`` as ``uint8``: uint8 as is, [0, 1] floats scaled by 255 and rounded (floats out of range
    wrap around: check them first, ``check_frames``)."""
    if frames.dtype == np.uint8:
        return frames
    return np.rint(frames.astype(np.float64) * PIXEL_MAX_8BIT).astype(np.uint8)
