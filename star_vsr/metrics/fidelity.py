"""Fidelity metrics against a ground truth: PSNR and SSIM, on the Y channel or on RGB.

Conventions (those of the SR literature and its MATLAB / BasicSR evaluation scripts):

- Frames are RGB, ``uint8`` in [0, 255] or float in [0, 1] (see :mod:`star_vsr.metrics.inputs`);
  both metrics are computed on the 8-bit scale, peak value 255, in ``float64``.
- ``channel="y"``: luma of ITU-R BT.601 with studio swing, as MATLAB's ``rgb2ycbcr``:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in [0, 255], so Y lies in
  [16, 235]. Y is **not** rounded to integers (MATLAB's ``rgb2ycbcr`` on ``uint8`` input rounds;
  BasicSR does not). Unrounded scores are higher: measured +0.004 to +0.017 dB PSNR-Y and about +0.001
  SSIM-Y for bicubic x4 on three scikit-image photos, +0.015 to +0.036 dB at x2, and far more near
  lossless (+0.15 / +0.54 / +1.7 dB for noise of sigma 4 / 2 / 1): compare with tables scored in
  MATLAB to a few hundredths of a dB at best.
- ``channel="rgb"``: PSNR over all three channels at once; SSIM per channel, then averaged.
- ``crop_border``: that many pixels are dropped on every side before anything is computed
  (the usual ``crop_border = scale``).
- SSIM is Wang et al. 2004 ("Image quality assessment: from error visibility to structural
  similarity", IEEE TIP, Eq. 13): an 11 x 11 Gaussian window with sigma 1.5, ``K1 = 0.01``,
  ``K2 = 0.03``, ``L = 255``, population (not sample) covariances, and the mean of the SSIM map
  over the positions where the whole window lies inside the (cropped) image. This equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``.
- Clip-level functions (``*_clip``) average the per-frame values over the frames.
"""

from __future__ import annotations

from typing import Callable, Literal

import cv2
import numpy as np
from tqdm.auto import tqdm

from star_vsr.errors import InputError
from star_vsr.metrics.inputs import (
    PIXEL_MAX_8BIT,
    check_frames,
    check_same_shape,
    to_float255,
)
from star_vsr.progress import bar_options

Channel = Literal["y", "rgb"]
CHANNELS: tuple[str, ...] = ("y", "rgb")

#: BT.601 studio-swing luma weights of MATLAB's ``rgb2ycbcr`` for R, G, B in [0, 1]
#: (219 x (0.299, 0.587, 0.114)); the result is in 8-bit units before the offset.
Y_WEIGHTS_BT601 = (65.481, 128.553, 24.966)
#: Offset of the studio-swing luma: black is Y = 16 and white is Y = 235 in 8-bit units.
Y_OFFSET_BT601 = 16.0

#: SSIM window side (Wang et al. 2004: 11 x 11 Gaussian window).
SSIM_WINDOW = 11
#: Standard deviation of the SSIM Gaussian window, in pixels.
SSIM_SIGMA = 1.5
#: SSIM stabilising constants: C1 = (K1 L)^2, C2 = (K2 L)^2 (Wang et al. 2004, Eq. 7 and 9).
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def rgb_to_y(frame: np.ndarray) -> np.ndarray:
    """BT.601 studio-swing luma of RGB pixels, as MATLAB's ``rgb2ycbcr(...)(:, :, 1)``.

    Args:
        frame: (..., 3) RGB, ``uint8`` in [0, 255] or float in [0, 1].

    Returns:
        (...) ``float64`` luma on the 8-bit scale, in [16, 235]; not rounded.

    Raises:
        InputError: not a numpy array of RGB pixels, or float values outside [0, 1] (a float frame in [0, 255]
            gave luma up to 55861).
    """
    ndim = frame.ndim if isinstance(frame, np.ndarray) and frame.ndim >= 1 else 3
    check_frames(frame, "frame", ndim=ndim)
    return _luma(frame)


