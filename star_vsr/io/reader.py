"""Reading videos: streamed frame by frame (`open_video`) or at chosen indices (`read_frames`).

Every frame comes out as a ``numpy.uint8`` RGB array shaped (h, w, 3), upright (turned by
the container's display matrix, as players show it), colours decoded by the stream's BT.601 /
BT.709 and range tags; stacks are (n, h, w, 3). Video files are streamed with PyAV, so a video
of any length is never held in memory; a folder of PNG/JPEG/TIFF/BMP/WebP frames reads through the same
interface. Random access for
training seeks with PyAV (decord only for RGB-coded video: its YUV -> RGB conversion rounds like FFmpeg's
default, about 1 to 1.5 levels darker than `RGB_CONVERSION`).

Decoding keeps PyAV's default slice threading: frame threading would be faster on large
inputs but hides decoder errors, so a truncated file would end early instead of raising
`CorruptVideoError`.

Frame indices count decoded frames from 0 and assume a constant frame rate: frame ``i`` is
the one shown at time ``i / fps`` after the start of the video stream.
"""

from __future__ import annotations

import errno
import io
import itertools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from av.container import InputContainer
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from av.video.stream import VideoStream

from star_vsr.errors import (CorruptVideoError, InputError, UnsupportedVideoError, check_whole_number, first_line,
                             option)
from star_vsr.interrupts import raise_if_interrupted
from star_vsr.io.folders import list_image_files
from star_vsr.io.probe import (DEFAULT_FOLDER_FPS, VideoInfo, chroma_block, exif_orientation, find_video_stream,
                               has_alpha, image_transparency, is_untagged_hd, open_container, pixel_bit_depth,
                               probe_video, too_large, video_start)
from star_vsr.units import count_of
from star_vsr.user_warnings import warn_user

logger = logging.getLogger(__name__)

DEINTERLACER = "bwdif"
"""FFmpeg filter that deinterlaces: Bob Weaver, motion adaptive (each missing line from the
other field where nothing moves, interpolated within the field where something does), one
frame out per frame in (``mode=send_frame``). Sharper edges than yadif at a similar cost."""

LONE_FRAME_DEINTERLACER = "estdif"
"""FFmpeg filter that deinterlaces a video of one frame: Edge Slope Tracing, each missing line interpolated
within its field along the edges. `DEINTERLACER` takes missing lines from the neighbouring frames where nothing
moves; a lone frame is its own neighbour, so its other field's lines came back as they were (combed)."""

MIN_DEINTERLACE_SIZE = (3, 4)
"""Smallest (width, height) of a stored frame that `DEINTERLACER` takes (FFmpeg's bwdif refuses fewer columns
or lines), in every plane."""

MIN_LONE_FRAME_DEINTERLACE_SIZE = (1, 3)
"""Smallest (width, height) of a stored frame that `LONE_FRAME_DEINTERLACER` takes (FFmpeg's estdif refuses fewer
than 3 lines of the frame; its colour planes may have fewer)."""

MAX_DECODE_AHEAD = 12
"""`read_frames` with PyAV: a wanted frame at most this many frames after the last decoded
one is reached by decoding on; farther ones are reached by seeking to the keyframe before
them. Decoding a dozen small frames costs about as much as one seek."""

_IMREAD_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION  # RGB of 8 or 16 bits,
# pixels as stored (then turned upright as the folder's first frame says, `VideoInfo.orientation`)


