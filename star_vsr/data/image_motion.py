"""ImageMotionDataset: video clips made from still photographs by a smooth random camera move.

For small or offline data sets (scikit-image's bundled photographs by default), each item
films one photo with a virtual camera whose window pans along a straight line, zooms
geometrically and rolls by a small angle, all at constant rate over the clip:

    u_k      = k / (n - 1)                         (clip time of frame k, 0..1)
    z_k      = z_end ** u_k                        (zoom: window side = crop / z_k)
    theta_k  = theta_end * u_k                     (roll, degrees)
    c_k      = c_0 + d * u_k                       (window centre, pixels)

Before filming, the photo is shrunk by a random factor ``s`` (area interpolation), so that one
output pixel covers ``s`` photo pixels and clips show detail at several scales. The window
(rotated, zoomed) always stays inside the photo; frames are resampled with bicubic
interpolation. Everything random is drawn per clip from the item's seed (``ClipPairDataset``).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np

from star_vsr.data.base import BadSampleError, ClipPairDataset, CropSize, check_caption, sources_fingerprint
from star_vsr.data.pairs import DegradationSpec
from star_vsr.errors import (InputError, StarVSRError, VideoNotFoundError, check_real_number, check_true_or_false,
                             why_missing)
from star_vsr.evalset import COLOUR_TRAINING_PHOTO_NAMES, load_photo
from star_vsr.io import read_frames
from star_vsr.io.folders import IMAGE_EXTENSIONS, photos_in_folder

ImageLike = Union[np.ndarray, str, Path]


def _as_rgb(image: np.ndarray, where: str) -> np.ndarray:
    """uint8 (h, w, 3) from (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8 arrays."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"{where} must be a uint8 array (h, w, 3), got {kind}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(f"{where} must be shaped (h, w, 3), got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def camera_path(num_frames: int, z_end: float, theta_end: float, start: np.ndarray, pan: np.ndarray
                ) -> list[tuple[float, float, np.ndarray]]:
    """(zoom, roll in degrees, centre (x, y)) of every frame of the straight, constant-rate move."""
    path = []
    for k in range(num_frames):
        u = k / (num_frames - 1) if num_frames > 1 else 0.0
        path.append((z_end ** u, theta_end * u, start + pan * u))
    return path


def film(image: np.ndarray, size: tuple[int, int], zoom: float, theta_deg: float, centre: np.ndarray) -> np.ndarray:
    """One frame: the window of ``size`` (h, w) / ``zoom`` centred at ``centre`` (x, y), rolled by ``theta``.

    Maps output pixel p to photo point ``centre + R(theta) (p - p_c) / zoom`` (p_c: output centre)
    and samples it bicubically. Returns uint8 (h, w, 3).
    """
    h, w = size
    theta = math.radians(theta_deg)
    a, b = math.cos(theta) / zoom, math.sin(theta) / zoom
    pcx, pcy = (w - 1) / 2, (h - 1) / 2
    matrix = np.array([[a, -b, centre[0] - (a * pcx - b * pcy)],
                       [b, a, centre[1] - (b * pcx + a * pcy)]], dtype=np.float64)  # output -> photo
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def _photo_files(path: Path) -> list[Path]:
    """The photos of ``ImageMotionDataset(images=path)``: those of a folder (``photos_in_folder``), or the file."""
    if not path.exists():
        raise VideoNotFoundError(f"{path} {why_missing(path)}; give a folder of photos, a photo or a list of them")
    if not path.is_dir():
        return [path]
    photos = photos_in_folder(path)
    if not photos:
        raise InputError(f"no photos ({'/'.join(sorted(IMAGE_EXTENSIONS))}) in {path}")
    return photos


class ImageMotionDataset(ClipPairDataset):
    r"""Clips filmed from still photos with smooth random pan, zoom and roll, degraded on the fly.

    Parameters:
        images (*optional*): uint8 arrays (h, w, 3) (grey and RGBA are converted) or image file paths
            (read when used as ``star-vsr upscale`` reads photos: upright by their EXIF orientation, 16-bit
            scaled to 8; unreadable ones are skipped), or a folder of photos (its visible photo files,
            naturally sorted) or one photo file. Default: the colour training photographs
            (``star_vsr.evalset.COLOUR_TRAINING_PHOTO_NAMES``: scikit-image's bundled colour photos
            except the evaluation set's).
        num_frames (`int`, defaults to 8): frames per clip.
        crop_size (`int` or `(h, w)`, defaults to 64): HR frame size, divisible by ``scale``.
        scale (`int`, defaults to 4): HR / LR size ratio (2, 3, 4).
        degradation (defaults to `"medium"`): preset name, ``DegradationConfig``, or None / "none" for
            bicubic downsampling only.
        length (`int`, *optional*): items per epoch; item i of epoch e films photo ``i % len(images)``, or
            with fewer items than photos ``(i + e * length) % len(images)``, so that epochs take turns at the
            photos (default: one item per photo).
        seed (`int`, defaults to 0): base seed; item i of epoch e depends only on (seed, e, i).
        caption (`str`, defaults to `""`): caption of every clip.
        caption_dropout (`float`, defaults to 0.0): probability of an empty caption.
        max_pan (`float`, defaults to 0.5): largest pan over the whole clip, in crop sides.
        zoom_range (`(float, float)`, defaults to `(0.9, 1.1)`): range of the zoom reached at the last
            frame (1 = none, > 1 zooms in), drawn log-uniformly.
        max_rotation (`float`, defaults to 3.0): largest roll over the whole clip, degrees.
        window_scale_range (`(float, float)`, defaults to `(1.0, 2.0)`): photo pixels per output pixel,
            drawn uniformly per clip (the photo is shrunk by it first; lowered if the photo is small).
        flip_and_rotate (`bool`, defaults to False): turn the photo by a random multiple of 90 degrees and
            mirror it with probability 1/2 before filming (eight orientations: a training augmentation).
        sharpen_gt (`bool`, defaults to False): sharpen the HR clip (unsharp masking) and degrade that
            (``ClipPairDataset``).

    Items: see ``ClipPairDataset``.
    """

    def __init__(self, images: Union[Sequence[ImageLike], str, Path, None] = None, num_frames: int = 8,
                 crop_size: CropSize = 64, scale: int = 4, degradation: DegradationSpec = "medium",
                 length: Optional[int] = None, seed: int = 0,
                 caption: str = "", caption_dropout: float = 0.0, max_pan: float = 0.5,
                 zoom_range: tuple[float, float] = (0.9, 1.1), max_rotation: float = 3.0,
                 window_scale_range: tuple[float, float] = (1.0, 2.0), flip_and_rotate: bool = False,
                 sharpen_gt: bool = False) -> None:
        if isinstance(images, (str, os.PathLike)):  # a folder or one photo; list() made one name per character
            images = _photo_files(Path(images))
        if isinstance(images, np.ndarray) and images.ndim <= 3:  # (a (n, h, w, 3) stack is n photos)
            # (one photo's array was read as its rows: hundreds of 1-pixel-high "photos")
            raise InputError(f"images is one array of shape {images.shape}; give a list of pictures ([photo]), a "
                             f"folder or a file name")
        images = [load_photo(name) for name in COLOUR_TRAINING_PHOTO_NAMES] if images is None else list(images)
        self.images = [image if isinstance(image, (str, Path)) else _as_rgb(image, f"images[{i}]")
                       for i, image in enumerate(images)]
        super().__init__(len(self.images), num_frames, crop_size, scale, degradation, caption_dropout, seed, length,
                         sharpen_gt)
        check_real_number("max_pan", max_pan, 0.0)  # ("1" was a TypeError at the comparison)
        check_real_number("max_rotation", max_rotation, 0.0)
        check_caption("caption", caption)
        for name, pair in (("zoom_range", zoom_range), ("window_scale_range", window_scale_range)):
            values = list(pair) if isinstance(pair, (Sequence, np.ndarray)) and not isinstance(pair, str) else []
            if len(values) != 2 or not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
                raise InputError(f"{name} must be a (min, max) pair of numbers, got {pair!r}")  # (a tuple, a list,
                # a NumPy array; "0.9" was a TypeError at the comparison below)
        if not 0 < zoom_range[0] <= zoom_range[1]:
            raise InputError(f"zoom_range needs 0 < min <= max, got {zoom_range}")
        if not 1.0 <= window_scale_range[0] <= window_scale_range[1]:
            raise InputError(f"window_scale_range needs 1 <= min <= max, got {window_scale_range}")
        self.caption = caption
        self.max_pan = float(max_pan)
        self.zoom_range = (float(zoom_range[0]), float(zoom_range[1]))
        self.max_rotation = float(max_rotation)
        self.window_scale_range = (float(window_scale_range[0]), float(window_scale_range[1]))
        self.flip_and_rotate = check_true_or_false("flip_and_rotate", flip_and_rotate)

    def source_name(self, source: int) -> str:
        image = self.images[source]
        return str(image) if isinstance(image, (str, Path)) else f"images[{source}]"

    def fingerprint(self, as_given: bool = False) -> str:
        return sources_fingerprint(self.images, as_given=as_given)

    def _image(self, source: int) -> np.ndarray:
        image = self.images[source]
        if not isinstance(image, (str, Path)):
            return image
        try:  # as the commands read a photo: PIL's convert("RGB") clipped 16-bit values to white, ignored EXIF
            return read_frames(image, [0])[0]  # (h, w, 3) uint8
        except StarVSRError as error:
            raise BadSampleError(f"cannot be read as an image ({error})") from error

    def crop_reach(self) -> float:
        """The shorter side a photo needs for these clips: the diagonal of the crop window at its widest (the
        smallest zoom reached along a camera path), in output pixels."""
        crop_h, crop_w = self.crop_size
        return math.hypot(crop_h, crop_w) / min(1.0, self.zoom_range[0])

    def load_clip(self, source: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        image = self._image(source)
        if self.flip_and_rotate:  # draws from rng only when on: clips without it stay as they were
            orientation = np.random.default_rng(rng.integers(2 ** 63)).integers(8)
            image = np.rot90(image, k=int(orientation % 4))
            image = np.ascontiguousarray(image[:, ::-1] if orientation >= 4 else image)
        crop_h, crop_w = self.crop_size
        reach = self.crop_reach()

        # 1. photo scale: lowered so that the rotated, zoomed-out window fits the photo
        fit = min(image.shape[:2]) / reach
        if fit < 1.0:
            raise BadSampleError(f"photo of {image.shape[1]}x{image.shape[0]} is too small for moving "
                                 f"{crop_w}x{crop_h} crops (needs a side of {math.ceil(reach)})")
        s = min(float(rng.uniform(*self.window_scale_range)), fit)
        # 2. the camera move
        z_end = math.exp(rng.uniform(math.log(self.zoom_range[0]), math.log(self.zoom_range[1])))
        theta_end = float(rng.uniform(-self.max_rotation, self.max_rotation))
        phi = float(rng.uniform(0.0, 2 * math.pi))
        pan = float(rng.uniform(0.0, self.max_pan)) * max(crop_h, crop_w) * np.array([math.cos(phi), math.sin(phi)])
        if s > 1.0:
            image = cv2.resize(image, (max(1, round(image.shape[1] / s)), max(1, round(image.shape[0] / s))),
                               interpolation=cv2.INTER_AREA)
        # 3. start centre such that the window stays inside the photo from start to end
        radius = reach / 2
        start = np.zeros(2)
        for axis, extent in ((0, image.shape[1]), (1, image.shape[0])):  # x, then y
            room = max(0.0, (extent - 1) - 2 * radius)  # free travel of the centre along this axis
            pan[axis] = float(np.clip(pan[axis], -room, room))
            low, high = radius - min(0.0, pan[axis]), (extent - 1) - radius - max(0.0, pan[axis])
            start[axis] = float(rng.uniform(low, max(low, high)))
        # 4. film
        frames = [film(image, self.crop_size, zoom, theta, centre)
                  for zoom, theta, centre in camera_path(self.num_frames, z_end, theta_end, start, pan)]
        return np.stack(frames), self.caption  # (n, H, W, 3) uint8
