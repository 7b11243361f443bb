"""Writing videos: `VideoWriter` streams frames into an H.264/H.265/FFV1 file or a PNG folder.

Output is atomic (`star_vsr.io.atomic`): frames go into a hidden temporary file (or folder) next to the final
path, which is renamed onto the final path only when `close()` succeeds. After any error nothing appears under
the final name, and a file already there is left untouched. The source's audio is carried over by
`star_vsr.io.audio`.

Odd frame sizes: H.264/H.265 store 4:2:0 chroma (yuv420p), which needs even width and
height. Such frames are padded on the right/bottom edge by repeating the last column/row,
so a 63x47 input is written as 64x48 (with one warning). FFV1 and PNG keep any size.

Colour: YUV output is converted with the BT.709 matrix in limited range and tagged as BT.709
(matrix, primaries, transfer), as HD video is. Untagged, players guess BT.709 for HD sizes
while FFmpeg's converter defaults to BT.601, which shifted reds and greens visibly.

Encoding runs inside `write`. x264 already encodes in its own threads; handing frames to a
background Python thread as well was measured (star-vsr upscale path, 320x180 -> 1280x720 on
2 cores) and gained nothing: the model and x264 together keep both cores busy.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import weakref
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation
from tqdm.auto import tqdm

from star_vsr.errors import (InputError, OutputError, RanOutOfMemoryError, UnsupportedVideoError, cannot_write,
                             cli_advice, option)
from star_vsr.interrupts import raise_if_interrupted
from star_vsr.io.atomic import check_no_replace, move_into_place, remove_temporary, temporary_path
from star_vsr.io.audio import AudioCopy, carries_audio, check_audio
from star_vsr.io.folders import VIDEO_EXTENSIONS
from star_vsr.io.probe import DEFAULT_FOLDER_FPS, as_frame_rate, check_exists, chroma_block, probe_video
from star_vsr.io.tags import output_tags
from star_vsr.outputs import PNG_NAME, is_frame_output
from star_vsr.progress import bar_options
from star_vsr.user_warnings import warn_user

logger = logging.getLogger(__name__)

H264_DEFAULT_CRF = 18
"""x264 constant-rate factor used when `crf` is None. x264's documentation calls 18 about
visually lossless (its own default, 23, visibly softens restored detail)."""

H265_DEFAULT_CRF = 24
"""x265 constant-rate factor used when `crf` is None. FFmpeg's H.265 guide rates x265 CRF 28
like x264 CRF 23, so 24 matches `H264_DEFAULT_CRF` at a smaller file size."""

MAX_CRF = 51
"""Largest CRF x264/x265 accept for 8-bit video (0 is best quality)."""

YUV_CONVERSION = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
"""FFmpeg's (swscale's) flags for RGB -> YUV: accurate rounding (the default shifted colours by about 0.1 level;
about 1 ms more per 720p frame). `star_vsr.io.reader.RGB_CONVERSION` is the way back."""

PNG_COMPRESSION = 3
"""zlib level of PNG frames (0-9): lossless at every level; 3 is much faster than 9 and
only a few percent larger."""


@dataclass(frozen=True)
class _VideoCodec:
    """How one `codec` choice of `VideoWriter` is encoded."""

    encoder: str  # FFmpeg encoder name
    pix_fmt: str  # default pixel format
    suffixes: tuple[str, ...]  # containers that hold it
    default_crf: int | None  # None: lossless, no CRF
    options: tuple[tuple[str, str], ...] = ()  # extra encoder options
    reorder_delay: int = 0  # frames the decoder holds back (B-frame pyramid: 2 with x264's / x265's defaults)
    min_size: int = 1  # smallest width and height the encoder opens with (after padding to the pixel format)
    max_size: int | None = None  # longest side it opens with (None: no known limit)
    refuses_sizes: bool = False  # opens for some sizes only, and says not which (x265): a failure to open may be that


X264_MAX_SIZE = 16384
"""The longest side, in pixels, that libx264 opens an encoder for (16388 fails: "Generic error in an external
library")."""

#: libx264 options for `VideoWriter(reproducible=True)`. With its assembly code, x264 (its AVX-512 code; the
#: degradation chain's in-memory encode found the macroblock-tree rate control) gave different bitstreams for
#: the same frames from run to run: `star-vsr degrade` of a 720p clip to .mp4, three runs, three files whose
#: frames differed by up to 18 levels. Without it, four runs out of four were identical (as with mbtree=0).
#: Its threads too: `star-vsr demo` (16 frames of 240x160, the same frames every run) wrote three different
#: student.mp4 files in four runs with asm=0 alone, one with threads=1 as well (2-core CPU, 2026-12-07).
#: The degradation chain's in-memory encode (`star_vsr.degradations.codec`) uses the same parameters.
X264_REPRODUCIBLE_PARAMS = "asm=0:threads=1"
X264_REPRODUCIBLE: tuple[tuple[str, str], ...] = (("x264-params", X264_REPRODUCIBLE_PARAMS),)

VIDEO_CODECS: dict[str, _VideoCodec] = {
    "h264": _VideoCodec("libx264", "yuv420p", (".mp4", ".mkv", ".mov"), H264_DEFAULT_CRF, reorder_delay=2,
                        max_size=X264_MAX_SIZE),
    "h265": _VideoCodec(
        "libx265",
        "yuv420p",
        (".mp4", ".mkv", ".mov"),
        H265_DEFAULT_CRF,
        # the x265-params option is set per frame width, `x265_params`
        reorder_delay=2,
        min_size=16,  # x265 refuses 14x16 and 16x14 (avcodec_open2: "Invalid argument"); 16x16 opens
        refuses_sizes=True,  # some long thin ones too (16x4352, 8192x16)
    ),
    # bgr0: 8-bit RGB, so RGB frames round-trip exactly (FFV1 has no 8-bit planar RGB)
    "ffv1": _VideoCodec("ffv1", "bgr0", (".mkv",), None),
}
X265_CUTREE_MAX_WIDTH = 64
"""Widest frames x265 encodes with its CU-tree off. x265 (the build in PyAV's wheel) corrupted its heap on
frames 34 to 48 pixels wide (most heights from 16 to 100 at least, e.g. 48x32, 40x24, 36x100; on 2026-12-04,
default options): the process aborted with "corrupted size vs. prev_size" or a segmentation fault when the
encoder was freed, after writing a complete file. With ``cutree=0`` every one of those sizes encoded cleanly
(two runs each); no size from 16 to 136 pixels wide outside 34-48 failed. The CU-tree only tunes the rate
control, so frames this small lose nothing worth the risk; 64 leaves a margin."""


def x265_params(width: int) -> str:
    """libx265's ``x265-params`` for frames ``width`` pixels wide (quiet; no CU-tree for narrow frames)."""
    return "log-level=error" + (":cutree=0" if width <= X265_CUTREE_MAX_WIDTH else "")


CODECS: tuple[str, ...] = (*VIDEO_CODECS, "png")
"""Values accepted for `VideoWriter(codec=...)`."""


def check_png_folder(path: Path, codec: str) -> None:
    """`InputError` if PNG frames would go into a folder that holds other files than an earlier output's frames."""
    if codec == "png" and path.is_dir() and any(path.iterdir()) and not is_frame_output(path):
        raise InputError(f"{path} already holds files; write the PNG frames to a new or empty folder")


def check_video_output(path: str | Path, codec: str | None, audio_from: str | Path | None) -> None:
    """What `VideoWriter` refuses when it opens ``path`` (a codec that does not fit the name, audio the container
    cannot take), said before a model loads; ``audio_from`` None: no audio is kept."""
    codec = _resolve_codec(Path(path), codec)
    if audio_from is not None and codec != "png":
        if carries_audio(check_exists(audio_from)):
            check_audio(Path(audio_from), Path(path).suffix)


def finish_error(path: str | Path, error: av.FFmpegError) -> OutputError:
    """FFmpeg refusing to finish ``path`` (a muxer's trailer, an encoder's flush) as one line."""
    without = cli_advice("keep_audio=False", "--no-audio")  # (degrade and demo keep the audio)
    return OutputError(f"cannot finish {path}: FFmpeg failed ({error}); try another output container (.mkv)"
                       + (f", or {without} if the input's audio is unusual" if without else ""))


#: The outputs that keep an odd frame size, which 4:2:0 video pads to even (upscale-batch's -o is a folder: no -o).
ODD_SIZE_CODECS = "--codec ffv1 (a .mkv file) or --codec png (a folder of frames)"


class FrameClock:
    """When frame k of an output is shown: k / `frame_rate`, or `frame_times[k]` for variable-rate
    video (`VideoInfo.timeline`: one entry more than frames is when the last frame stops being
    shown), extrapolated at 1 / `frame_rate` outside the list (encoders give decode timestamps
    before frame 0 when they reorder frames).

    Encoders always count frames (pts = k at time base 1 / frame_rate); `retime` moves their
    packets onto this clock when muxing, so variable-rate output keeps each input frame's time.
    """

    VFR_TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock

    def __init__(self, frame_rate: Fraction, frame_times: Sequence[Fraction] | None = None) -> None:
        self.frame_rate = frame_rate
        self.frame_times = None if frame_times is None else [Fraction(t) for t in frame_times]
        self.time_base = 1 / frame_rate if self.frame_times is None else self.VFR_TIME_BASE
        if self.frame_times:  # two frames at one time (or out of order) would stop the .mp4 muxer: 1 tick apart
            tick = self.VFR_TIME_BASE
            for k in range(1, len(self.frame_times)):
                self.frame_times[k] = max(self.frame_times[k], round(self.frame_times[k - 1] / tick) * tick + tick)

    def seconds(self, k: int) -> Fraction:
        """Time of frame k in seconds."""
        times = self.frame_times
        if times is None or not times:
            return k / self.frame_rate
        if k < 0:
            return times[0] + k / self.frame_rate
        if k >= len(times):
            return times[-1] + (k - len(times) + 1) / self.frame_rate
        return times[k]

    def ticks(self, k: int) -> int:
        """Time of frame k in `time_base` units."""
        return k if self.frame_times is None else round(self.seconds(k) / self.time_base)

    def retime(self, packet: av.Packet, pts_frame: int, dts_frame: int) -> None:
        """Give `packet` (frame `pts_frame`, decoded at frame `dts_frame`) this clock's timestamps."""
        packet.time_base = self.time_base
        packet.pts, packet.dts = self.ticks(pts_frame), self.ticks(dts_frame)
        packet.duration = self.ticks(pts_frame + 1) - self.ticks(pts_frame)


class _EncodedSink:
    """Encodes frames into one container file with PyAV (video stream set up on the first frame)."""

    def __init__(
        self,
        temp: Path,
        codec: _VideoCodec,
        frame_rate: Fraction,
        crf: int | None,
        pix_fmt: str,
        audio_from: Path | None,
        pixel_aspect: Fraction,
        clock: FrameClock,
        tags: tuple[dict[str, str], dict[str, str]] = ({}, {}),
    ) -> None:
        self._codec, self._frame_rate, self._crf, self._pix_fmt = codec, frame_rate, crf, pix_fmt
        self._pixel_aspect, self._clock = pixel_aspect, clock
        self._audio_from = audio_from
        self._container = av.open(str(temp), mode="w")
        self._container.metadata.update(tags[0])
        self._video_tags = tags[1]
        self._stream: av.VideoStream | None = None
        self._audio: AudioCopy | None = None
        self._count = 0
        self._own_dts: bool | None = None  # whether _mux replaces the encoder's decode timestamps
        self._packets_muxed = 0

    def _start(self, height: int, width: int) -> None:
        options = dict(self._codec.options)
        if self._codec.encoder == "libx265":
            options["x265-params"] = x265_params(width)
        if self._crf is not None:
            options["crf"] = str(self._crf)
        stream = self._container.add_stream(
            self._codec.encoder, rate=self._frame_rate, options=options
        )
        stream.width, stream.height, stream.pix_fmt = width, height, self._pix_fmt
        stream.metadata.update(self._video_tags)
        if self._pixel_aspect != 1:  # in the bitstream (H.264/H.265) and in MP4/MOV headers, not Matroska's
            stream.codec_context.sample_aspect_ratio = stream.sample_aspect_ratio = self._pixel_aspect
        self._yuv = not av.VideoFormat(self._pix_fmt).is_rgb
        if self._yuv:  # tags written into the bitstream (VUI) and the container
            context = stream.codec_context
            context.colorspace, context.color_range = Colorspace.ITU709, ColorRange.MPEG
            context.color_primaries, context.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        # time base 1/fps: frame i has pts i, so 30000/1001 fps stays exact
        stream.codec_context.time_base = 1 / self._frame_rate
        if self._clock.frame_times is not None:
            stream.time_base = self._clock.time_base  # the container's; packets are retimed onto it
        if self._codec.encoder == "libx265" and self._container.format.name in ("mp4", "mov"):
            stream.codec_tag = "hvc1"  # the H.265 tag Apple players require in .mp4/.mov
        self._stream = stream
        if self._audio_from is not None:
            self._audio = AudioCopy(self._audio_from, self._container)

    def write(self, frame: np.ndarray) -> None:
        """Encode one (h, w, 3) uint8 RGB frame."""
        if self._stream is None:
            self._start(*frame.shape[:2])
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        if self._yuv:
            video_frame = video_frame.reformat(format=self._pix_fmt, dst_colorspace=Colorspace.ITU709,
                                               dst_color_range=ColorRange.MPEG, interpolation=YUV_CONVERSION)
        video_frame.pts = self._count
        try:
            packets = self._stream.encode(video_frame)
        except av.FFmpegError as error:
            if self._count:
                raise
            # the encoder opens with the first frame: x264 takes at most X264_MAX_SIZE pixels a side, x265 refuses
            # some long thin sizes (16x4352, 8192x16), and FFmpeg says only "Generic error in an external library",
            # also for an encoder that could not allocate its buffers (x264 at 1920x1080 under `ulimit -v 700000`)
            ffv1, why = option('codec="ffv1"', "--codec ffv1"), error.strerror or error
            height, width = frame.shape[:2]
            if not self._codec.refuses_sizes:  # (`_start` checked its limits: this size is not why)
                other = f", or write them with {ffv1}" if self._codec.encoder != "ffv1" else ""
                raise RanOutOfMemoryError(
                    f"{self._codec.encoder} could not start encoding frames of {width}x{height}, a size it encodes "
                    f"({why}): most likely memory ran out; free memory (close other programs){other}") from error
            raise UnsupportedVideoError(f"{self._codec.encoder} cannot encode frames of {width}x{height} ({why}); "
                                        f"write them with {ffv1} (any size), or upscale by less") from error
        self._mux(packets)
        self._count += 1
        if self._audio is not None:
            self._audio.mux_until(self._clock.seconds(self._count))

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:  # pts / dts count frames (time base 1 / fps)
            delay = self._codec.reorder_delay
            if self._own_dts is None and packet.pts is not None:
                # x265 now and then hands out garbage decode timestamps (-62551903713508, or one frame after
                # the frame is shown) for short clips, which .mp4 refuses when it closes ("pts/dts pair
                # unsupported"); then the k-th packet decodes at k - (frames the decoder holds back)
                self._own_dts = packet.dts is None or not packet.pts - delay <= packet.dts <= packet.pts
            if self._own_dts:
                packet.dts = self._packets_muxed - delay
            self._packets_muxed += 1
            if self._clock.frame_times is not None:
                self._clock.retime(packet, packet.pts, packet.pts if packet.dts is None else packet.dts)
        self._container.mux(packets)

    def finish(self) -> None:
        """Flush the encoder, finish the audio, write the container trailer."""
        self._mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish()
        self._container.close()

    def abort(self) -> None:
        """Close everything without caring whether the file is complete."""
        for closable in (self._audio, self._container):
            if closable is not None:
                try:
                    closable.close()
                except Exception as error:  # the output is being thrown away anyway
                    logger.debug("ignored while aborting: %s", error)


class _PngSink:
    """Writes each frame as a PNG file into a folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self._folder = folder
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        """Write one (h, w, 3) uint8 RGB frame as the next PNG file."""
        file = self._folder / PNG_NAME.format(self._count)
        encoded, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                     [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        if not encoded:
            raise OSError(f"could not encode {file} as PNG")
        file.write_bytes(data.tobytes())  # Python's write: a full disk raises ENOSPC (cv2.imwrite says only False)
        self._count += 1

    def finish(self) -> None:
        """Nothing to flush: every frame is already a complete file."""

    def abort(self) -> None:
        """Nothing open: the folder is removed by the writer."""


def output_name(name: str, codec: str | None = None, *, folder: bool = False) -> str:
    """The output name for an input named ``name`` written with ``codec`` (None: H.264).

    The same name when the codec's containers include its suffix, else the first of them
    (``a.avi`` -> ``a.mp4`` for H.264, ``a.mp4`` -> ``a.mkv`` for FFV1); for PNG frames the
    stem, a folder name (``a.mp4`` -> ``a``). An input that is a ``folder`` of frames has no
    suffix to drop (``calendar`` -> ``calendar.mp4``, ``clip.v2`` -> ``clip.v2.mp4``; PNG: itself, but a
    folder named like a video, ``clip.mp4``, writes ``clip_mp4``).
    """
    path = Path(name)
    stem, suffix = (path.name, "") if folder else (path.stem, path.suffix.lower())
    if codec == "png":  # a folder; named like a video (a frame folder "clip.mp4") it would be refused as one
        return f"{path.stem}_{path.suffix[1:]}" if folder and path.suffix.lower() in VIDEO_EXTENSIONS else stem
    suffixes = VIDEO_CODECS[codec or "h264"].suffixes
    return path.name if suffix in suffixes else stem + suffixes[0]


def output_names(names: list[str], codec: str | None = None, folders: Collection[str] = (),
                 kept: Mapping[str, str] | None = None) -> dict[str, str]:
    """`output_name` of each input name (those in ``folders`` are frame folders), made unique: where
    several inputs would get one output name (``clip.avi`` and ``clip.mp4`` both give ``clip.mp4``),
    an input whose own name it is keeps it and the others carry their suffix in the stem
    (``clip_avi.mp4``; a frame folder ``clip``: ``clip_frames.mp4``). ``kept``: input name -> an output name an
    earlier run gave it (of the suffix ``codec`` gives), which it keeps and no other input gets. `InputError` if
    names still clash."""
    wanted = {name: output_name(name, codec, folder=name in folders) for name in names}
    unique = {name: out for name, out in (kept or {}).items()
              if name in wanted and Path(out).suffix == Path(wanted[name]).suffix}
    reserved = set(unique.values())
    taken = Counter(out for name, out in wanted.items() if name not in unique)
    lowered = Counter(name.lower() for name in names)  # clip.mp4 and clip.MP4 keep their suffixes' case
    for name, out in wanted.items():
        if name in unique:
            continue
        if out in reserved or (taken[out] > 1 and out != name):
            path = Path(name)
            suffix = path.suffix[1:] if lowered[name.lower()] > 1 else path.suffix[1:].lower()
            out = (output_name(f"{name}_frames", codec, folder=True) if name in folders else
                   output_name(f"{path.stem}_{suffix}{path.suffix}", codec))
        unique[name] = out
    given = Counter(unique.values())
    clashes = sorted(name for name, out in unique.items() if given[out] > 1)
    if clashes:
        raise InputError(f"{', '.join(clashes)} would be written to one output name; rename one of them")
    return unique


def writes_frames(path: Path, codec: str | None) -> bool:
    """Whether `path` written with `codec` (None: from the name) is a folder of PNG frames, which stores no
    frame rate: ``--codec png``, or no codec and a folder or a name without a suffix."""
    return (codec or _codec_from_name(path)) == "png"


def _codec_from_name(path: Path) -> str:
    """PNG frames for a folder or a name without a suffix; H.264 for the rest, a folder named like a video too
    (`_resolve_codec` refuses that folder: PNG frames went into an empty ``out.mp4/`` without a word)."""
    named_video = path.suffix.lower() in VIDEO_EXTENSIONS
    return "png" if (path.is_dir() and not named_video) or not path.suffix else "h264"


def output_size_multiple(path: str | Path, codec: str | None) -> tuple[int, int]:
    """(h, w) that frames written to `path` with `codec` (None: from the name) must be multiples of, before a
    writer is opened: `VideoWriter.size_multiple` of that writer (2 x 2 for 4:2:0 video, 1 x 1 for FFV1 and PNG)."""
    return chroma_block(_check_pix_fmt(codec or _codec_from_name(Path(path)), None))


def _resolve_codec(path: Path, codec: str | None) -> str:
    """The codec to write `path` with, checked against the path's kind and suffix."""
    from_name = codec is None
    if codec is None:
        codec = _codec_from_name(path)
    if codec not in CODECS:
        raise UnsupportedVideoError(
            f"codec {codec!r} is not supported; choose one of {', '.join(CODECS)}"
        )
    if codec == "png":
        if path.exists() and not path.is_dir():
            raise InputError(
                f"{path} is a file; a PNG sequence is written into a folder, give a folder path"
            )
        if path.suffix.lower() in VIDEO_EXTENSIONS and not path.is_dir():
            raise InputError(
                f"PNG frames go into a folder, and {path} is named like a video file; give a folder "
                f"name ({path.with_suffix('')}) or a video codec for it"
            )
        return codec
    if path.is_dir():
        png = option('codec="png"', "--codec png")
        raise InputError(f"{path} is a folder; codec {codec!r} writes a file (or use {png} for a frame folder)")
    suffixes = VIDEO_CODECS[codec].suffixes
    known = sorted({suffix for spec in VIDEO_CODECS.values() for suffix in spec.suffixes})
    if from_name and path.suffix.lower() not in known:  # no --codec given: do not blame the default one
        h265 = option('codec="h265"', "--codec h265")
        raise UnsupportedVideoError(
            f"star-vsr does not write videos as {path.suffix} files ({path}); name the output "
            f"{' / '.join(known)} "
            f"(H.264 by default; {h265}, or ffv1 for .mkv), or give a "
            "name without a suffix for a folder of PNG frames"
        )
    if path.suffix.lower() not in suffixes:
        raise UnsupportedVideoError(
            f"{codec} video cannot be written to a {path.suffix or 'suffix-less'} file ({path}); "
            f"use {' or '.join(suffixes)}"
        )
    return codec


def check_crf(codec: str, crf: int | None) -> int | None:
    """The CRF to encode with: `crf`, or the codec's default; None for lossless codecs."""
    default = VIDEO_CODECS[codec].default_crf if codec in VIDEO_CODECS else None
    if crf is None:
        return default
    if default is None:
        raise InputError(f"crf applies to h264/h265 only; {codec} is lossless, "
                         f"{option('leave crf=None', 'drop --crf')}")
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= MAX_CRF:
        raise InputError(
            f"crf must be an integer in 0..{MAX_CRF} (lower is better quality), got {crf!r}"
        )
    return int(crf)  # NumPy's integers too


def _check_pix_fmt(codec: str, pix_fmt: str | None) -> str:
    """The pixel format to encode with: `pix_fmt` if the encoder takes it, else the default."""
    if codec == "png":
        if pix_fmt not in (None, "rgb24"):
            raise InputError(
                f"PNG sequences are written as rgb24; pix_fmt {pix_fmt!r} is not available"
            )
        return "rgb24"
    spec = VIDEO_CODECS[codec]
    if pix_fmt is None:
        return spec.pix_fmt
    supported = [video_format.name for video_format in av.Codec(spec.encoder, "w").video_formats]
    if pix_fmt not in supported:
        raise UnsupportedVideoError(
            f"{spec.encoder} cannot encode pix_fmt {pix_fmt!r}; use one of {', '.join(supported)}"
        )
    return pix_fmt


def warn_png_drops_audio(label: str, audio_path: Path) -> None:
    """PNG frames cannot hold audio: say that ``audio_path``'s audio is not copied."""
    warn_user(f"{label}: PNG frames cannot hold audio; the audio of {audio_path} is not copied. "
              f"{_video_output_hint(label)}")


def warn_png_drops_frame_rate(label: str, frame_rate: Fraction) -> None:
    """PNG frames store no frame rate: warn when ``frame_rate`` is not the one a folder of frames is read at."""
    if frame_rate == DEFAULT_FOLDER_FPS:
        return
    warn_user(f"{label}: PNG frames store no frame rate; star-vsr reads a folder of frames at "
              f"{float(DEFAULT_FOLDER_FPS):g} fps, not this video's {float(frame_rate):.6g} ("
              f"{option('folder_fps, when the folder is read,', '--fps of upscale or degrade')} sets it). "
              f"{_video_output_hint(label)}")


def warn_lost_pixel_aspect(label: str, what: str, aspect: Fraction, height: int, width: int, keeper: str) -> None:
    """Warn that ``what`` (PNG frames, an image, ...) cannot store the pixel aspect ratio ``aspect`` of frames of
    ``width`` x ``height`` stored pixels; ``keeper``: the output that would keep it."""
    warn_user(f"{label}: {what} cannot store the pixel aspect ratio {aspect.numerator}:{aspect.denominator}; "
              f"players will show the {width}x{height} frames at that size instead of "
              f"{round(width * aspect)}x{height}. {keeper}")


def _video_output_hint(label: str) -> str:
    """How to write a video file instead of the PNG frames going to ``label``: a video suffix for a name without
    one (which is why it gets frames; ``--codec h264`` alone is refused there), else another ``--codec``."""
    path = Path(label)
    if not path.suffix:
        ffv1 = option('codec="ffv1"', "--codec ffv1")
        return f"An output named {path.name}.mp4 (H.264), or {path.name}.mkv with {ffv1} (lossless), keeps it"
    return option('codec="h264"', "--codec h264") + ", h265 or ffv1 keeps it"


def _check_pixel_aspect(pixel_aspect: Fraction | float) -> Fraction:
    """`pixel_aspect` as a Fraction (floats snap to a denominator of at most 1000)."""
    if isinstance(pixel_aspect, bool) or not isinstance(pixel_aspect, (int, float, Fraction)) \
            or not 0 < pixel_aspect < float("inf"):
        raise InputError(f"pixel_aspect must be a positive number, got {pixel_aspect!r}")
    return Fraction(pixel_aspect).limit_denominator(1000)


class VideoWriter:
    """Writes frames to a video file or PNG folder, atomically, as a context manager.

    Example::

        with VideoWriter("out.mp4", info.frame_rate, audio_from=info.path) as writer:
            for chunk in reader.iter_chunks(16):
                writer.write(upscale(chunk))  # (n, h, w, 3) uint8 RGB

    Args:
        path: Output file (.mp4/.mkv/.mov; .mkv for FFV1), or a folder for PNG frames.
            Missing parent folders are created. An existing file is replaced on success.
        fps: Frame rate; a Fraction (e.g. `VideoInfo.frame_rate`, 30000/1001) is kept exactly,
            a float snaps to the nearest fraction with denominator <= 1001.
        codec: "h264" (libx264, yuv420p, CRF `H264_DEFAULT_CRF`), "h265" (libx265, CRF
            `H265_DEFAULT_CRF`), "ffv1" (lossless RGB, .mkv only) or "png" (a folder of
            `PNG_NAME` files). None: "png" when `path` is a folder or has no suffix, else "h264".
        crf: Constant-rate factor for h264/h265, 0..51 (lower is better); None for the default.
        audio_from: Video whose first audio stream is copied into the output, with its tags (re-encoded to
            AAC if the container cannot hold it). Nothing is added when it has no audio; PNG
            folders cannot hold audio (a warning says so).
        pix_fmt: Encoder pixel format (e.g. "yuv444p" for h264); None for the codec default.
        progress: Show a tqdm bar of frames written.
        total_frames: Expected frame count, only for the progress bar.
        label: What warnings call the output (default: `path`; a segment of a longer output names
            that output).
        pixel_aspect: Width / height of a pixel as shown, stored in the output (`VideoInfo.
            pixel_aspect` of the input keeps anamorphic video's shape); PNG frames and FFV1 in
            Matroska cannot hold it (a warning says so).
        frame_times: Each frame's time in seconds for variable-rate output (`VideoInfo.timeline` of
            the input keeps its timing and audio sync); one entry more than frames written is when the
            last frame stops being shown (else it lasts 1 / fps). None: frame i at i / fps.
        reproducible: make H.264 the same bitstream for the same frames on every run (`X264_REPRODUCIBLE`:
            x264 without its assembly code and on one thread, several times slower; for small outputs such as
            `star-vsr degrade`'s LR videos and the demo's). FFV1 and PNG always are; H.265 is not guaranteed.
        overwrite: replace what is at `path` (default). False: an `OutputExistsError` if `path` exists now, or
            at `close` if something appeared there while writing (it is kept; see `move_into_place`).
        tags_from: Video whose metadata tags (title, creation time, the video track's language: `star_vsr.io.tags`)
            the output keeps; PNG folders hold none.

    Frame sizes that the pixel format cannot hold (odd sizes for yuv420p) are padded by edge
    replication on the right/bottom, with a warning; see the module docstring.

    Raises:
        UnsupportedVideoError: unknown codec, or a codec the path's container cannot hold.
        InputError: bad crf, pix_fmt, frames (not uint8 (h, w, 3)/(n, h, w, 3), size changes)
            or output folder; closing a writer that received no frames.
        VideoNotFoundError, CorruptVideoError: `audio_from` is missing or unreadable.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        *,
        codec: str | None = None,
        crf: int | None = None,
        audio_from: str | Path | None = None,
        pix_fmt: str | None = None,
        progress: bool = False,
        total_frames: int | None = None,
        label: str | Path | None = None,
        pixel_aspect: Fraction | float = Fraction(1),
        frame_times: Sequence[Fraction] | None = None,
        reproducible: bool = False,
        overwrite: bool = True,
        tags_from: str | Path | None = None,
    ) -> None:
        self.path = Path(path).expanduser()  # "~/out.mp4" as the command line takes it
        self.label = str(label or self.path)
        self.overwrite = overwrite
        check_no_replace(self.path, overwrite)
        self.pixel_aspect = _check_pixel_aspect(pixel_aspect)
        self.frame_rate = as_frame_rate(fps)
        self.codec = _resolve_codec(self.path, codec)
        self.crf = check_crf(self.codec, crf)
        self.pix_fmt = _check_pix_fmt(self.codec, pix_fmt)
        audio_source = self._check_audio_source(audio_from)
        tags = output_tags(tags_from, self.codec)
        check_png_folder(self.path, self.codec)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(self.label, error) from None
        self.frames_written = 0
        self.frame_size: tuple[int, int] | None = None  # (h, w) of the frames given
        self._block = chroma_block(self.pix_fmt)
        self._temp = temporary_path(self.path)
        self._cleanup = weakref.finalize(self, remove_temporary, self._temp)  # also if never closed
        try:
            if self.codec == "png":
                self._sink: _EncodedSink | _PngSink = _PngSink(self._temp)
            else:
                spec = VIDEO_CODECS[self.codec]
                if reproducible and spec.encoder == "libx264":
                    spec = dataclasses.replace(spec, options=(*spec.options, *X264_REPRODUCIBLE))
                self._sink = _EncodedSink(
                    self._temp, spec, self.frame_rate, self.crf, self.pix_fmt, audio_source,
                    self.pixel_aspect, FrameClock(self.frame_rate, frame_times), tags,
                )
        except OSError as error:
            self._cleanup()
            raise cannot_write(self.label, error) from None
        self._state = "open"  # then "closed" or "aborted"
        # the bar starts with the first frame (or `start_progress`), so an error before prints only its message
        self._bar_settings = dict(
            total=total_frames, unit="frame", desc=self.path.name, disable=not progress
        )
        self._bar: tqdm | None = None

    @property
    def is_open(self) -> bool:
        """Whether frames can still be written (not closed, and not aborted by an error)."""
        return self._state == "open"

    def start_progress(self) -> None:
        """Show the progress bar now, before the first frame: a caller that computes frames in batches calls
        this when the work starts, so that the bar's frames per second count the time the first batch took
        (opened by the first frame, the bar timed only its encoding: `star-vsr degrade` showed 1,500 frame/s)."""
        if self._bar is None and self._state == "open":
            self._bar = tqdm(**self._bar_settings, **bar_options())

    @property
    def size_multiple(self) -> tuple[int, int]:
        """(h, w) that frame sizes must be multiples of to be stored without padding (2 x 2 for
        4:2:0 video, 1 x 1 for FFV1 and PNG)."""
        return self._block

    def _check_audio_source(self, audio_from: str | Path | None) -> Path | None:
        """`audio_from` if it has audio to copy, else None."""
        if audio_from is None:
            return None
        info = probe_video(check_exists(audio_from))
        if not carries_audio(info.path):  # (an empty track: none)
            return None
        if self.codec == "png":
            warn_png_drops_audio(self.label, info.path)
            return None
        check_audio(info.path, self.path.suffix)
        return info.path

    def _check_encodable_size(self, codec: _VideoCodec, size: tuple[int, int]) -> None:
        """``UnsupportedVideoError`` for frames of ``size`` (h, w) that ``codec``'s encoder refuses, said before
        its own "Invalid argument" (too small) or "Generic error" (too large), with a codec that takes them."""
        padded = (size[0] + -size[0] % self._block[0], size[1] + -size[1] % self._block[1])  # (see _pad)
        if min(padded) < codec.min_size:
            others = ["h264", "ffv1"] if max(padded) <= X264_MAX_SIZE else ["ffv1"]
            takes = option(" or ".join(f'codec="{name}"' for name in others), f"--codec {' or '.join(others)}")
            raise UnsupportedVideoError(
                f"{self.codec} ({codec.encoder}) encodes frames of at least {codec.min_size}x{codec.min_size}, and "
                f"these are {size[1]}x{size[0]}; write them with {takes}")
        if codec.max_size is not None and max(padded) > codec.max_size:
            ffv1 = option('codec="ffv1"', "--codec ffv1")
            raise UnsupportedVideoError(
                f"{self.codec} ({codec.encoder}) encodes frames of at most {codec.max_size} pixels a side, and these "
                f"are {size[1]}x{size[0]}; write them with {ffv1} (any size), or upscale by less")

    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        """`frames` as a (n, h, w, 3) uint8 stack, or `InputError` naming the problem."""
        if not isinstance(frames, np.ndarray):
            raise InputError(f"frames must be a numpy array, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise InputError(
                f"frames must be uint8 (0..255), got {frames.dtype}; "
                "convert with (x * 255).round().astype(np.uint8)"
            )
        stack = frames[None] if frames.ndim == 3 else frames  # (n, h, w, 3)
        if stack.ndim != 4 or stack.shape[-1] != 3 or 0 in stack.shape[1:3]:
            raise InputError(
                f"frames must be RGB shaped (h, w, 3) or (n, h, w, 3), got {frames.shape}"
            )
        size = stack.shape[1:3]
        if self.frame_size is None:
            if self.codec in VIDEO_CODECS:
                self._check_encodable_size(VIDEO_CODECS[self.codec], size)
            self.frame_size = size
            self._warn_lost_pixel_aspect(*size)
            if self.codec == "png":
                warn_png_drops_frame_rate(self.label, self.frame_rate)
        elif size != self.frame_size:
            raise InputError(
                f"frame size changed from {self.frame_size[1]}x{self.frame_size[0]} "
                f"to {size[1]}x{size[0]}; every frame of {self.path} must have one size"
            )
        return stack

    def _warn_lost_pixel_aspect(self, height: int, width: int) -> None:
        """Warn when the output cannot store a pixel aspect other than 1: PNG has no field for it, and
        Matroska takes it from the stream header, which PyAV cannot set (H.264/H.265 carry it in their
        bitstream, so only FFV1 loses it)."""
        if self.pixel_aspect == 1 or self.codec not in ("ffv1", "png"):
            return
        what = "PNG frames" if self.codec == "png" else "FFV1 video in Matroska, as written by star-vsr,"
        keeper = option('codec="h264"', "--codec h264") + " or h265 keeps it"
        warn_lost_pixel_aspect(self.label, what, self.pixel_aspect, height, width, keeper)

    def _pad(self, frame: np.ndarray) -> np.ndarray:
        """Pad (h, w, 3) on the bottom/right by edge replication to the pixel format's block."""
        height, width = frame.shape[:2]
        pad_h, pad_w = -height % self._block[0], -width % self._block[1]
        if not (pad_h or pad_w):
            return frame
        if self.frames_written == 0:
            keeps = option('codec="ffv1" (a .mkv file) or "png" (a folder)', ODD_SIZE_CODECS)
            warn_user(f"{self.label}: {self.pix_fmt} needs sizes divisible by {self._block[1]}x{self._block[0]}; "
                      f"{width}x{height} frames are padded to {width + pad_w}x{height + pad_h} by repeating the last "
                      f"column/row ({keeps} keeps {width}x{height})")
        padding = ((0, pad_h), (0, pad_w), (0, 0))
        return np.pad(frame, padding, mode="edge")  # (h + pad_h, w + pad_w, 3)

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (h, w, 3) or a stack (n, h, w, 3) of uint8 RGB frames.

        Any error aborts the writer (the temporary output is deleted) and is re-raised.
        """
        if self._state != "open":
            raise InputError(f"the writer of {self.path} is {self._state}; open a new VideoWriter")
        try:
            raise_if_interrupted()  # Ctrl-C whose KeyboardInterrupt was lost (``interrupts``)
            for frame in self._check_frames(frames):
                self._sink.write(np.ascontiguousarray(self._pad(frame)))  # (h', w', 3)
                self.frames_written += 1
                self.start_progress()
                self._bar.update(1)
        except OSError as error:
            self.abort()
            raise cannot_write(self.label, error) from None
        except BaseException:
            self.abort()
            raise

    def close(self) -> None:
        """Finish encoding and move the output onto `path`. Closing twice does nothing."""
        if self._state != "open":
            return
        try:
            if self.frames_written == 0:
                raise InputError(f"no frames were written to {self.path}; nothing was saved")
            self._sink.finish()
            move_into_place(self._temp, self.path, self.overwrite)
        except OSError as error:
            self.abort()
            raise cannot_write(self.label, error) from None
        except av.FFmpegError as error:
            self.abort()
            raise finish_error(self.label, error) from None
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        self._cleanup.detach()
        self._close_bar()

    def abort(self) -> None:
        """Stop writing and delete the temporary output; `path` is left as it was."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._sink.abort()
        self._cleanup()  # removes the temporary file or folder
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