class VideoReader(ABC):
    """Frames of one video as uint8 RGB arrays (h, w, 3), in display order.

    Each `iter(reader)` starts again from frame 0, so a video can be read more than once.
    Use as a context manager, or call `close()`; closing ends iterations still running.

    Attributes:
        info: What `probe_video` found; `len(reader) == info.num_frames`.
    """

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.closed = False

    def __len__(self) -> int:
        return self.info.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.closed:
            raise InputError(f"the reader of {self.info.path} is closed; open the video again")
        return self._checked(self._frames())

    @staticmethod
    def _checked(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames``, stopped by an interrupt whose KeyboardInterrupt was lost (``interrupts``): every long job
        reads frames, so none goes on to the end after Ctrl-C."""
        for frame in frames:
            raise_if_interrupted()
            yield frame

    @abstractmethod
    def _frames(self) -> Iterator[np.ndarray]:
        """One pass over the video from frame 0, yielding (h, w, 3) uint8 RGB frames."""

    def iter_chunks(self, chunk_size: int) -> Iterator[np.ndarray]:
        """Consecutive frames in stacks of `chunk_size`, shaped (chunk_size, h, w, 3).

        The last stack holds the remaining frames and may be shorter.
        """
        check_whole_number("chunk_size", chunk_size, 1)  # (NumPy's integers too)
        chunk_size = int(chunk_size)
        chunk: list[np.ndarray] = []
        for frame in self:
            chunk.append(frame)
            if len(chunk) == chunk_size:
                yield np.stack(chunk)  # (chunk_size, h, w, 3)
                chunk = []
        if chunk:
            yield np.stack(chunk)  # (n < chunk_size, h, w, 3)

    def close(self) -> None:
        """Release the files this reader holds open. Further iteration raises `InputError`."""
        self.closed = True

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: FFmpeg's (swscale's) flags for YUV -> RGB. Its default fast path rounds down: frames came out about 1 to 1.5
#: levels darker than they were encoded, more in green (a round trip of H.264 at CRF 0 turned RGB (200, 50, 120)
#: into (199, 48, 118)). Accurate rounding with full chroma interpolation is unbiased (mean error under 0.1 level
#: on 4:2:0, 4:2:2, NV12 and 10-bit 4:2:0) for about 4 ms more per 720p frame.
RGB_CONVERSION = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def frame_to_rgb24(frame: av.VideoFrame, src_colorspace: Colorspace | None = None,
                   src_color_range: ColorRange | None = None) -> np.ndarray:
    """A decoded frame as (h, w, 3) uint8 RGB, converted with `RGB_CONVERSION` (from the frame's colour tags, or
    the given ones).

    RGB or grey of more than 8 bits (FFV1's gbrp16le and gray16le, PNG's rgb48be in MOV) goes through 16 bits and
    is rounded here, v -> round(v * 255 / 65535), as a 16-bit PNG frame is: swscale's own 16 -> 8 bit step divides
    by 256 and rounds, so levels stored as 257 k came out as k + 1 from k = 128 on (half a level too bright on
    average, 0.2 dB of PSNR in `evaluate`)."""
    form = frame.format
    if (form.is_rgb or len(form.components) <= 2) and not form.has_palette and form.components[0].bits > 8:
        rgb48 = frame.reformat(format="rgb48le", src_colorspace=src_colorspace, src_color_range=src_color_range,
                               interpolation=RGB_CONVERSION).to_ndarray()  # (h, w, 3) uint16
        return round_16_to_8_bits(rgb48)
    return frame.reformat(format="rgb24", src_colorspace=src_colorspace, src_color_range=src_color_range,
                          interpolation=RGB_CONVERSION).to_ndarray()


def round_16_to_8_bits(values: np.ndarray) -> np.ndarray:
    """16-bit levels (uint16, any shape) as 8-bit ones, rounded: round(v * 255 / 65535) = round(v / 257) (65535 =
    255 * 257), so that a level stored as 257 k reads as k."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _to_rgb(frame: av.VideoFrame, info: VideoInfo, index: int | None = None) -> np.ndarray:
    """A decoded frame (number `index`, for the message) as upright (h, w, 3) uint8 RGB; `UnsupportedVideoError` if
    it is not of the video's size (that of its first frame).

    YUV is converted by the frame's colour tags; untagged HD (wider than 1279 or taller than 576
    pixels) as BT.709, as players show it (FFmpeg's converter would take BT.601), SD as BT.601.
    """
    if is_untagged_hd(frame.colorspace, frame.width, frame.height, frame.format.is_rgb):
        rgb = frame_to_rgb24(frame, Colorspace.ITU709, frame.color_range or ColorRange.MPEG)
    else:
        rgb = frame_to_rgb24(frame)
    rgb = info.orientation.apply(rgb)  # (h, w, 3)
    if rgb.shape[:2] != (info.height, info.width):  # two clips joined (.ts), a stream that switched resolution
        raise UnsupportedVideoError(
            f"{info.path}: its frame size changes from {info.width}x{info.height} to {rgb.shape[1]}x{rgb.shape[0]} "
            f"{'mid-way' if index is None else f'at frame {index}'}; star-vsr needs one frame size: cut the video "
            f"where it changes{'' if index is None else f' (its first {index} frames are one size)'}, or "
            f"scale it to one size first (ffmpeg -i IN -vf scale={info.width}:{info.height} OUT)")
    return rgb


def _decode(container: InputContainer, stream: VideoStream, path: Path) -> Iterator[av.VideoFrame]:
    """`container.decode(stream)`, raising `CorruptVideoError` when FFmpeg fails mid-stream."""
    frames = container.decode(stream)
    count = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as error:
            if error.errno == errno.EAGAIN:  # its decoder threads could not start (memory: `is_out_of_memory`), not
                raise  # the file's fault (ENOMEM stays damage: a damaged header asks for absurd sizes)
            raise CorruptVideoError(
                f"{path}: decoding failed after {count} frame{'s' * (count != 1)} ({error.strerror or error}); "
                "the file is damaged or truncated"
            ) from error
        count += 1
        yield frame


def _deinterlacer_graph(frame: av.VideoFrame, stream: VideoStream, every_frame: bool,
                        lone: bool = False) -> av.filter.Graph:
    """A configured buffer -> `DEINTERLACER` (``lone``: `LONE_FRAME_DEINTERLACER`) -> sink graph for frames shaped
    like `frame`."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                              time_base=stream.time_base)
    deint = f"parity=auto:deint={'all' if every_frame else 'interlaced'}"
    deinterlacer = (graph.add(LONE_FRAME_DEINTERLACER, f"mode=frame:{deint}") if lone else
                    graph.add(DEINTERLACER, f"mode=send_frame:{deint}"))
    sink = graph.add("buffersink")
    source.link_to(deinterlacer)
    deinterlacer.link_to(sink)
    graph.configure()
    return graph


def _deinterlace(
    frames: Iterator[av.VideoFrame], stream: VideoStream, every_frame: bool
) -> Iterator[av.VideoFrame]:
    """`frames` through `DEINTERLACER`: the same number of frames, one frame behind (the
    filter looks at the next frame's fields). `every_frame`: also frames not flagged interlaced.
    A stream that changes pixel format gets a new graph from that frame on, after the old one is
    flushed: FFmpeg's buffer source would keep the old format and scramble the new frames (one that
    changes size is refused by `_to_rgb` at that frame). A stream of one frame goes through
    `LONE_FRAME_DEINTERLACER` instead."""
    graph, shape = None, None

    def drain() -> Iterator[av.VideoFrame]:
        while True:
            try:
                yield graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return

    frames = iter(frames)
    first, second = next(frames, None), next(frames, None)
    if first is None:
        return
    lone = second is None
    for frame in itertools.chain([first], [] if lone else [second], frames):
        if (frame.width, frame.height, frame.format.name) != shape:
            if graph is not None:
                graph.vpush(None)
                yield from drain()
            graph, shape = _deinterlacer_graph(frame, stream, every_frame, lone), (frame.width, frame.height,
                                                                                  frame.format.name)
        graph.vpush(frame)
        yield from drain()
    if graph is not None:
        graph.vpush(None)
        yield from drain()


class PyAVVideoReader(VideoReader):
    """Streams a video file with PyAV: one frame decoded at a time, any length.

    `deinterlace`: run the frames through `DEINTERLACER`; "all" also the frames not flagged
    interlaced (footage whose flags are wrong).
    """

    def __init__(self, info: VideoInfo, deinterlace: Literal[False, "flagged", "all"] = False) -> None:
        super().__init__(info)
        self.deinterlace = deinterlace
        self._containers: set[InputContainer] = set()  # one per running iteration

    def _frames(self) -> Iterator[np.ndarray]:
        path = self.info.path
        container = open_container(path)
        self._containers.add(container)
        count = 0
        try:
            stream = find_video_stream(container, path)
            frames = _decode(container, stream, path)
            if self.deinterlace:
                frames = _deinterlace(frames, stream, every_frame=self.deinterlace == "all")
            for frame in frames:
                yield _to_rgb(frame, self.info, count)  # (h, w, 3)
                count += 1
                if self.closed:
                    return
        finally:
            self._containers.discard(container)
            container.close()
        if count != len(self):
            warn_user(
                f"{path}: decoded {count_of(count, 'frame')} but its header announced {len(self)}; "
                "the file may be truncated",
                RuntimeWarning,
            )

    def close(self) -> None:
        super().close()
        for container in list(self._containers):
            container.close()
        self._containers.clear()


#: Bytes at the end of a JPEG file searched for its end-of-image marker (after which some cameras write padding).
_JPEG_TAIL = 4096


def _is_cut_short_jpeg(data: bytes) -> bool:
    """Whether ``data``, the bytes of an image file, are a JPEG (its start-of-image marker FF D8: a PNG named .jpg,
    which OpenCV reads, was "cut short") without its end-of-image marker (FF D9): cut short by a failed copy. OpenCV
    decodes one with the missing rows grey, saying only "Premature end of JPEG file"."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-_JPEG_TAIL:]


#: Frame images whose own EXIF orientation is read, from the header (PIL finds a PNG's only by decoding it all).
_EXIF_FRAME_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff")


def _load_image(file: Path, info: VideoInfo, kinds: dict[str, str | None] | None = None) -> np.ndarray:
    """One frame of an image folder as (h, w, 3) uint8 RGB (16-bit images are scaled to 8). ``kinds``: gets
    ``"depth": "16-bit"`` for a 16-bit image and, unless it holds "alpha" already, ``"alpha"``: how the image
    carries transparency (`image_transparency`) for one that does."""
    try:
        data = file.read_bytes()  # read once: checked, then decoded
    except OSError as error:
        raise CorruptVideoError(f"{file} is not a readable image ({error.strerror}); replace or remove it") from None
    if _is_cut_short_jpeg(data):
        raise CorruptVideoError(f"{file} is cut short (its JPEG data ends before the end-of-image marker: a failed "
                                f"copy?); replace or remove it")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_FLAGS) if data else None
    except cv2.error as error:  # (a traceback) OpenCV's own limit on a header's size: 2^30 pixels
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):
            raise UnsupportedVideoError(too_large(file)) from None
        raise CorruptVideoError(f"{file} is not a readable image ({first_line(error)}); replace or remove it") from None
    if image is None:
        raise CorruptVideoError(f"{file} is not a readable image; replace or remove it")
    if kinds is not None and image.dtype == np.uint16:
        kinds["depth"] = "16-bit"
    if kinds is not None and "alpha" not in kinds:
        transparency = image_transparency(data)
        if transparency is not None:
            kinds["alpha"] = transparency
    if image.dtype == np.uint16:  # rounded: OpenCV's own 8-bit reading kept the high byte, half a level darker
        image = round_16_to_8_bits(image)
    orientation = info.orientation  # the first frame's EXIF orientation (a photo's own)
    if file.suffix.lower() in _EXIF_FRAME_SUFFIXES:  # each frame upright by its own: a folder whose first frame
        # alone was tagged turned every frame by that tag without a word
        orientation = exif_orientation(io.BytesIO(data)) or orientation
    image = orientation.apply(image)
    if image.shape[:2] != (info.height, info.width):  # found mid-way: a batch skips this clip, not the rest
        raise UnsupportedVideoError(
            f"{file} is {image.shape[1]}x{image.shape[0]} but the first frame of {info.path} is "
            f"{info.width}x{info.height}; all frames of a folder must have one size"
        )
    return image  # (h, w, 3)


