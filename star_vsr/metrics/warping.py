"""Temporal consistency: the warping error E*warp of Lai et al., ECCV 2018.

"Learning Blind Video Temporal Consistency" (Lai, Huang, Wang, Shechtman, Yumer, Yang), Eq. 8:

    E_warp(V_t, V_t+1) = 1 / sum_i M_t(i) * sum_i M_t(i) ||V_t(i) - W(V_t+1)(i)||^2
    E_warp(V) = 1 / (T - 1) * sum_{t=1}^{T-1} E_warp(V_t, V_t+1)

where ``W(V_t+1)`` is frame t+1 warped to frame t with the optical flow t -> t+1 and ``M_t`` the
non-occlusion mask of frame t. As in the authors' released evaluation, the squared error is the
mean over the three RGB channels of [0, 1] frames, and a pair without any unoccluded pixel adds
0. Papers report ``E*warp`` multiplied by 1e3 (the "x 10^-3" of STAR's tables); so does
:func:`warping_error`.

Our choices where the paper left the tools open (Lai et al. used FlowNet2):

- Optical flow: OpenCV's DIS (Kroeger et al., ECCV 2016) with the ``MEDIUM`` preset, on 8-bit
  grayscale frames. ``MEDIUM`` is the most accurate of the three presets that still runs at a
  few tenths of a second per 720p pair on one CPU core; ``FAST``/``ULTRAFAST`` miss fine motion.
- Warping: bilinear sampling of frame t+1 at ``x + F_t->t+1(x)``.
- Non-occlusion mask: the forward-backward consistency test of Sundaram, Brox & Keutzer
  ("Dense point trajectories by GPU-accelerated large displacement optical flow", ECCV 2010),
  which Lai et al.'s code uses with the same thresholds. With ``w = F_t->t+1(x)`` and
  ``w_b = F_t+1->t(x + w)`` (the backward flow sampled where x lands), x is occluded when

      |w + w_b|^2 > FB_ALPHA1 * (|w|^2 + |w_b|^2) + FB_ALPHA2            (alpha1 = 0.01, alpha2 = 0.5)

  or lies on a motion boundary,

      |grad u|^2 + |grad v|^2 > MB_ALPHA1 * |w|^2 + MB_ALPHA2          (0.01 and 0.002)

  (forward differences), or when ``x + w`` falls outside frame t+1.

  The last test is ours, not Lai et al.'s: their released evaluation warps with FlowNet2's ``Resample2d``,
  which reads a position outside frame t+1 from its border pixels, and keeps such pixels in the mask. Under
  camera motion the strip that leaves the frame then compares frame t with repeated border pixels, an error
  that is not temporal inconsistency: a clean 96x96 clip panning 4 x 3 pixels per frame scores 0.04 here
  and 1.49 with the border kept (the same flows; 1.46 against 2.85 with +-5 levels of flicker added). So
  E*warp here is lower than the released code gives on moving clips; with DIS in place of FlowNet2 the
  absolute values are not comparable with published tables anyway, only between methods scored here.
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm.auto import tqdm

from star_vsr.errors import InputError
from star_vsr.metrics.inputs import check_frames, check_same_shape, to_float01, to_uint8
from star_vsr.progress import bar_options

#: OpenCV DIS preset used for every flow (see the module docstring for why MEDIUM).
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
#: Smallest frame height and width DIS estimates a flow on: under 12 on a side is a ``cv2.error``, and OpenCV 5.1
#: crashes the process (segfault) on frames 12-15 pixels high and about 40 or more wide (probed up to 2000).
MIN_FLOW_HEIGHT, MIN_FLOW_WIDTH = 16, 12
#: Forward-backward consistency thresholds of Sundaram et al. 2010 (relative, absolute px^2).
FB_ALPHA1 = 0.01
FB_ALPHA2 = 0.5
#: Motion-boundary thresholds of Sundaram et al. 2010 (relative, absolute).
MB_ALPHA1 = 0.01
MB_ALPHA2 = 0.002
#: Papers report E*warp in units of 1e-3.
EWARP_REPORT_SCALE = 1e3


def _gray_uint8(frame: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB uint8 or [0, 1] float -> (h, w) uint8 luma for DIS."""
    return cv2.cvtColor(to_uint8(frame), cv2.COLOR_RGB2GRAY)


