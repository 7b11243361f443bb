"""Whole-clip video compression through PyAV (FFmpeg), encoded and decoded in memory.

Unlike per-frame JPEG, a video codec predicts each frame from its neighbours (motion
compensation, skipped blocks, keyframe intervals), so its artefacts depend on the other frames
of the clip and move with the content. STAR's reference code compresses each frame as its own
video; here the whole clip is one stream.

Frames are converted to YUV 4:2:0, which needs even sides: odd frames are edge-padded by one
pixel before encoding and cropped back after decoding.
"""

from __future__ import annotations

import io
import math
import numbers

import av
import numpy as np

from star_vsr.degradations.config import DEGRADATION_CODECS, MAX_X264_CRF, X264_PRESETS
from star_vsr.errors import InputError
from star_vsr.io.reader import frame_to_rgb24
from star_vsr.io.writer import X264_REPRODUCIBLE_PARAMS

CODEC_FRAME_RATE = 25
"""Frames per second written into the stream; only turns bits per pixel into a bitrate."""

PIXEL_FORMAT = "yuv420p"
"""Pixel format of the encoded stream: 8-bit YUV with 2x2 chroma subsampling."""

CONTAINER_FORMAT = "mp4"
"""Container of the in-memory stream."""

ENCODER_THREADS = 1
"""Encoder threads. Both encoders' output depends on their thread count, so it is fixed: the
result of a seed must not depend on the machine or on DataLoader settings. (Decoding is exact
whatever the threads; it runs on one thread too, as LR clips are small.) libx264 also runs
without its assembly code (`X264_REPRODUCIBLE_PARAMS`, as `VideoWriter(reproducible=True)`):
its AVX-512 code (the macroblock-tree rate control) gave different bitstreams for the same
input from run to run on the AVX-512 CPU this was developed on; the portable C code is
deterministic, and at LR frame sizes costs milliseconds per clip."""

RATE_CONTROL_BUFFER_FRAMES = 2
"""MPEG-4 rate-control buffer, in frames' worth of bits. FFmpeg's default buffer lets a short
clip overshoot its bitrate several-fold (a 32-frame clip barely changes between 0.05 and 2 bits
per pixel); a two-frame buffer makes the target bitrate hold from the first frames on."""


def compress_clip(
    frames: np.ndarray,
    codec: str,
    *,
    crf: int | None = None,
    bits_per_pixel: float | None = None,
    x264_preset: str | None = None,
) -> np.ndarray:
    """Encode `frames` as one video stream and decode it again; deterministic (single-threaded).

    Args:
        frames: (n, h, w, 3) uint8 RGB frames, the whole clip.
        codec: "libx264" (needs `crf`) or "mpeg4" (needs `bits_per_pixel`).
        crf: libx264 constant rate factor, 0..51 (higher is stronger compression).
        bits_per_pixel: MPEG-4 target bits per pixel per frame; the bitrate in bits per second is
            ``bits_per_pixel * w * h * CODEC_FRAME_RATE``. MPEG-4's coarsest quantiser (31)
            bounds how far a very low target can degrade the frames.
        x264_preset: libx264 speed preset; None keeps FFmpeg's default ("medium").

    Returns:
        (n, h, w, 3) uint8 RGB frames with the codec's artefacts.
    """
    if (
        not isinstance(frames, np.ndarray)
        or frames.ndim != 4
        or frames.shape[-1] != 3
        or frames.dtype != np.uint8
        or frames.shape[0] < 1
    ):
        raise InputError(
            f"compress_clip needs uint8 frames shaped (n, h, w, 3) with n >= 1, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}."
        )
    n, h, w, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # even sides
    options, bit_rate = _encoder_settings(codec, crf, bits_per_pixel, x264_preset, h * w)

    # 1. Encode the whole clip into one in-memory stream.
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=CONTAINER_FORMAT) as container:
        stream = container.add_stream(codec, rate=CODEC_FRAME_RATE, options=options)
        stream.height, stream.width = padded.shape[1:3]
        stream.pix_fmt = PIXEL_FORMAT
        stream.thread_count = ENCODER_THREADS
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for frame in padded:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush delayed (B-)frames

    # 2. Decode it back.
    buffer.seek(0)
    decoded = []
    with av.open(buffer, mode="r", format=CONTAINER_FORMAT) as container:
        container.streams.video[0].thread_count = ENCODER_THREADS
        for frame in container.decode(video=0):
            decoded.append(frame_to_rgb24(frame))  # unbiased: FFmpeg's default conversion darkened every clip
    if len(decoded) != n:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {n} inputs.")
    return np.stack(decoded)[:, :h, :w]  # (n, h, w, 3), padding cropped


def _encoder_settings(
    codec: str,
    crf: int | None,
    bits_per_pixel: float | None,
    x264_preset: str | None,
    pixels_per_frame: int,
) -> tuple[dict[str, str], int | None]:
    """FFmpeg encoder options and bitrate (bits/s, or None for CRF) for one codec choice.

    MPEG-4 runs at a constant target bitrate with a `RATE_CONTROL_BUFFER_FRAMES` buffer.
    """
    if codec == "libx264":
        whole = isinstance(crf, numbers.Real) and not isinstance(crf, bool) and float(crf).is_integer()
        if not whole or not 0 <= crf <= MAX_X264_CRF:  # (23.7 was taken as 23)
            raise InputError(f"libx264 needs a whole-number CRF in 0..{MAX_X264_CRF}, got {crf!r}.")
        options = {"crf": str(int(crf)), "x264-params": X264_REPRODUCIBLE_PARAMS}
        if x264_preset is not None:
            if x264_preset not in X264_PRESETS:
                raise InputError(
                    f"Unknown x264 preset {x264_preset!r}; use one of {', '.join(X264_PRESETS)}."
                )
            options["preset"] = x264_preset
        return options, None
    if codec == "mpeg4":
        if isinstance(bits_per_pixel, bool) or not isinstance(bits_per_pixel, numbers.Real) \
                or not 0 < bits_per_pixel < math.inf:  # (NaN: a ValueError from int())
            raise InputError(f"mpeg4 needs bits_per_pixel > 0, got {bits_per_pixel!r}.")
        bit_rate = max(1, round(bits_per_pixel * pixels_per_frame * CODEC_FRAME_RATE))
        buffer_bits = max(1, round(bits_per_pixel * pixels_per_frame * RATE_CONTROL_BUFFER_FRAMES))
        return {"maxrate": str(bit_rate), "bufsize": str(buffer_bits)}, bit_rate
    raise InputError(f"Unknown codec {codec!r}; use one of {', '.join(DEGRADATION_CODECS)}.")