def _image_files(info: VideoInfo) -> list[Path]:
    """The frame images of a frame folder in natural order, or a photo itself (`VideoInfo.is_photo`)."""
    return [info.path] if info.is_photo else list_image_files(info.path)


class ImageFolderReader(VideoReader):
    """Reads a folder of PNG/JPEG/TIFF/BMP/WebP frames in natural order (frame2 before frame10), or one photo as
    a folder of that frame (OpenCV decodes both alike)."""

    def __init__(self, info: VideoInfo) -> None:
        super().__init__(info)
        self.files = _image_files(info)

    def _frames(self) -> Iterator[np.ndarray]:
        # what the first frame lacks (its alpha channel or depth is a caveat of the probe, noted before), noted
        # once when a later frame has it (it went unsaid)
        notes = {"alpha": "has an alpha channel ({}), which the first frame of " + str(self.info.path) + " has "
                          "not; star-vsr works on RGB frames, so its transparency is dropped",
                 "depth": "is {}, unlike the first frame of " + str(self.info.path) + "; star-vsr works on 8-bit "
                          "frames, so it is read as 8-bit"}
        if has_alpha(self.info.pix_fmt) or self.info.side_alpha:
            del notes["alpha"]
        if pixel_bit_depth(self.info.pix_fmt) > 8:
            del notes["depth"]
        for index, file in enumerate(self.files):
            kinds = dict.fromkeys(kind for kind in ("alpha", "depth") if kind not in notes)  # (not looked for again)
            frame = _load_image(file, self.info, kinds if index and notes else None)
            for kind in set(kinds) & set(notes):
                warn_user(f"{file} {notes.pop(kind).format(kinds[kind])}")
            yield frame
            if self.closed:
                return