def _check_flow_size(height: int, width: int, what: str) -> None:
    """``InputError`` for frames too small for DIS (``MIN_FLOW_HEIGHT``: OpenCV's error, or its segfault)."""
    if height < MIN_FLOW_HEIGHT or width < MIN_FLOW_WIDTH:
        raise InputError(f"{what} needs frames at least {MIN_FLOW_HEIGHT} pixels high and {MIN_FLOW_WIDTH} wide for "
                         f"its optical flow, got {width}x{height}.")


def estimate_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense optical flow from ``source`` to ``target`` with OpenCV DIS (``DIS_PRESET``).

    Args:
        source, target: (h, w, 3) RGB frames of one shape, ``uint8`` or float in [0, 1], at least
            ``MIN_FLOW_HEIGHT`` x ``MIN_FLOW_WIDTH`` pixels.

    Returns:
        (h, w, 2) float32 flow ``F`` in pixels, (dx, dy), with ``source(x) ~ target(x + F(x))``.

    Raises:
        InputError: a bad frame array (floats in [0, 255] were wrapped into garbage), frames of two shapes, or
            too small (OpenCV's traceback, or a crash of the process).
    """
    check_frames(source, "source", ndim=3)
    check_frames(target, "target", ndim=3)
    check_same_shape(source, target, "source", "target")
    _check_flow_size(source.shape[0], source.shape[1], "The optical flow")
    return _dis_flow(source, target)


def _dis_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``estimate_flow`` of frames already checked."""
    dis = cv2.DISOpticalFlow_create(DIS_PRESET)
    return dis.calc(_gray_uint8(source), _gray_uint8(target), None)


def _sampling_maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling coordinates ``x + F(x)`` as two (h, w) float32 maps for cv2.remap."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )  # (h, w) each
    return grid_x + flow[..., 0], grid_y + flow[..., 1]


def warp_frame(frame: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp ``frame`` with ``flow``: ``out(x) = frame(x + flow(x))``, bilinear.

    Args:
        frame: (h, w, c) float32 image (any range) or (h, w, 2) flow field.
        flow: (h, w, 2) float32 flow, (dx, dy) in pixels.

    Returns:
        ``(warped, inside)``: (h, w, c) float32 warped frame (zeros where sampling left the
        frame) and (h, w) bool, True where ``x + flow(x)`` lies inside the frame.
    """
    height, width = flow.shape[:2]
    map_x, map_y = _sampling_maps(flow)
    warped = cv2.remap(
        frame, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    ).reshape(frame.shape)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    return warped, inside


def non_occlusion_mask(flow_forward: np.ndarray, flow_backward: np.ndarray) -> np.ndarray:
    """Pixels of frame t that are visible in frame t+1 (Sundaram et al. 2010; module docstring).

    Args:
        flow_forward: (h, w, 2) flow t -> t+1.
        flow_backward: (h, w, 2) flow t+1 -> t.

    Returns:
        (h, w) bool, True where the forward and backward flows agree, the pixel is not on a
        motion boundary and its match lies inside frame t+1.
    """
    backward_at_match, inside = warp_frame(flow_backward, flow_forward)  # (h, w, 2), (h, w)
    round_trip = np.sum((flow_forward + backward_at_match) ** 2, axis=-1)  # (h, w)
    forward_sq = np.sum(flow_forward**2, axis=-1)
    backward_sq = np.sum(backward_at_match**2, axis=-1)
    inconsistent = round_trip > FB_ALPHA1 * (forward_sq + backward_sq) + FB_ALPHA2

    gradient_sq = np.zeros(forward_sq.shape, dtype=np.float32)  # |grad u|^2 + |grad v|^2
    gradient_sq[:, :-1] += np.sum(np.diff(flow_forward, axis=1) ** 2, axis=-1)
    gradient_sq[:-1, :] += np.sum(np.diff(flow_forward, axis=0) ** 2, axis=-1)
    motion_boundary = gradient_sq > MB_ALPHA1 * forward_sq + MB_ALPHA2
    return inside & ~inconsistent & ~motion_boundary


def pair_warping_error(
    frame_t: np.ndarray, frame_next: np.ndarray, flow_forward: np.ndarray, mask: np.ndarray
) -> float:
    """E_warp of one pair (Lai et al. Eq. 8), unscaled: masked MSE on [0, 1] RGB.

    Args:
        frame_t, frame_next: (h, w, 3) RGB frames t and t+1, ``uint8`` or float in [0, 1].
        flow_forward: (h, w, 2) flow t -> t+1 used to warp ``frame_next`` onto frame t.
        mask: (h, w) bool non-occlusion mask of frame t.

    Returns:
        Mean over unoccluded pixels and the 3 channels of the squared difference; 0 when no
        pixel is unoccluded (as in Lai et al.'s evaluation code).
    """
    count = int(mask.sum())
    if count == 0:
        return 0.0
    warped_next, _ = warp_frame(to_float01(frame_next), flow_forward)  # (h, w, 3)
    difference = to_float01(frame_t)[mask] - warped_next[mask]  # (count, 3)
    return float(np.mean(difference.astype(np.float64) ** 2))


def warping_error(
    frames: np.ndarray, flow_frames: np.ndarray | None = None, progress: bool = False
) -> float:
    """Warping error E*warp of a clip (Lai et al. 2018), x 1e3 as papers report it.

    For every consecutive pair (t, t+1): flows t -> t+1 and t+1 -> t are estimated with DIS,
    frame t+1 of ``frames`` is warped onto frame t, and the squared difference is averaged over
    the pixels that pass the forward-backward occlusion test; the pair values are averaged.

    Args:
        frames: (n, h, w, 3) RGB clip to score (e.g. the super-resolved output), ``uint8`` or
            float in [0, 1]; n >= 2.
        flow_frames: optional (n, h, w, 3) clip of the same shape on which the flows and the
            occlusion masks are estimated, typically the ground truth. Flow from clean frames
            measures the output's flicker against the true motion and is what a benchmark with
            ground truth should use. When None the flow is estimated on ``frames`` themselves
            (no-reference use, as for real-world clips); a flickering output then also
            perturbs its own flow, so the two settings are not comparable.
        progress: show a tqdm bar over frame pairs.

    Returns:
        E*warp x 1e3 (0 for a perfectly consistent clip; lower is better).

    Raises:
        InputError: fewer than 2 frames, frames under ``MIN_FLOW_HEIGHT`` x ``MIN_FLOW_WIDTH`` pixels, a bad frame
            array, or ``flow_frames`` of another shape.
    """
    check_frames(frames, "frames", ndim=4)
    if flow_frames is None:
        flow_frames = frames
    else:
        check_frames(flow_frames, "flow_frames", ndim=4)
        check_same_shape(frames, flow_frames, "frames", "flow_frames")
    if len(frames) < 2:
        raise InputError(
            f"The warping error needs at least 2 frames, got a clip of shape {tuple(frames.shape)}."
        )
    _check_flow_size(frames.shape[1], frames.shape[2], "The warping error")

    errors = []
    for t in tqdm(range(len(frames) - 1), desc="E*warp", disable=not progress, **bar_options()):
        flow_forward = _dis_flow(flow_frames[t], flow_frames[t + 1])  # (h, w, 2)
        flow_backward = _dis_flow(flow_frames[t + 1], flow_frames[t])
        mask = non_occlusion_mask(flow_forward, flow_backward)  # (h, w)
        errors.append(pair_warping_error(frames[t], frames[t + 1], flow_forward, mask))
    return float(np.mean(errors) * EWARP_REPORT_SCALE)
