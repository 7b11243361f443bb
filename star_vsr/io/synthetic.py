"""Synthetic test videos: real encoded clips of a moving texture, with an optional tone.

Used by the tests of every part that reads video, and by ``star-vsr benchmark`` for its clip. The clips are
written directly with PyAV (not with `VideoWriter`), so tests of the writer compare against an independent
encoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from star_vsr.errors import InputError
from star_vsr.io.probe import as_frame_rate
from star_vsr.io.writer import x265_params

TEXTURE_CELL = 8
"""Pixels per random value of the grey texture before cubic smoothing: coarse enough that
H.264 at `TEST_CRF` reproduces frames within a few grey levels, fine enough to show motion."""

TEXTURE_RANGE = (56.0, 184.0)
"""Grey levels of the random texture values."""

TINT_AMPLITUDE = 32.0
"""Peak of the smooth colour tint added per channel. Colour varies slowly, like in natural
video, because 4:2:0 chroma subsampling blurs fast colour changes; texture + tint stays
inside 16..240."""

MOTION_PER_FRAME = (1, 2)
"""(dy, dx) pixels the texture moves between consecutive frames."""

TEST_CRF = 18
"""Constant-rate factor of the synthetic H.264/H.265 clips."""

TONE_HZ = 440.0
"""Frequency of the sine tone in the optional audio track."""

TONE_AMPLITUDE = 0.3
"""Peak amplitude of the tone, full scale = 1."""

AUDIO_SAMPLE_RATE = 48_000
"""Sample rate of the audio track in Hz."""

_ENCODERS = {
    "h264": ("libx264", "yuv420p"),
    "h265": ("libx265", "yuv420p"),
    "ffv1": ("ffv1", "bgr0"),
}
# codec -> (FFmpeg encoder, pixel format); bgr0 keeps FFV1 frames exactly as given


def synthetic_frames(
    num_frames: int, size: tuple[int, int] = (48, 64), seed: int = 0
) -> np.ndarray:
    """Frames of a smooth random colour texture sliding by `MOTION_PER_FRAME` each frame.

    Args:
        num_frames: Number of frames n.
        size: (h, w) of each frame.
        seed: Seed of the texture (`numpy.random.default_rng`).

    Returns:
        (n, h, w, 3) uint8 RGB, values in 16..240.
    """
    height, width = size
    dy, dx = MOTION_PER_FRAME
    canvas_h, canvas_w = height + dy * num_frames, width + dx * num_frames
    rng = np.random.default_rng(seed)
    cells = rng.uniform(
        *TEXTURE_RANGE,
        size=(math.ceil(canvas_h / TEXTURE_CELL) + 1, math.ceil(canvas_w / TEXTURE_CELL) + 1),
    )
    grey = cv2.resize(
        cells.astype(np.float32), (canvas_w, canvas_h), interpolation=cv2.INTER_CUBIC
    )  # (H, W)
    y, x = (
        np.mgrid[0:canvas_h, 0:canvas_w] / np.array([canvas_h, canvas_w])[:, None, None]
    )  # (2, H, W) in [0, 1)
    tint = np.stack(
        [
            np.sin(2 * np.pi * (x + channel / 3)) + (channel - 1) * np.cos(2 * np.pi * y)
            for channel in range(3)
        ],
        axis=-1,
    )
    texture = grey[..., None] + TINT_AMPLITUDE / 2 * tint  # (H, W, 3); |tint| <= 2
    frames = np.stack(
        [texture[i * dy : i * dy + height, i * dx : i * dx + width] for i in range(num_frames)]
    )
    return np.clip(frames.round(), 16, 240).astype(np.uint8)  # (n, h, w, 3)


def _tone(duration: Fraction) -> np.ndarray:
    """Mono sine tone of `duration` seconds, (1, samples) float32."""
    times = np.arange(round(duration * AUDIO_SAMPLE_RATE)) / AUDIO_SAMPLE_RATE
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * times)).astype(np.float32)[None]


def write_test_video(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] = (48, 64),
    fps: float | Fraction = 30,
    audio: bool = False,
    codec: str = "h264",
    seed: int = 0,
    *,
    audio_codec: str = "aac",
    gop_size: int | None = None,
    rotation: int = 0,
    pixel_aspect: Fraction = Fraction(1),
    tags: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write `synthetic_frames(num_frames, size, seed)` as a real video file with PyAV.

    Args:
        path: Output file; its suffix picks the container (.mp4, .mkv, .mov, ...).
        num_frames: Number of frames.
        size: (h, w); even for h264/h265 (yuv420p).
        fps: Frame rate; a Fraction such as Fraction(30000, 1001) is kept exactly.
        audio: Add a mono `TONE_HZ` sine track as long as the video.
        codec: "h264" (libx264), "h265" (libx265) or "ffv1" (lossless).
        seed: Texture seed.
        audio_codec: FFmpeg encoder of the audio track ("aac"; e.g. "pcm_mulaw" in .mov to
            get audio that .mp4 cannot hold).
        gop_size: Frames between keyframes (None: the encoder's default).
        rotation: Display rotation stored in the container, counter-clockwise degrees (a
            phone held upright records -90: landscape frames shown turned clockwise); the
            frames themselves are stored as given.
        pixel_aspect: Sample aspect ratio stored (width / height of a pixel as shown).
        tags: Metadata tags of the "container", the "video" and the "audio" track, e.g.
            ``{"container": {"title": "x"}, "audio": {"language": "fra"}}``.

    Returns:
        `path` as a Path.
    """
    if codec not in _ENCODERS:
        raise InputError(f"codec must be one of {', '.join(_ENCODERS)}, got {codec!r}")
    path = Path(path)
    frame_rate = as_frame_rate(fps)
    encoder, pix_fmt = _ENCODERS[codec]
    options = {} if codec == "ffv1" else {"crf": str(TEST_CRF)}
    if codec == "h265":
        options["x265-params"] = x265_params(size[1])
    if gop_size is not None:
        options["g"] = str(gop_size)
    tags = tags or {}
    with av.open(str(path), mode="w") as container:
        container.metadata.update(tags.get("container", {}))
        video = container.add_stream(encoder, rate=frame_rate, options=options)
        video.metadata.update(tags.get("video", {}))
        video.height, video.width = size
        video.pix_fmt = pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        if pixel_aspect != 1:
            video.sample_aspect_ratio = video.codec_context.sample_aspect_ratio = pixel_aspect
        sound = (
            container.add_stream(audio_codec, rate=AUDIO_SAMPLE_RATE, layout="mono")
            if audio
            else None
        )
        if sound is not None:
            sound.metadata.update(tags.get("audio", {}))
        for index, frame in enumerate(synthetic_frames(num_frames, size, seed)):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            container.mux(video.encode(video_frame))
        container.mux(video.encode(None))
        if sound is not None:
            tone = av.AudioFrame.from_ndarray(
                _tone(num_frames / frame_rate), format="flt", layout="mono"
            )
            tone.sample_rate, tone.pts, tone.time_base = (
                AUDIO_SAMPLE_RATE,
                0,
                Fraction(1, AUDIO_SAMPLE_RATE),
            )
            container.mux(sound.encode(tone))  # the encoder splits it into codec-sized frames
            container.mux(sound.encode(None))
    return path