DEINTERLACE_CHOICES: dict[str, bool | Literal["auto"]] = {"auto": "auto", "on": True, "off": False}
"""The command line's ``--deinterlace`` values and what `open_video(deinterlace=)` they mean."""


def deinterlace_choice(value: str) -> bool | Literal["auto"]:
    """``--deinterlace auto|on|off`` as `open_video`'s `deinterlace` argument."""
    if value not in DEINTERLACE_CHOICES:  # was a KeyError
        raise InputError(f"deinterlace must be one of {', '.join(DEINTERLACE_CHOICES)}, got {value!r}")
    return DEINTERLACE_CHOICES[value]


def open_video(
    path: str | Path,
    *,
    folder_fps: float | Fraction = DEFAULT_FOLDER_FPS,
    deinterlace: bool | Literal["auto"] = False,
) -> VideoReader:
    """Open a video file (streamed with PyAV) or a folder of PNG/JPEG/TIFF/BMP/WebP frames for reading.

    Args:
        path: Video file or frame folder.
        folder_fps: Frame rate reported for a frame folder (ignored for files).
        deinterlace: Weave no fields: pass the frames of an interlaced video through
            `DEINTERLACER` (same frame count and rate). True: every frame; "auto": when the
            video is flagged interlaced (`VideoInfo.interlaced`), the frames flagged so; False:
            frames as decoded. Image folders are never deinterlaced. `read_frames` (random
            access for training) does not deinterlace.

    Returns:
        A `VideoReader`: `len`, re-iterable frames (h, w, 3) uint8 RGB, `iter_chunks`, `info`.

    Raises:
        VideoNotFoundError, CorruptVideoError, UnsupportedVideoError, InputError: as
        `probe_video`; `CorruptVideoError` also for a file cut short after its index
        (`VideoInfo.damage`). Decoding errors later, during iteration, raise `CorruptVideoError`.
    """
    if deinterlace not in (True, False, "auto"):
        raise InputError(f"deinterlace must be True, False or 'auto', got {deinterlace!r}")
    info = probe_video(path, folder_fps=folder_fps)
    if info.damage:  # found before any frame is decoded, not where the data ends
        raise CorruptVideoError(info.damage)
    if info.is_image_folder or info.is_photo:
        return ImageFolderReader(info)
    mode = "all" if deinterlace is True else "flagged" if deinterlace == "auto" and info.interlaced else False
    stored_w, stored_h = info.orientation.display_size(info.width, info.height)  # as decoded: the transpose undone
    if info.num_frames == 1:  # deinterlaced by `LONE_FRAME_DEINTERLACER`, whose minimum is the frame's alone
        filter_name, (smallest_w, smallest_h) = LONE_FRAME_DEINTERLACER, MIN_LONE_FRAME_DEINTERLACE_SIZE
    else:  # the minimum holds for every plane: a colour plane is 1 / block of the frame, rounded up (4:2:0: 5x7)
        try:
            block_h, block_w = chroma_block(info.pix_fmt)
        except (ValueError, TypeError, ZeroDivisionError):  # a format PyAV does not know: the luma plane alone
            block_h, block_w = 1, 1
        filter_name, (min_w, min_h) = DEINTERLACER, MIN_DEINTERLACE_SIZE
        smallest_w, smallest_h = max(min_w, (min_w - 1) * block_w + 1), max(min_h, (min_h - 1) * block_h + 1)
    if mode and (stored_w < smallest_w or stored_h < smallest_h):
        # FFmpeg's own refusal reads "FFmpeg failed: Invalid argument", at the first frame
        raise UnsupportedVideoError(f"{info.path} has {stored_w}x{stored_h} stored frames, too small to deinterlace "
                                    f"({filter_name} needs at least {smallest_w}x{smallest_h} for {info.pix_fmt}); "
                                    f"use {option('deinterlace=False', '--deinterlace off')}")
    return PyAVVideoReader(info, mode)


