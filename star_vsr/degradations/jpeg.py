"""JPEG compression of every frame of a clip at one quality (Real-ESRGAN Sec. 3.1 "JPEG").

The encoder is libjpeg through OpenCV (`cv2.imencode` / `cv2.imdecode`): real baseline JPEG with
4:2:0 chroma subsampling, exact and deterministic, one frame at a time at the clip's quality.
"""

from __future__ import annotations

import cv2
import numpy as np

from star_vsr.degradations.config import MAX_JPEG_QUALITY
from star_vsr.errors import InputError


def jpeg_compress_frames(frames: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode every frame as JPEG at `quality`.

    Args:
        frames: (n, h, w, 3) uint8 RGB frames.
        quality: libjpeg quality factor, integer in 1..100 (lower is stronger compression).

    Returns:
        (n, h, w, 3) uint8 RGB frames carrying the JPEG artefacts.
    """
    if not 1 <= int(quality) <= MAX_JPEG_QUALITY:
        raise InputError(f"JPEG quality {quality} must be in 1..{MAX_JPEG_QUALITY}.")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    out = np.empty_like(frames)  # (n, h, w, 3)
    for i, frame in enumerate(frames):
        # OpenCV's colour order is BGR; JPEG's YCbCr transform needs the channels in that order.
        ok, encoded = cv2.imencode(".jpg", frame[..., ::-1], params)
        if not ok:
            raise RuntimeError(f"OpenCV failed to JPEG-encode a frame of shape {frame.shape}.")
        out[i] = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return out
