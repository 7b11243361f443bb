"""Video SR metrics: PSNR/SSIM (Y and RGB), warping error E*warp, and learned metrics via pyiqa.

Frames are RGB numpy arrays, (h, w, 3) or clips (n, h, w, 3), ``uint8`` in [0, 255] or float
in [0, 1]. ``learned`` imports torch only when a metric is loaded.
"""

from star_vsr.metrics.evaluate import evaluate_clip, evaluate_videos
from star_vsr.metrics.fidelity import psnr, psnr_clip, rgb_to_y, ssim, ssim_clip
from star_vsr.metrics.learned import (
    LEARNED_METRICS,
    LearnedMetric,
    load_learned_metric,
    resolve_weight_files,
)
from star_vsr.metrics.warping import warping_error

__all__ = [
    "LEARNED_METRICS",
    "LearnedMetric",
    "evaluate_clip",
    "evaluate_videos",
    "load_learned_metric",
    "psnr",
    "psnr_clip",
    "resolve_weight_files",
    "rgb_to_y",
    "ssim",
    "ssim_clip",
    "warping_error",
]