class _IrregularTimestampsError(Exception):
    """Frame timestamps do not map one-to-one onto frame indices (variable frame rate), or a seek did not reach
    the frame: random access gives way to decoding from the start."""


def _frame_index(frame: av.VideoFrame, stream: VideoStream, info: VideoInfo) -> int:
    if frame.pts is None:
        raise _IrregularTimestampsError
    return round((frame.pts - video_start(stream, info)) * stream.time_base * info.frame_rate)


def _seek_and_decode(
    container: InputContainer, stream: VideoStream, info: VideoInfo, wanted: list[int]
) -> dict[int, np.ndarray]:
    """Frames at the sorted indices `wanted`, seeking to the keyframe before far-away ones."""
    start = video_start(stream, info)
    found: dict[int, np.ndarray] = {}
    frames: Iterator[av.VideoFrame] | None = None
    position = -1  # index of the last decoded frame
    for target in wanted:
        if frames is None or target - position > MAX_DECODE_AHEAD:
            timestamp = start + int(target / info.frame_rate / stream.time_base)
            try:
                container.seek(timestamp, stream=stream, backward=True)
            except av.FFmpegError:  # a raw stream (.h264) cannot seek ("Operation not permitted"), nor can some
                # cut files: decoding from the start reads them, or reports the damage
                raise _IrregularTimestampsError from None
            frames = _decode(container, stream, info.path)
        try:
            for frame in frames:
                position = _frame_index(frame, stream, info)
                if position >= target:
                    break
            else:  # a truncated file, or a seek that missed: an MPEG-TS seek lands on the packet at that time, key
                # frame or not, and from a P-frame nothing decodes before the next key frame (frames 25-39 of a
                # 40-frame .ts with key frames at 0 and 20 came out as "the file may be truncated"); decoding
                # from the start tells the two apart
                raise _IrregularTimestampsError
        except CorruptVideoError:  # its "after N frames" counts from the key frame sought: decoding from the start
            raise _IrregularTimestampsError from None  # says where the damage is in the video
        if position != target:
            raise _IrregularTimestampsError
        found[target] = _to_rgb(frame, info)  # (h, w, 3)
    return found


