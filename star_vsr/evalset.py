"""The project's offline evaluation set, and the training photos kept apart from it.

Real photographs bundled with scikit-image are filmed with a smooth random camera move (pan,
zoom, roll: :class:`star_vsr.data.ImageMotionDataset`) and degraded with the project's
real-world chain (``medium`` preset, x4, blur / resize / noise / JPEG twice, then a video codec
over the whole clip). Everything is seeded, so every machine builds the same clips.

The photos of the evaluation set (:data:`EVAL_PHOTO_NAMES`) are never used for training:
:func:`training_photos` returns the other bundled photographs, which the default student and the
teacher caches of ``star-vsr distill cache-teacher --motion-clips`` are made from.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    import torch

    from .data.image_motion import ImageMotionDataset

EVAL_PHOTO_NAMES: tuple[str, ...] = ("coffee", "rocket", "camera")
"""scikit-image photographs of the evaluation set: a still life, an outdoor scene, a portrait (grey)."""

COLOUR_TRAINING_PHOTO_NAMES: tuple[str, ...] = (
    "astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle",
)
"""scikit-image's bundled colour photos without the evaluation ones."""

GREY_TRAINING_PHOTO_NAMES: tuple[str, ...] = (
    "brick", "grass", "gravel", "coins", "moon", "clock", "cell", "page", "text",
)
"""scikit-image's bundled grey photos without the evaluation one: natural textures (brick, grass,
gravel, moon), objects (coins, clock), microscopy and printed text with sharp edges."""

TRAINING_PHOTO_NAMES: tuple[str, ...] = COLOUR_TRAINING_PHOTO_NAMES + GREY_TRAINING_PHOTO_NAMES
"""Photographs the training data is filmed from: every bundled photograph except the evaluation ones."""

CHANNEL_ORDERS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations(range(3)))
"""The six orders of the RGB channels; :func:`training_photos` uses every photo in each of them, so
that six photos do not teach a student their colour palette (a blue sky stays blue, not grey)."""

EVAL_SEED = 20210619
"""Seed of the evaluation clips (camera moves and degradations)."""

EVAL_NUM_CLIPS = 24
EVAL_NUM_FRAMES = 10
EVAL_SIZE = 160
"""Default evaluation set: 24 clips (eight per photo) of 10 frames, 160 x 160 HR, 40 x 40 LR at x4.

It had 6 clips until the gains measured on it proved unrepresentative: on the first 6 clips the
earlier shipped student gained +0.32 dB over bicubic and the next one +0.72 dB, on these 24 clips
+0.11 and +0.49 dB (the first 6 are the same clips; every clip has its own camera move and
degradation draw, and a student's gain varies from below 0 to over 2 dB between clips)."""

EVAL_SCALE = 4
EVAL_DEGRADATION = "medium"