def damage_packet(path: str | Path, index: int) -> Path:
    """Overwrite the bytes of the video packet number `index` (in file order) of `path` with 0xff, its index left
    intact: damage that probing does not see and decoding fails at."""
    path = Path(path)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    position, size = packets[index]
    data[position:position + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    return path


def write_interlaced_test_video(path: str | Path, num_frames: int = 6) -> Path:
    """A bar moving 4 pixels per frame, its even rows (top field) 2 pixels behind the odd ones,
    as an interlaced camera records it; 64x48 H.264 at 25 fps flagged top field first."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25, options={"x264-params": "tff=1", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(num_frames):
            frame = np.full((48, 64, 3), 30, np.uint8)
            frame[0::2, 10 + 4 * index:22 + 4 * index] = 220
            frame[1::2, 12 + 4 * index:24 + 4 * index] = 220
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def combing(frames: np.ndarray) -> float:
    """Mean absolute difference between vertically neighbouring rows of (n, h, w, 3) frames:
    high where fields of different instants are woven together."""
    return float(np.abs(np.diff(frames.astype(np.int32), axis=1)).mean())


VFR_TEST_TIMES_MS = [0, 40, 80, 120, 320, 360, 560, 600, 640, 840, 1000, 1160]  # 25 fps with gaps of 200 ms


def write_timed_test_video(path: str | Path, times_ms: list[int], transfer: int | None = None,
                           options: dict[str, str] | None = None, codec: str = "libx264",
                           primaries: int | None = None) -> Path:
    """32x32 frames shown at `times_ms` (time base 1 ms), 25 fps nominal, with encoder `codec`
    and its `options`; `transfer`, `primaries`: colour tags (`av.video.reformatter.ColorTrc`, `ColorPrimaries`)."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25, options=options or {})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if transfer is not None:
            stream.codec_context.color_trc = transfer
        if primaries is not None:
            stream.codec_context.color_primaries = primaries
        for time_ms, frame in zip(times_ms, synthetic_frames(len(times_ms), (32, 32))):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = time_ms
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def frame_times_ms(path: str | Path) -> list[int]:
    """Presentation times (ms, from the first frame) of the video packets of `path`, sorted."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.size)
    return [round(1000 * (t - times[0])) for t in times]