def _decode_sequentially(info: VideoInfo, wanted: list[int]) -> dict[int, np.ndarray]:
    """Frames at the sorted indices `wanted`, counting decoded frames from the start."""
    found: dict[int, np.ndarray] = {}
    wanted_set = set(wanted)
    with open_container(info.path) as container:
        stream = find_video_stream(container, info.path)
        for index, frame in enumerate(_decode(container, stream, info.path)):
            if index in wanted_set:
                found[index] = _to_rgb(frame, info)  # (h, w, 3)
            if index == wanted[-1]:
                return found
    raise CorruptVideoError(
        f"{info.path} ends before frame {wanted[-1]} of {info.num_frames}; "
        "the file may be truncated"
    )


def _read_frames_pyav(info: VideoInfo, wanted: list[int]) -> dict[int, np.ndarray]:
    """PyAV random access; variable-frame-rate files fall back to decoding from the start."""
    with open_container(info.path) as container:
        stream = find_video_stream(container, info.path)
        try:
            return _seek_and_decode(container, stream, info, wanted)
        except _IrregularTimestampsError:
            logger.debug(
                "%s: timestamps do not give frame indices; decoding from the start", info.path
            )
    return _decode_sequentially(info, wanted)


#: Files decord failed on, as (path, size, modification time): read with PyAV from then on (decord fails after
#: decoding, so each read decoded them twice) and said once (decord's messages start with a time of day, so
#: Python's once-per-message filter said it on every read of a training run).
_DECORD_FAILED: set[tuple[str, int, int]] = set()


def _file_key(path: Path) -> tuple[str, int, int]:
    try:
        stat = Path(path).stat()
    except OSError:  # gone since the probe: decord's or PyAV's error says so
        return str(path), -1, -1
    return str(path), stat.st_size, stat.st_mtime_ns