def load_photo(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image as uint8 (h, w, 3) RGB (grey photos repeated to RGB).

    Nothing is downloaded: only images inside the scikit-image wheel work.
    """
    import skimage.data

    if name not in EVAL_PHOTO_NAMES + TRAINING_PHOTO_NAMES:
        raise InputError(f"unknown photo {name!r}; choose one of {', '.join(EVAL_PHOTO_NAMES + TRAINING_PHOTO_NAMES)}")
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def evaluation_photos() -> list[np.ndarray]:
    """The photographs of :data:`EVAL_PHOTO_NAMES`, uint8 (h, w, 3)."""
    return [load_photo(name) for name in EVAL_PHOTO_NAMES]


def training_photos(channel_orders: bool = True) -> list[np.ndarray]:
    """The photographs of :data:`TRAINING_PHOTO_NAMES` (disjoint from the evaluation set), uint8 (h, w, 3).

    Args:
        channel_orders: give each colour photo in all :data:`CHANNEL_ORDERS` (photo-major order), 6x as
            many colour images, then the grey photos once each (so colour clips stay 4 in 5 and a
            student does not learn to wash out colour); False gives the photos as they are.
    """
    if not channel_orders:
        return [load_photo(name) for name in TRAINING_PHOTO_NAMES]
    colour = [load_photo(name) for name in COLOUR_TRAINING_PHOTO_NAMES]
    grey = [load_photo(name) for name in GREY_TRAINING_PHOTO_NAMES]
    return [np.ascontiguousarray(photo[..., list(order)]) for photo in colour for order in CHANNEL_ORDERS] + grey


def motion_clips(photos: list[np.ndarray], num_clips: int, num_frames: int, size: Union[int, tuple[int, int]],
                 scale: int = EVAL_SCALE, degradation: Any = EVAL_DEGRADATION, seed: int = 0) -> "ImageMotionDataset":
    """An ``ImageMotionDataset`` of ``num_clips`` clips; clip i films photo ``i % len(photos)``.

    Items are dicts with ``"gt"`` (n, 3, H, W), ``"lq"`` (n, 3, H / scale, W / scale) float in [0, 1].
    """
    from .data.image_motion import ImageMotionDataset

    return ImageMotionDataset(images=photos, num_frames=num_frames, crop_size=size, scale=scale,
                              degradation=degradation, length=num_clips, seed=seed)


def training_motion_clips(num_clips: int, num_frames: int = 8, crop_size: int = 64, scale: int = EVAL_SCALE,
                          degradation: Any = EVAL_DEGRADATION, seed: int = 0) -> "ImageMotionDataset":
    """Training clips filmed from :func:`training_photos` (see :func:`motion_clips`)."""
    return motion_clips(training_photos(), num_clips, num_frames, crop_size, scale, degradation, seed)


def evaluation_clips(num_clips: int = EVAL_NUM_CLIPS, num_frames: int = EVAL_NUM_FRAMES, size: int = EVAL_SIZE,
                     scale: int = EVAL_SCALE, degradation: Any = EVAL_DEGRADATION,
                     seed: int = EVAL_SEED) -> list[dict[str, Any]]:
    """The evaluation clips: dicts with ``"lq"`` (n, 3, h, w), ``"gt"`` (n, 3, h * scale, w * scale)
    float32 in [0, 1] and ``"name"`` (``"<photo>-<k>"``).

    The defaults give the evaluation set the project reports; smaller settings give quick
    validation subsets (the first clips use the same photos in the same order).
    """
    dataset = motion_clips(evaluation_photos(), num_clips, num_frames, size, scale, degradation, seed)
    clips = []
    for index in range(num_clips):
        item = dataset[index]
        name = EVAL_PHOTO_NAMES[index % len(EVAL_PHOTO_NAMES)]
        clips.append({"lq": item["lq"], "gt": item["gt"], "name": f"{name}-{index // len(EVAL_PHOTO_NAMES)}"})
    return clips


def photo_clip(name: str, num_frames: int, size: tuple[int, int], scale: int = EVAL_SCALE,
               degradation: Any = EVAL_DEGRADATION, seed: Optional[int] = None) -> dict[str, Any]:
    """One clip filmed from the bundled photo ``name`` (for demos): ``{"lq", "gt"}`` as above."""
    item = motion_clips([load_photo(name)], 1, num_frames, size, scale, degradation,
                        EVAL_SEED if seed is None else seed)[0]
    return {"lq": item["lq"], "gt": item["gt"], "name": name}


def bicubic_upscale(lq: torch.Tensor, scale: float) -> torch.Tensor:
    """The baseline every comparison reports: (n, 3, h, w) -> (n, 3, H, W) bicubic (PyTorch,
    ``align_corners=False``), clamped to [0, 1]; (H, W) = ``output_size(h, w, scale)``, which is
    (h * scale, w * scale) at integer scales. PyTorch's cubic kernel (a = -0.75) is not MATLAB's or PIL's
    (a = -0.5): on the evaluation set it scores 0.016 dB PSNR-Y above PIL's (a review's measurement,
    2026-12-07), so gains over it are, if anything, a little below gains over MATLAB's bicubic."""
    import torch.nn.functional as F  # torch is imported on use: ``star-vsr --help`` stays fast

    from .models.student import output_size

    return F.interpolate(lq, size=output_size(lq.shape[-2], lq.shape[-1], scale), mode="bicubic",
                         align_corners=False).clamp(0, 1)


def rescaled_reference(gt: torch.Tensor, lq_size: tuple[int, int], scale: float) -> torch.Tensor:
    """Ground truth for upscaling an LR clip by a scale other than the one it was degraded at.

    A clip made at integer scale ``r`` has ground truth (n, 3, r h, r w); upscaled by ``scale``
    instead, the output is (n, 3, H, W) = ``output_size(h, w, scale)`` and its reference is the
    ground truth resized to that size (bicubic with antialiasing, so shrinking does not alias),
    clamped to [0, 1]. This is how the scale-aware upsampler of scales without a pixel-shuffle
    head is trained (``training/distill_student.py --scale_range``) and evaluated
    (``benchmarks/student_quality.py --upscale``).
    """
    import torch.nn.functional as F

    from .models.student import output_size

    size = output_size(lq_size[0], lq_size[1], scale)
    if tuple(gt.shape[-2:]) == size:
        return gt
    return F.interpolate(gt, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def score_clip(sr: torch.Tensor, gt: torch.Tensor, scale: float, warp: bool = True) -> dict[str, float]:
    """PSNR-Y / SSIM-Y (and E*warp with ``warp``) of an upscaled (n, 3, H, W) clip against ground
    truth, on the uint8 frames a video would hold (``star_vsr.metrics.evaluate_clip``); the border
    cropped is ``ceil(scale)`` pixels."""
    from .frames import frames_to_uint8
    from .metrics import evaluate_clip

    return evaluate_clip(frames_to_uint8(sr), frames_to_uint8(gt), scale=math.ceil(scale), warp=warp)