def _luma(frame: np.ndarray) -> np.ndarray:
    """``rgb_to_y`` of a frame already checked."""
    rgb = to_float255(frame)  # (..., 3) in [0, 255]
    weights = np.asarray(Y_WEIGHTS_BT601, dtype=np.float64) / PIXEL_MAX_8BIT
    return rgb @ weights + Y_OFFSET_BT601


def _prepare_pair(
    pred: np.ndarray, gt: np.ndarray, crop_border: int, channel: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check one (h, w, 3) frame pair and return both as cropped float64 (h', w', c) arrays."""
    check_frames(pred, "pred", ndim=3)
    check_frames(gt, "gt", ndim=3)
    check_same_shape(pred, gt, "pred", "gt")
    if channel not in CHANNELS:
        raise InputError(f"channel must be one of {CHANNELS}, got {channel!r}.")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise InputError(f"crop_border must be an integer >= 0, got {crop_border!r}.")
    height, width = pred.shape[:2]
    if 2 * crop_border >= min(height, width):
        raise InputError(
            f"crop_border={crop_border} removes the whole {height}x{width} frame; "
            "use a smaller crop_border (usually the SR scale)."
        )
    if channel == "y":
        pred_c, gt_c = _luma(pred)[..., None], _luma(gt)[..., None]  # (h, w, 1)
    else:
        pred_c, gt_c = to_float255(pred), to_float255(gt)  # (h, w, 3)
    if crop_border > 0:
        inner = slice(crop_border, -crop_border)
        pred_c, gt_c = pred_c[inner, inner], gt_c[inner, inner]
    return pred_c, gt_c


def psnr(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, channel: Channel = "y") -> float:
    """Peak signal-to-noise ratio of one frame, in dB: ``10 log10(255^2 / MSE)``.

    Args:
        pred: (h, w, 3) RGB prediction, ``uint8`` in [0, 255] or float in [0, 1].
        gt: (h, w, 3) RGB ground truth, same shape (dtypes may differ).
        crop_border: pixels dropped on every side first (usually the SR scale).
        channel: ``"y"`` (BT.601 luma, the SR convention) or ``"rgb"`` (MSE over all channels).

    Returns:
        PSNR in dB; ``inf`` when the (cropped) frames are identical.

    Raises:
        InputError: bad shapes (naming both), dtypes, value ranges, crop or channel.
    """
    pred_c, gt_c = _prepare_pair(pred, gt, crop_border, channel)
    mse = float(np.mean((pred_c - gt_c) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(PIXEL_MAX_8BIT**2 / mse))


def _gaussian_window_mean(image: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local means (11 x 11, sigma 1.5), only where the window fits.

    Args:
        image: (h, w, c) float64.

    Returns:
        (h - 10, w - 10, c) float64: the 'valid' part of the separable Gaussian filtering.
    """
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)  # (11, 1), sums to 1
    radius = SSIM_WINDOW // 2
    filtered = cv2.sepFilter2D(image, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    filtered = filtered.reshape(image.shape)  # cv2 drops a trailing channel axis of size 1
    return filtered[radius:-radius, radius:-radius]


def _ssim_per_channel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean SSIM of each channel (Wang et al. 2004, Eq. 13) on the 8-bit scale.

    Args:
        x, y: (h, w, c) float64 in [0, 255], h and w at least ``SSIM_WINDOW``.

    Returns:
        (c,) float64 mean SSIM per channel.
    """
    c1 = (SSIM_K1 * PIXEL_MAX_8BIT) ** 2
    c2 = (SSIM_K2 * PIXEL_MAX_8BIT) ** 2
    mu_x = _gaussian_window_mean(x)  # (h', w', c)
    mu_y = _gaussian_window_mean(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    # population (co)variances under the Gaussian weights: E[xy] - E[x] E[y]
    sigma_xx = _gaussian_window_mean(x * x) - mu_xx
    sigma_yy = _gaussian_window_mean(y * y) - mu_yy
    sigma_xy = _gaussian_window_mean(x * y) - mu_xy
    # SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    # written with in-place updates to keep 720p frames fast
    numerator = 2.0 * mu_xy + c1
    numerator *= 2.0 * sigma_xy + c2
    denominator = mu_xx + mu_yy + c1
    sigma_xx += sigma_yy
    sigma_xx += c2
    denominator *= sigma_xx
    ssim_map = numerator / denominator  # (h', w', c)
    return ssim_map.mean(axis=(0, 1))


def ssim(pred: np.ndarray, gt: np.ndarray, crop_border: int = 0, channel: Channel = "y") -> float:
    """Structural similarity of one frame (Wang et al. 2004; see the module docstring).

    Args:
        pred: (h, w, 3) RGB prediction, ``uint8`` in [0, 255] or float in [0, 1].
        gt: (h, w, 3) RGB ground truth, same shape (dtypes may differ).
        crop_border: pixels dropped on every side first (usually the SR scale).
        channel: ``"y"`` (BT.601 luma) or ``"rgb"`` (SSIM per channel, averaged).

    Returns:
        Mean SSIM, at most 1 (identical frames).

    Raises:
        InputError: bad shapes (naming both), dtypes, value ranges, crop or channel, or a
            cropped frame smaller than the 11 x 11 window.
    """
    pred_c, gt_c = _prepare_pair(pred, gt, crop_border, channel)
    if min(pred_c.shape[:2]) < SSIM_WINDOW:
        raise InputError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping "
            f"crop_border={crop_border}; got {pred_c.shape[0]}x{pred_c.shape[1]}."
        )
    return float(np.mean(_ssim_per_channel(pred_c, gt_c)))


def _clip_mean(metric: Callable[[np.ndarray, np.ndarray, int, Channel], float], name: str,
               pred_frames: np.ndarray, gt_frames: np.ndarray, crop_border: int, channel: Channel,
               progress: bool) -> float:
    """Mean of ``metric(pred, gt, crop_border, channel)`` over the frame pairs of two (n, h, w, 3) clips."""
    check_frames(pred_frames, "pred_frames", ndim=4)
    check_frames(gt_frames, "gt_frames", ndim=4)
    check_same_shape(pred_frames, gt_frames, "pred_frames", "gt_frames")
    pairs = tqdm(zip(pred_frames, gt_frames), total=len(gt_frames), desc=name, disable=not progress, **bar_options())
    return float(np.mean([metric(pred, gt, crop_border, channel) for pred, gt in pairs]))


def psnr_clip(pred_frames: np.ndarray, gt_frames: np.ndarray, crop_border: int = 0, channel: Channel = "y",
              progress: bool = False) -> float:
    """Mean of the per-frame PSNR (dB) over a clip; see :func:`psnr`.

    Args:
        pred_frames: (n, h, w, 3) RGB, ``uint8`` in [0, 255] or float in [0, 1].
        gt_frames: (n, h, w, 3) ground truth, same shape.
        crop_border: pixels dropped on every side of every frame.
        channel: ``"y"`` or ``"rgb"``.
        progress: show a tqdm bar over frames.

    Returns:
        Average PSNR in dB (``inf`` if any frame pair is identical).
    """
    return _clip_mean(psnr, "PSNR", pred_frames, gt_frames, crop_border, channel, progress)


def ssim_clip(pred_frames: np.ndarray, gt_frames: np.ndarray, crop_border: int = 0, channel: Channel = "y",
              progress: bool = False) -> float:
    """Mean of the per-frame SSIM over a clip (arguments as :func:`psnr_clip`); see :func:`ssim`."""
    return _clip_mean(ssim, "SSIM", pred_frames, gt_frames, crop_border, channel, progress)