def _decord_reason(error: Exception) -> str:
    """The first line of decord's error without its ``[hh:mm:ss] file.cc:171: `` prefix."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", first)


def _read_frames_decord(info: VideoInfo, indices: list[int]) -> np.ndarray:
    """decord random access, (k, h, w, 3) uint8 RGB in the order of `indices`."""
    import decord  # optional: not built for every platform

    reader = decord.VideoReader(str(info.path), ctx=decord.cpu(0))
    frames = info.orientation.apply(reader.get_batch(indices).asnumpy())  # (k, h, w, 3)
    if frames.shape != (len(indices), info.height, info.width, 3) or frames.dtype != np.uint8:
        raise ValueError(f"decord returned frames shaped {frames.shape} ({frames.dtype})")
    return frames


def _check_indices(indices: Sequence[int] | np.ndarray, info: VideoInfo) -> list[int]:
    array = np.asarray(indices)
    if array.size and (array.ndim != 1 or array.dtype.kind not in "iu"):
        raise InputError(
            f"indices must be a 1-D sequence of integers, got {array.dtype} shaped {array.shape}"
        )
    bad = [int(i) for i in array.reshape(-1) if not 0 <= i < info.num_frames]
    if bad:
        raise InputError(
            f"frame indices {bad[:5]} are outside 0..{info.num_frames - 1} of {info.path}"
        )
    return [int(i) for i in array.reshape(-1)]


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    backend: Literal["auto", "decord", "pyav"] = "auto",
) -> np.ndarray:
    """Frames at arbitrary indices, for training: (k, h, w, 3) uint8 RGB in the order asked.

    Indices may repeat and come in any order. Frame folders load just the files asked for.

    Args:
        path: Video file or frame folder.
        indices: k frame indices in ``0 .. num_frames - 1``.
        backend: "decord" (fast random access; a file decord cannot read is read with PyAV from then on,
            with a warning), "pyav" (seek to the keyframe before each
            far-away frame, decode on), or "auto": the frames `open_video` streams, read with PyAV, or with
            decord for RGB-coded video (FFV1 RGB, ...) when it is installed and reads the file. decord reads
            YUV video unlike the rest of star-vsr: about 1 to 1.5 levels darker (FFmpeg's default YUV -> RGB
            rounding; `RGB_CONVERSION`), and untagged HD video as BT.601 (players show BT.709); about 40 %
            faster on 10-frame windows of 320x180 H.264.

    Raises:
        InputError: an index is out of range, or backend="decord" without decord installed.
        VideoNotFoundError, CorruptVideoError, UnsupportedVideoError: as `open_video`.
    """
    if backend not in ("auto", "decord", "pyav"):
        raise InputError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    info = probe_video(path)  # (a frame folder's rate does not matter: frames are picked by index)
    wanted = _check_indices(indices, info)
    if info.frames_cut and wanted and max(wanted) >= info.num_frames - info.frames_cut:  # earlier ones may read
        raise CorruptVideoError(f"{info.damage} (frame {max(wanted)} was asked for)")
    if not wanted:
        return np.empty((0, info.height, info.width, 3), dtype=np.uint8)
    if info.is_image_folder or info.is_photo:
        files = _image_files(info)
        return np.stack([_load_image(files[index], info) for index in wanted])  # (k, h, w, 3)
    rgb_coded = info.pix_fmt in av.video.format.names and av.VideoFormat(info.pix_fmt).is_rgb
    key = _file_key(info.path) if backend == "decord" or (backend == "auto" and rgb_coded) else None
    if key is not None and key not in _DECORD_FAILED:
        try:
            return _read_frames_decord(info, wanted)
        except ImportError as error:
            if backend == "decord":
                raise InputError(
                    "backend='decord' needs decord: pip install decord, or use backend='pyav'"
                ) from error
        except Exception as error:  # decord raises DECORDError, RuntimeError, IndexError, ...
            # decord fails on files PyAV reads (some widths, rotated video): not "corrupt" unless PyAV fails too
            _DECORD_FAILED.add(key)
            if backend == "decord":
                warn_user(f"{info.path}: decord cannot read the frames ({_decord_reason(error)}); reading "
                          f"them with PyAV from now on, in star-vsr's colours (decord's are about 1 level darker)")
            logger.debug("%s: decord failed (%s); reading with PyAV", info.path, error)
    try:
        found = _read_frames_pyav(info, sorted(set(wanted)))
    except CorruptVideoError as error:
        if info.frames_cut:  # a frame shown before the cut can be stored after it (B-frames: decoding order)
            raise CorruptVideoError(f"{info.damage} (frame {max(wanted)} was asked for)") from error
        raise
    return np.stack([found[index] for index in wanted])  # (k, h, w, 3)
