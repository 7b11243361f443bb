"""Video metadata without decoding: `probe_video` and the helpers the reader shares.

A "video" is either a container file (anything FFmpeg demuxes: .mp4, .mkv, .mov, .avi, ...)
or a folder of PNG/JPEG/TIFF/BMP/WebP frames, sorted naturally (``frame2.png`` before ``frame10.png``).
Probing reads container headers, the timestamps of every video packet (from the index of an MP4 / MOV,
which needs no reading of the file unless the frame rate varies or the file is very short; otherwise by
demuxing, which reads the file but decodes nothing: the frame count, which headers leave out (Matroska)
or overstate (AVI with packed B-frames), and how far a variable frame rate strays from a constant one),
and the first frame of a file for its display matrix (phone videos store portrait footage as landscape frames
with "rotate by 90 degrees"). Results are cached per file version.

Sizes are display sizes: the reader turns frames upright as players (and FFmpeg's command
line) do, so a portrait phone video is read as portrait frames.
"""

from __future__ import annotations

import collections
import functools
import io
import logging
import math
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Sequence

import av
import numpy as np
from av.container import InputContainer
from av.sidedata.sidedata import Type as SideDataType
from av.video.reformatter import ColorPrimaries, ColorTrc
from av.video.stream import VideoStream
from PIL import Image, UnidentifiedImageError

from star_vsr.errors import CorruptVideoError, InputError, UnsupportedVideoError, VideoNotFoundError, why_missing
from star_vsr.io.folders import IMAGE_EXTENSIONS, list_image_files, missing_numbers
from star_vsr.units import count_of, seconds_amount
from star_vsr.user_warnings import warn_user

logger = logging.getLogger(__name__)

_HDR_TRANSFERS = {ColorTrc.SMPTE2084: "PQ", ColorTrc.ARIB_STD_B67: "HLG"}  # transfer tag -> HDR system

UNTAGGED_COLORSPACE = 2
"""FFmpeg's AVCOL_SPC_UNSPECIFIED (PyAV's Colorspace enum has no member for it)."""


def is_untagged_hd(colorspace: int, width: int, height: int, is_rgb: bool) -> bool:
    """Whether YUV frames without a colour matrix tag are HD (wider than 1279 or taller than 576 pixels,
    stored size): players show them as BT.709, where FFmpeg's converter (and decord) take BT.601."""
    return colorspace == UNTAGGED_COLORSPACE and (width >= 1280 or height > 576) and not is_rgb

DEFAULT_FOLDER_FPS: Fraction = Fraction(30)
"""Frame rate given to image folders, which carry none. Pass ``folder_fps`` to change it."""

MAX_FPS_DENOMINATOR = 1001
"""Largest denominator kept when a float frame rate becomes a Fraction: NTSC rates are
n * 1000/1001 (29.97 = 30000/1001), and every common rate has a denominator of at most 1001."""

SHORT_FILE_FRAMES = 5
"""Files of at most this many frames have their packets demuxed even when an index lists them: the
decode timestamps of the frames an encoder holds back (2 for x264 / x265, a few more for others) lie
before the first frame, evenly spaced by the writer, so in a file that short they hide a variable rate."""
AUDIO_LEAD_NOTE_S = 0.1
"""Audio that starts more than this many seconds before the first frame gets a note (`VideoInfo.audio_lead_s`)."""

VARIABLE_RATE_FRAMES = 0.5
"""Frame times farther than this many frame periods from a constant rate make a video variable-rate (its frames
keep their own times): past half a period some frame would be shown in another frame's slot at the constant rate
(a GIF with 0.1 / 0.2 / 0.1 s delays), while the jitter of rounded timestamps stays far below it."""

CUT_SHORT_FRAMES = 2
"""Frame periods a Matroska header may place the video's end past the end of its last frame before the file
counts as cut short (`VideoInfo.missing_s`; it was a fixed 0.5 s, which let a short clip lose half its frames
without a note). The header's end is exact to the millisecond; the last frame ends where its packet's duration
says, else 1 / fps after it starts: a file that holds its last frame longer without giving packet durations
gets a note too many (which says it may be that) and a `duration_s` that ends with that frame."""

_EXIF_ORIENTATION = 0x0112
"""The EXIF tag of how a photo is turned to be shown upright."""

# FFmpeg pixel-format names for the Pillow modes an image folder may hold.
_PIL_MODE_TO_PIX_FMT = {
    "RGB": "rgb24",
    "RGBA": "rgba",
    "L": "gray",
    "LA": "ya8",
    "P": "pal8",
    "I;16": "gray16le",
}


@dataclass(frozen=True)
class DisplayOrientation:
    """How a decoded frame is turned to be shown upright: from a video's display matrix, or a photo's (and a frame
    folder's first frame's) EXIF orientation.

    The eight right-angle cases (four rotations, each optionally mirrored) as three steps
    applied in order: swap rows and columns (`transpose`), mirror left-right (`flip_x`), turn
    upside down (`flip_y`). All False is the identity.
    """

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @classmethod
    def from_display_matrix(cls, matrix: bytes) -> DisplayOrientation | None:
        """The orientation that FFmpeg's display matrix `matrix` describes, or None if no
        right angle does.

        `matrix` is FFmpeg's 3x3 int32 matrix ``[a b u; c d v; x y w]`` (16.16 fixed point),
        which maps a stored pixel (x, y) to the displayed ``(a x + c y, b x + d y)`` plus a
        shift: with b = c = 0 the axes stay and negative a / d mirror them; with a = d = 0
        the axes swap and negative c / b mirror the new x / y.
        """
        a, b, _, c, d = struct.unpack("<9i", matrix)[:5]
        if a and d and not b and not c:
            return cls(transpose=False, flip_x=a < 0, flip_y=d < 0)
        if b and c and not a and not d:
            return cls(transpose=True, flip_x=c < 0, flip_y=b < 0)
        return None

    @classmethod
    def from_exif(cls, orientation: int) -> DisplayOrientation:
        """The orientation of a photo's EXIF tag 0x0112 (1-8, as cameras and phones write it; anything else:
        none)."""
        return {2: cls(flip_x=True), 3: cls(flip_x=True, flip_y=True), 4: cls(flip_y=True), 5: cls(transpose=True),
                6: cls(transpose=True, flip_x=True), 7: cls(transpose=True, flip_x=True, flip_y=True),
                8: cls(transpose=True, flip_y=True)}.get(orientation, cls())

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_x or self.flip_y)

    def display_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of a `width` x `height` stored frame once turned upright."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Turn stored frames upright: (..., h, w, c) -> (..., h', w', c), contiguous."""
        if self.is_identity:
            return frames
        if self.transpose:
            frames = np.swapaxes(frames, -3, -2)
        if self.flip_x:
            frames = frames[..., :, ::-1, :]
        if self.flip_y:
            frames = frames[..., ::-1, :, :]
        return np.ascontiguousarray(frames)

    def describe(self) -> str:
        """In words, as `star-vsr info` prints it: "rotated 90 degrees clockwise"."""
        return {
            (False, False, False): "none",
            (False, True, True): "rotated 180 degrees",
            (True, True, False): "rotated 90 degrees clockwise",
            (True, False, True): "rotated 90 degrees counter-clockwise",
            (False, True, False): "mirrored left-right",
            (False, False, True): "mirrored upside down",
            (True, False, False): "transposed (rotated 90 degrees clockwise, mirrored)",
            (True, True, True): "anti-transposed (rotated 90 degrees counter-clockwise, mirrored)",
        }[(self.transpose, self.flip_x, self.flip_y)]


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, known without decoding it.

    Attributes:
        path: The file or image folder.
        num_frames: Frame count: the number of video packets (from the index or by demuxing), the
            container header's count for a file cut short (frames the reader then reports missing), or
            the number of images.
        fps: Frames per second as a float; `frame_rate` holds the exact value.
        width: Frame width in pixels.
        height: Frame height in pixels.
        codec: Video codec name as FFmpeg calls it ("h264", "hevc", "ffv1"; for image folders the
            first image's format as PIL names it: "png", "jpeg", "tiff", "bmp", "webp").
        pix_fmt: Pixel format of the stream ("yuv420p"; "rgb24" for RGB images).
        duration_s: Duration in seconds.
        has_audio: Whether the container has an audio stream.
        audio_codec: Codec of the first audio stream, or None.
        is_image_folder: True for a folder of PNG/JPEG/TIFF/BMP/WebP frames.
        frame_rate: The exact frame rate (30000/1001 for 29.97 fps); pass it to `VideoWriter`.
        orientation: How the reader turns stored frames upright (the container's display
            matrix); `width` and `height` are already the upright size.
        pixel_aspect: Width / height of one pixel as shown (sample aspect ratio; 32/27 for
            widescreen NTSC DVD video at 720x480), of the upright frames; 1 for square pixels.
        interlaced: The first frame is flagged interlaced (two fields of different instants
            woven together: DVD, broadcast and camcorder footage); see `open_video(deinterlace=)`.
        timing_error_s: How far (seconds) the latest frame is from where a constant `frame_rate`
            puts it, ``max |t_i - t_0 - i / fps|`` over the frame timestamps and the end of the last frame
            where the file says it: 0 for constant-rate video, large for variable-rate recordings (screen
            captures, some phones) and for a last frame held longer than the others. 0 where unknown.
        frame_times: For variable-rate video (`timing_error_s` over `VARIABLE_RATE_FRAMES`), each frame's
            time in seconds from the first; None for constant-rate video, where frame i is at
            i / `frame_rate`. Writers keep them from `timeline` (`VideoWriter(frame_times=)`).
        hdr: "PQ" or "HLG" for high-dynamic-range video (its transfer tag), else None.
        wide_gamut: The stream is tagged with BT.2020 colour primaries (UHD's wide gamut). Its values are read as
            they are and outputs are tagged BT.709, so its colours come out less saturated (`notes` says so).
        audio_streams, subtitle_streams: How many there are (outputs carry the first audio stream).
        cover_pictures: Attached pictures (cover art, a thumbnail: video streams of one still image), which are
            not read as video and not kept.
        missing_s: Seconds of video that the file's header lists after its last frame: a Matroska file
            cut short (an interrupted download or copy; its frames are a playable start, which is read;
            a recording that was never finished has no such header and goes unnoticed), or one whose
            last frame is held that much longer without its packet saying so; 0 otherwise.
            `duration_s` is then what the frames cover. (An MP4 cut short keeps its index's frame
            count instead: `frames_cut`.)
        frames_cut: Frames that the container's index (MP4 / MOV) lists past the end of the file: it was cut
            short after its index was written (an interrupted download or copy of a "faststart" file), and
            decoding would fail where its data ends; 0 otherwise. `damage` says so; `open_video` refuses such a
            file, `read_frames` the frames it lacks (counted in decoding order, so with B-frames a few shown
            before them can be missing too).
        untagged_hd: The stream has no colour matrix tag and HD frames (wider than 1279 or taller than
            576 pixels), so it is read as BT.709, as players show it (decord would take BT.601).
        last_frame_s: For variable-rate video, how long its last frame is shown (its packet's
            duration: a GIF holding its last picture for 2 s says 2 s), when the file says so (the
            last-shown frame is also the last decoded one and its packet has a duration); else None.
        video_streams: How many video streams (cover pictures not counted); star-vsr reads the first.
        audio_cut: The index (MP4 / MOV) of the first audio stream lists packets past the end of the file:
            the end of the audio is missing (the file was cut short inside the audio that follows the last
            frame); outputs carry the audio that is there.
        side_alpha: The stream carries transparency beside its pixel format (VP8 / VP9 in WebM tagged
            ``alpha_mode`` 1, which FFmpeg's own decoder drops: `pix_fmt` reads yuv420p; a palette or grey PNG's
            transparent colour, its tRNS chunk: `pix_fmt` reads pal8 or gray).
        audio_lead_s: Seconds by which the first audio stream starts before the first frame (a recording whose
            picture starts late): an .mp4 / .mov output leaves that audio out, a .mkv output keeps it; 0 when
            the audio starts with the video or after it.
        pages: Pages of a photo file (a multi-page TIFF), of which only the first is read; of a frame folder's
            first frame file, of each of which only the first page is read; 1 otherwise.
        colour_profile: The name of the ICC colour profile embedded in a photo or a frame folder's first frame,
            where it is not sRGB: star-vsr reads the values as sRGB and writes no profile; None otherwise.
        missing_numbers: Ranges (first, last) of frame numbers missing from a frame folder whose files are
            numbered (``0001.png``, ``0002.png``, ``0005.png``): the frames around them follow each other; () else.
        undecodable_lead: Frames at the start of the stream that cannot be decoded, left out (a recording or
            transport stream that starts inside a group of pictures: its frames before the first key frame
            reference pictures it does not hold); 0 otherwise. `num_frames` and the timing count from the first
            frame that decodes.
        start_pts: The presentation timestamp (in the stream's time base) of that first frame, where
            `undecodable_lead` > 0; None otherwise, where the stream's start time is the video's start.
        raw_stream: The file is a raw elementary stream (.h264, .h265, .m2v: no container), whose frames carry
            no timestamps: they are timed at `frame_rate`, the rate its headers give (H.264's VUI timing).
        rate_assumed: A raw stream whose headers give no rate: `frame_rate` is FFmpeg's assumption, 25 fps.
        last_frame_cut: A Y4M file that ends inside a frame (an interrupted copy, or a pipe from an encoder that
            was stopped): its whole frames are read (`num_frames`), the part of the next one is left out, as
            FFmpeg does without a word (`y4m_cut_inside_frame`).
    """

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    duration_s: float
    has_audio: bool
    audio_codec: str | None
    is_image_folder: bool
    frame_rate: Fraction
    orientation: DisplayOrientation = field(default_factory=DisplayOrientation)
    pixel_aspect: Fraction = Fraction(1)
    interlaced: bool = False
    timing_error_s: float = 0.0
    hdr: str | None = None
    wide_gamut: bool = False
    frame_times: tuple[Fraction, ...] | None = field(default=None, repr=False)
    audio_streams: int = 0
    subtitle_streams: int = 0
    cover_pictures: int = 0
    missing_s: float = 0.0
    frames_cut: int = 0
    untagged_hd: bool = False
    last_frame_s: Fraction | None = None
    video_streams: int = 1
    audio_cut: bool = False
    side_alpha: bool = False
    audio_lead_s: float = 0.0
    pages: int = 1
    colour_profile: str | None = None
    missing_numbers: tuple[tuple[int, int], ...] = ()
    start_pts: int | None = None
    undecodable_lead: int = 0
    raw_stream: bool = False
    rate_assumed: bool = False
    last_frame_cut: bool = False

    @property
    def missing_number_count(self) -> int:
        """How many frame numbers `missing_numbers` holds."""
        return sum(last - first + 1 for first, last in self.missing_numbers)

    @property
    def numbering_gaps(self) -> str:
        """`missing_numbers` in words: "2 frame numbers are missing from its numbering (3-4)"."""
        count = self.missing_number_count
        gaps = ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in self.missing_numbers[:3])
        more = ", ..." if len(self.missing_numbers) > 3 else ""
        return f"{count_of(count, 'frame number')} {'is' if count == 1 else 'are'} missing from its numbering " \
               f"({gaps}{more})"

    @property
    def alpha_kind(self) -> str | None:
        """How the frames carry transparency, which star-vsr drops: the pixel format ("rgba"), or what carries it
        beside ("vp9 alpha_mode 1", "pal8 with a transparent colour"); None when they carry none (FFmpeg decodes
        every GIF, opaque ones too, as bgra: a GIF's is not counted)."""
        if self.side_alpha:
            image = self.is_image_folder or self.is_photo
            return f"{self.pix_fmt} with {self.side_alpha_kind}" if image else f"{self.codec} {self.side_alpha_kind}"
        return self.pix_fmt if has_alpha(self.pix_fmt) and self.codec != "gif" else None

    @property
    def side_alpha_kind(self) -> str:
        """How `side_alpha` is stored: "alpha_mode 1" (VP8 / VP9 in WebM) or "a transparent colour" (an image's)."""
        return "a transparent colour" if self.is_image_folder or self.is_photo else "alpha_mode 1"

    @property
    def is_photo(self) -> bool:
        """A single image file (PNG, JPEG, ...): read as a folder of that one frame is (`is_photo_file`)."""
        return not self.is_image_folder and is_photo_file(self.path, self.num_frames)

    @property
    def timeline(self) -> tuple[Fraction, ...] | None:
        """What writers take as ``frame_times`` to keep this video's timing: `frame_times`, then the
        time its last frame stops being shown when that is known (`last_frame_s`); None for
        constant-rate video."""
        if self.frame_times is None or self.last_frame_s is None:
            return self.frame_times
        return (*self.frame_times, self.frame_times[-1] + self.last_frame_s)

    @property
    def damage(self) -> str | None:
        """Why the file cannot be read whole (`frames_cut`), as a sentence for the user; None when it can."""
        if not self.frames_cut:
            return None
        return (f"{self.path} is cut short (an interrupted download or copy?): its index lists {self.num_frames} "
                f"frames, but the data of the last "
                f"{'one' if self.frames_cut == 1 else f'{self.frames_cut} frames'} is missing from the file; get a "
                f"complete copy")

    def caveats(self) -> list[str]:
        """What a user should know before this video is upscaled or degraded, one sentence each."""
        notes = []
        if self.audio_streams > 1:
            notes.append(f"{self.path} has {self.audio_streams} audio tracks; the output keeps the first")
        if self.video_streams > 1:
            notes.append(f"{self.path} has {self.video_streams} video tracks; star-vsr reads the first "
                         f"({self.width}x{self.height})")
        if self.audio_cut:
            notes.append(f"{self.path}: the end of its audio track is missing from the file (cut short?); the "
                         f"output's audio ends where the file's does")
        if self.subtitle_streams:
            tracks = "a subtitle track" if self.subtitle_streams == 1 else f"{self.subtitle_streams} subtitle tracks"
            notes.append(f"{self.path} has {tracks}, which the output does not keep")
        if self.cover_pictures:  # (left out without a word, where a subtitle track was named: black-box hunt)
            notes.append(f"{self.path} has cover art (an attached picture), which the output does not keep")
        if self.audio_lead_s > AUDIO_LEAD_NOTE_S:  # (an encoder's priming samples start it a few ms early)
            notes.append(f"{self.path}: its audio starts {self.audio_lead_s:.2f} s before its first frame; an .mp4 "
                         f"or .mov output leaves that audio out (a .mkv output keeps it)")
        if self.raw_stream:
            rate = ("which FFmpeg assumes (its headers give none); if its rate is another, put it in a container "
                    f"at that rate first (ffmpeg -r 30 -i {self.path.name} -c copy video.mp4)" if self.rate_assumed
                    else "the rate its headers give")
            notes.append(f"{self.path} is a raw {self.codec} stream without a container or timestamps: it is read at "
                         f"{self.fps:g} fps, {rate}")
        if self.undecodable_lead:
            notes.append(f"{self.path} starts inside a group of pictures (a recording or transport stream cut "
                         f"mid-stream?): its first {count_of(self.undecodable_lead, 'frame')} cannot be decoded and "
                         f"are left out; the video starts at its first key frame")
        if self.pages > 1 and self.is_image_folder:  # (a page of each frame file, without a word: black-box hunt)
            notes.append(f"{self.path}: its first frame file has {self.pages} pages (a multi-page image); star-vsr "
                         f"reads the first page of each frame file")
        elif self.pages > 1:
            notes.append(f"{self.path} has {self.pages} pages (a multi-page image); star-vsr reads the first as a "
                         f"photo (save the pages as a folder of frames to read them as a video)")
        if self.missing_numbers:  # (closed up without a word, as if no frame were lost: black-box hunt)
            notes.append(f"{self.path}: {self.numbering_gaps}; the frames around the gaps follow each other (PNG "
                         f"frames out are numbered from 0)")
        if self.colour_profile is not None:  # (dropped without a word, its values read as sRGB: black-box hunt)
            what = "its frames carry" if self.is_image_folder else "it carries"
            notes.append(f"{self.path}: {what} a colour profile ({self.colour_profile}); star-vsr reads the values as "
                         f"sRGB and writes no profile, so wide-gamut colours come out less saturated; convert to "
                         f"sRGB first for true colours")
        if self.last_frame_cut:
            notes.append(f"{self.path} {LAST_FRAME_CUT}: its {self.num_frames} whole frames are read")
        if self.missing_s:
            notes.append(
                f"{self.path} looks cut short (an interrupted download or copy?): its header lists "
                f"{seconds_amount(self.duration_s + self.missing_s)} of video, its frames cover "
                f"{seconds_amount(self.duration_s)}; only its {self.num_frames} frames are read (if it is whole, its "
                f"last frame is held "
                f"{seconds_amount(self.missing_s)} longer, as in videos made from GIFs)"
            )
        if self.alpha_kind is not None:
            notes.append(f"{self.path} has an alpha channel ({self.alpha_kind}); star-vsr works on RGB frames, so "
                         f"its transparency is dropped (composite it onto a background first to choose one)")
        depth = pixel_bit_depth(self.pix_fmt)
        if self.hdr is None and depth > 8:
            notes.append(f"{self.path} is {depth}-bit ({self.pix_fmt}); star-vsr works on 8-bit frames, so the output "
                         f"is 8-bit (smooth gradients may show bands)")
        if self.hdr is not None:
            notes.append(
                f"{self.path} is HDR ({self.hdr}); star-vsr works on 8-bit SDR frames and writes a BT.709 SDR "
                f"file, so the output looks flat and pale; tone-map it to SDR first for true colours"
            )
        elif self.wide_gamut:  # (HDR is BT.2020 too: said above)
            notes.append(f"{self.path} has BT.2020 (wide gamut) colours; star-vsr writes BT.709 files without "
                         f"converting them, so the output's colours are less saturated; convert it to BT.709 first "
                         f"for true colours")
        return notes


def has_alpha(pix_fmt: str) -> bool:
    """Whether FFmpeg's pixel format ``pix_fmt`` has an alpha component ("rgba", "ya8"); False for a name FFmpeg
    does not know."""
    return pix_fmt in av.video.format.names and any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def pixel_bit_depth(pix_fmt: str) -> int:
    """Bits per component of an FFmpeg pixel format ("yuv420p10le" -> 10); 8 for a name FFmpeg does not know
    (PIL modes of image folders)."""
    if pix_fmt not in av.video.format.names:
        return 8
    return max(component.bits for component in av.VideoFormat(pix_fmt).components)


def chroma_block(pix_fmt: str) -> tuple[int, int]:
    """(height, width) of the luma block one colour sample covers in `pix_fmt`: (2, 2) for yuv420p, (1, 1) for RGB.
    Frames the writer encodes are multiples of it; each colour plane is 1 / block of the frame, rounded up."""
    probe_size = 64  # any size divisible by the largest subsampling factor (4, yuv410p)
    video_format = av.VideoFormat(pix_fmt)
    return probe_size // video_format.chroma_height(probe_size), probe_size // video_format.chroma_width(probe_size)


def as_frame_rate(fps: float | int | Fraction) -> Fraction:
    """Exact frame rate from a number: 29.97002997 -> 30000/1001, 25.0 -> 25.

    Floats snap to the nearest fraction with a denominator of at most `MAX_FPS_DENOMINATOR`.
    Raises `InputError` for a rate that is not positive and finite.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise InputError(f"fps must be a number, got {fps!r}")
    if not (0 < float(fps) < float("inf")):
        raise InputError(f"fps must be positive and finite, got {fps!r}")
    if isinstance(fps, float):
        rate = Fraction(fps).limit_denominator(MAX_FPS_DENOMINATOR)
        if rate == 0:  # not "got Fraction(0, 1)" later
            raise InputError(f"fps {fps!r} is too low: a float rate is kept to a denominator of at most "
                             f"{MAX_FPS_DENOMINATOR}; give a Fraction for a rate that low")
        return rate
    return Fraction(fps)


def timeline_rate(timestamps: Sequence[int], time_base: Fraction, rate: Fraction) -> Fraction:
    """``rate``, unless it places some frame of the sorted ``timestamps`` (ticks of ``time_base``) more than a
    tick away, or is not of the form N or N x 1000/1001 fps (a mean of rounded timestamps: 29909/997), and
    such a rate near their mean places every one within a tick.

    FFmpeg estimates the rate of a stream whose container lists none from its first packets; with
    millisecond timestamps (33, 34, 33 ms ...) and few packets probed (large frames), 30 fps can come out
    as 30000/1001, 10 ms off after 300 frames, which the frame times show.
    """
    if len(timestamps) < 3 or timestamps[-1] <= timestamps[0]:
        return rate
    tick, first = Fraction(time_base), timestamps[0]

    def fits(candidate: Fraction) -> bool:  # every frame within a tick (_timing_error is exact, in integers)
        return _timing_error(timestamps, tick, candidate) <= float(tick) * (1 + 1e-9)

    if rate.denominator in (1, 1001) and fits(rate):
        return rate
    mean = (len(timestamps) - 1) / ((timestamps[-1] - first) * tick)
    for candidate in (Fraction(round(mean)), Fraction(round(mean * Fraction(1001, 1000)) * 1000, 1001)):
        if candidate > 0 and fits(candidate):
            return candidate
    return rate


def check_exists(path: str | Path) -> Path:
    """`path` as a Path, or `VideoNotFoundError` when nothing is there; `UnsupportedVideoError` for a pipe, a device
    or a socket (an input is read more than once); `InputError` for a folder that cannot be listed (its files'
    permissions are the readers' to check)."""
    path = Path(path).expanduser()  # "~/clip.mp4" as the command line takes it
    if str(path) == "-" and not path.exists():  # (it said "- does not exist": black-box hunt)
        raise VideoNotFoundError("the input '-' (standard input to many tools): star-vsr reads its input more than "
                                 "once (to probe it, then to decode it), so not from standard input; save the video "
                                 "to a file and give that")
    if not path.exists():
        raise VideoNotFoundError(f"{path} {why_missing(path)}; check the path of the input video or frame folder")
    kind = _special_file_kind(path)
    if kind is not None:  # a pipe was probed, then read again for the frames: it hung, or "is not a readable video"
        raise UnsupportedVideoError(f"{path} is {kind}, not a file: star-vsr reads its input more than once (to probe "
                                    f"it, then to decode it); save the video to a file and give that")
    if path.is_dir():
        try:
            with os.scandir(path) as entries:  # (a PermissionError from deep inside, exit status 1, which info
                next(entries, None)  # gives damaged clips)
        except PermissionError:
            raise InputError(f"{path} cannot be read: permission denied") from None
    return path


def _special_file_kind(path: Path) -> str | None:
    """What ``path`` is when it is neither a file nor a folder ("a pipe (FIFO)": also ``/dev/stdin`` fed by a pipe;
    "a device", "a socket"); None for a file or a folder."""
    mode = path.stat().st_mode
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else None


def open_container(path: Path) -> InputContainer:
    """Open a video file with PyAV, turning FFmpeg's errors into star-vsr errors."""
    path = check_exists(path)
    if path.is_file() and path.stat().st_size == 0:
        raise CorruptVideoError(f"{path} is empty (0 bytes); a download or copy that never finished?")
    try:  # tags not in UTF-8 (a camera's Latin-1 title) raised UnicodeDecodeError from PyAV: a traceback
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.PermissionError as error:
        raise InputError(f"{path} cannot be read: permission denied") from error
    except av.FFmpegError as error:
        cut = iso_box_cut_short(path) if path.is_file() else None
        if cut is not None:  # (an MP4 / MOV cut before its index at the end: "may be truncated, ..., or not a video")
            raise CorruptVideoError(f"{path} is cut short (an interrupted download or copy?): the file ends inside its "
                                    f"{cut!r} box; get a complete copy") from error
        raise CorruptVideoError(
            f"{path} is not a readable video ({error.strerror or error}); "
            "the file may be truncated, damaged, or not a video at all"
        ) from error


def video_streams(container: InputContainer) -> list[VideoStream]:
    """The real video streams of `container`: not cover-art pictures (attached to audio files)."""
    return [stream for stream in container.streams.video
            if not stream.disposition & av.stream.Disposition.attached_pic]


def find_video_stream(container: InputContainer, path: Path) -> VideoStream:
    """First real video stream of `container` (cover-art pictures are skipped).

    Raises `CorruptVideoError` when there is none, `UnsupportedVideoError` when FFmpeg has
    no decoder for it.
    """
    streams = video_streams(container)
    if not streams:
        raise CorruptVideoError(
            f"{path} contains no video stream; give a video file or a frame folder"
        )
    stream = streams[0]
    if stream.codec_context is None:
        raise UnsupportedVideoError(
            f"{path}: its video codec cannot be decoded by the FFmpeg inside PyAV; convert "
            "the video to H.264 (.mp4) with a tool that can read it, then try again"
        )
    return stream


def _indexed_timestamps(stream: VideoStream) -> list[int] | None:
    """Sorted decode timestamps of every frame from the container's index (MP4 / MOV: nothing read),
    or None when the index does not list one entry per frame. Decode timestamps are spaced like the
    presentation ones in constant-rate video; a variable rate shows up in them too, only less exactly."""
    index = stream.index_entries
    if stream.frames <= 0 or index is None or len(index) != stream.frames:
        return None
    shown = sorted(entry.timestamp for entry in index if not entry.is_discard)  # not an edit list's pre-roll
    return shown or None  # (every entry discarded: a crafted media timescale of 0, read from the packets then)


#: Packets after the first decodable frame's that can still be shown before it (an open GOP's leading pictures):
#: H.264's largest reorder depth.
MAX_REORDER = 16

#: Codecs whose FFmpeg decoder outputs nothing before the first frame it can decode (`_undecodable_lead`).
LEAD_CODECS = frozenset({"h264", "hevc", "mpeg2video"})

#: FFmpeg's demuxers of raw elementary streams: no container, no timestamps (`VideoInfo.raw_stream`).
RAW_STREAM_FORMATS = frozenset({"h264", "hevc", "mpegvideo", "m4v", "vc1", "cavsvideo", "obu", "vvc"})

#: FFmpeg demuxers whose video track's duration runs to the end of its last-shown frame (MP4 / MOV's edit list).
TRACK_END_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


def _frame_timestamps(container: InputContainer, stream: VideoStream, path: Path, untimed_rate: Fraction | None = None
                      ) -> tuple[list[int], int | None, list[tuple[int, bool]], bool]:
    """(sorted presentation timestamps of the non-empty packets of `stream`, one per frame; when the
    last-shown frame stops being shown, or None when the file does not say; (timestamp, key frame) of the packets
    in file order; whether those timestamps were made up here, at `untimed_rate` in file order, some packets
    having none), in `stream.time_base`.
    Demuxing reads the file but decodes nothing.

    The end is the last-shown frame's timestamp plus its packet's duration, trusted only when that
    packet is also the last one decoded: with B-frames after it, a container's duration is the gap to
    the next decode timestamp (MP4), not how long the frame is shown. Otherwise the last-shown frame's packet
    duration counts where every other frame's is the gap to the next one shown (durations of how long frames are
    shown: star-vsr's Matroska; not MP4's, nor Matroska remuxed from MP4, which keeps them), else an MP4 / MOV
    track's end (its start plus its duration) when that lies after the frame: there the end was not known, and
    the frame lasted 1 / the mean rate (0.2 s for 0.04 s)."""
    try:
        packets = [
            (packet.pts if packet.pts is not None else packet.dts, packet.duration or 0, packet.is_keyframe)
            for packet in container.demux(stream)  # not the pre-roll an edit list discards (a trimmed copy)
            if packet.size > 0 and not packet.is_discard
        ]
    except av.FFmpegError as error:
        raise CorruptVideoError(
            f"{path}: the file is damaged, reading its packets failed ({error})"
        ) from error
    retimed = any(t is None for t, _, _ in packets) and bool(stream.time_base) and bool(untimed_rate)
    if retimed:
        # a raw elementary stream (.h264 / .h265 from a Raspberry Pi or a drone, `ffmpeg -f h264`): no container, no
        # timestamps, one frame per packet; its frames were "without frames". Or an MPEG program stream (.mpg, .vob)
        # whose PES packets hold several small frames, only the first timed: 40 frames counted as 1. Timed at
        # `untimed_rate`, from the first timestamp there is
        start = min((t for t, _, _ in packets if t is not None), default=0)
        tick = 1 / (untimed_rate * stream.time_base)
        packets = [(start + round(i * tick), round(tick), key) for i, (_, _, key) in enumerate(packets)]
    packets = [packet for packet in packets if packet[0] is not None]
    timestamps = sorted(t for t, _, _ in packets)
    end = None
    last_shown = max(packets, key=lambda packet: packet[0]) if packets else None
    if packets and packets[-1][0] == timestamps[-1] and packets[-1][1] > 0:  # decoded last, shown last
        end = packets[-1][0] + packets[-1][1]
    elif last_shown is not None and last_shown[1] > 0 and _durations_are_shown_gaps(packets):
        end = last_shown[0] + last_shown[1]
    elif (last_shown is not None and not retimed and container.format.name in TRACK_END_FORMATS
          and stream.duration and (stream.start_time or 0) + stream.duration > timestamps[-1]):
        end = (stream.start_time or 0) + stream.duration
    return timestamps, end, [(t, key) for t, _, key in packets], retimed


def _durations_are_shown_gaps(packets: Sequence[tuple[int, int, bool]]) -> bool:
    """Whether the duration of each of ``packets`` (timestamp, duration, key frame), the last shown's aside, is the
    gap to the next frame shown, to a tick (Matroska's rounding to milliseconds)."""
    shown = sorted((t, duration) for t, duration, _ in packets)
    return len(shown) > 1 and all(abs(duration - (after - t)) <= 1 for (t, duration), (after, _) in
                                  zip(shown, shown[1:]))


def video_start(stream: VideoStream, info: VideoInfo) -> int:
    """The presentation timestamp of frame 0 of ``info``'s video ``stream``: that of the first frame that decodes
    (`VideoInfo.start_pts`), else the stream's start time (0 when it has none)."""
    return info.start_pts if info.start_pts is not None else (stream.start_time or 0)


def _undecodable_lead(in_file_order: Sequence[tuple[int, bool]], start_pts: int) -> list[int]:
    """The presentation timestamps of the frames before ``start_pts``, the first frame that decodes, among the
    packets' (timestamp, key frame) ``in_file_order``: those in front of its packet, and those after it, before
    the next key frame and at most `MAX_REORDER` on (an open GOP's leading pictures, which reference the missing
    group before), shown before it. A timestamp lower than ``start_pts`` further on is a later part whose clock
    restarted (``cat a.ts b.ts``, a broadcast capture's PTS reset, a multi-cell VOB), from its own key frame:
    those frames decode."""
    first = next((i for i, (t, _) in enumerate(in_file_order) if t == start_pts), None)
    if first is None:
        return []
    lead = [t for t, _ in in_file_order[:first] if t < start_pts]
    for t, key in in_file_order[first + 1:first + 1 + MAX_REORDER]:
        if key:
            break
        if t < start_pts:
            lead.append(t)
    return lead


def _undecoded_in_file_order(path: Path, in_file_order: Sequence[tuple[int, bool]]) -> int:
    """How many of a stream's first packets, up to its first key frame's leading pictures, decode to nothing:
    those before the first key frame and, after it in file order, the leading pictures of an open GOP (B-frames
    that reference the group before the key frame, shown before it; H.264's recovery-point I-frames, H.265's RASL
    pictures), which FFmpeg's decoder drops. For a stream timed here in file order (`_frame_timestamps`'
    `retimed`: a raw .h264 / .h265, a program stream's packed frames), whose timestamps cannot tell leading
    pictures from the frames after them. Feeds the decoder the packets from the start to the end of the first key
    frame's group or `MAX_REORDER` + 1 packets from it, whichever comes first (those before the key frame it
    drops undecoded)."""
    first = next((i for i, (_, key) in enumerate(in_file_order) if key), None)
    if first is None:
        return 0
    later = next((i for i, (_, key) in enumerate(in_file_order) if key and i > first), len(in_file_order))
    limit, fed, decoded = min(later, first + 1 + MAX_REORDER), 0, 0
    with open_container(path) as container:
        stream = find_video_stream(container, path)
        try:
            for packet in container.demux(stream):
                if fed == limit:
                    break
                if packet.size > 0 and not packet.is_discard:  # the packets `_frame_timestamps` lists
                    fed += 1
                    decoded += len(stream.decode(packet))
            decoded += len(stream.decode(None))  # the frames the decoder still holds back for reordering
        except av.FFmpegError:
            return 0  # damage: the reader reports it
    return max(0, limit - decoded)


def _frames_beyond_file(stream: av.stream.Stream, path: Path) -> int:
    """How many frames (packets) of ``stream`` the container's index places past the end of the file (it was cut
    short): the index's byte offsets and sizes against the file's size, nothing decoded."""
    index = stream.index_entries
    if index is None or len(index) == 0:
        return 0
    size = path.stat().st_size
    return sum(entry.pos + entry.size > size for entry in index if not entry.is_discard)


def _listed_end(stream: VideoStream) -> float | None:
    """Where the video track ends (seconds on its own clock) by its Matroska ``DURATION`` tag
    ("01:02:03.456000000"; "DURATION-eng" from older mkvmerge), which FFmpeg and mkvmerge write per
    track when they finish a file: the end of its last frame, so a track that starts at 3 s and lasts
    2 s says 5 s. None without one."""
    value = next((v for k, v in stream.metadata.items() if k.upper().split("-")[0] == "DURATION"), "")
    match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", value.strip())
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _timing_error(timestamps: Sequence[int], time_base: Fraction, frame_rate: Fraction) -> float:
    """``max |t_i - t_0 - i / frame_rate|`` in seconds (`VideoInfo.timing_error_s`), exactly, in integers:
    with time base a/b and rate c/d each term is ``|(t_i - t_0) a c - i d b| / (b c)`` (Fraction arithmetic
    took about a second for a two-hour video, and probing runs it up to twice)."""
    if not timestamps or time_base is None:
        return 0.0
    time_base, frame_rate = Fraction(time_base), Fraction(frame_rate)
    per_tick = time_base.numerator * frame_rate.numerator
    per_frame = frame_rate.denominator * time_base.denominator
    first = timestamps[0]
    worst = max(abs((t - first) * per_tick - i * per_frame) for i, t in enumerate(timestamps))
    return float(Fraction(worst, time_base.denominator * frame_rate.numerator))


def _read_first_frame(path: Path) -> tuple[DisplayOrientation, bool, tuple[int, int] | None, int | None] | None:
    """(orientation, interlaced, (width, height) as stored, presentation timestamp) of a video file's first decoded
    frame: FFmpeg attaches the display matrix to it (PyAV does not expose the stream's copy) and flags it interlaced;
    its size is the video's (a stream that changes size can have the later size in its header, as FFmpeg probes it);
    its timestamp is where the video starts (frames before it in the stream cannot be decoded: a transport stream
    cut inside a group of pictures). (identity, False, None, None) when decoding fails (the reader then reports
    the damage); None when the decoder outputs no frame at all."""
    with open_container(path) as container:
        stream = find_video_stream(container, path)
        try:
            frame = next(iter(container.decode(stream)), None)
        except av.FFmpegError:
            return DisplayOrientation(), False, None, None
    if frame is None:
        return None
    return _orientation(frame, path), bool(frame.interlaced_frame), (frame.width, frame.height), frame.pts


#: The orientation of each right-angle ``VideoFrame.rotation`` (degrees counter-clockwise that the display
#: matrix turns the frame by; its mirroring, if any, is not in it).
ROTATIONS = {0: DisplayOrientation(), -90: DisplayOrientation(transpose=True, flip_x=True),
             90: DisplayOrientation(transpose=True, flip_y=True), 180: DisplayOrientation(flip_x=True, flip_y=True),
             -180: DisplayOrientation(flip_x=True, flip_y=True)}


def _orientation(frame: av.VideoFrame, path: Path) -> DisplayOrientation:
    try:
        # looked up by its kind: iterating the mapping gave the side data in PyAV 18.1.0 and gives the kinds since
        # 18.1.1 ("'Type' object has no attribute 'type'" on every video, in a fresh install)
        data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    except ValueError:  # a side-data kind newer than PyAV's list (FFmpeg 8 attaches a photo's EXIF: kind 31)
        return _orientation_from_rotation(frame, path)
    matrix = None if data is None else bytes(data)
    if matrix is None or len(matrix) != 36:
        return DisplayOrientation()
    orientation = DisplayOrientation.from_display_matrix(matrix)
    if orientation is None:  # (a warning, not a log line a Python caller could not filter or catch: review)
        warn_user(f"{path} asks to be shown through a display matrix that is no turn by a multiple of 90 degrees "
                  f"({_matrix_angle(matrix)}); its frames are read as stored")
        return DisplayOrientation()
    return orientation


def _matrix_angle(matrix: bytes) -> str:
    """The turn a 3x3 display matrix (16.16 fixed point, row-major) asks for, as a message gives it: "a turn by 45
    degrees", or "a skew or scale" for one that is no turn (PyAV's rotation truncates to whole degrees: a matrix
    just off the identity read "rotated by 0 degrees, not a multiple of 90": review)."""
    a, b = struct.unpack("<2i", matrix[:8])
    if a == 0 and b == 0:
        return "a skew or scale"
    return f"a turn by {0.0 - math.degrees(math.atan2(b, a)):.4g} degrees"  # (as ffprobe and PyAV count it)


def _orientation_from_rotation(frame: av.VideoFrame, path: Path) -> DisplayOrientation:
    """The orientation from the display matrix's rotation alone (PyAV reads it in C, past the side data it
    cannot list): right for the rotations phones and cameras write, not for a mirrored frame (rare EXIF tags
    2, 4, 5, 7), which is read unmirrored."""
    rotation = round(frame.rotation)
    if rotation not in ROTATIONS:
        warn_user(f"{path} asks to be shown rotated by {rotation} degrees, not a multiple of 90; its frames are "
                  f"read as stored")
        return DisplayOrientation()
    return ROTATIONS[rotation]


#: Box types that can start an MP4 / MOV file (ISO base media format; QuickTime's older files start with others).
ISO_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"})


def iso_box_cut_short(path: Path) -> str | None:
    """The type of the top-level box ("moov", "mdat", ...) of an MP4 / MOV file that its header says ends past the
    end of the file (the file was cut short inside it), or None: whole, no such file, or unreadable (left to
    FFmpeg). Reads the box headers only (8-16 bytes a box). A "moov" (the index) cut only inside its trailing
    metadata (`ISO_MOOV_EXTRAS`), which FFmpeg reads whole without, counts as whole."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            cut = _box_cut_short(file, 0, size, top=True)
            if cut is not None and cut[0] == "moov":
                inner = _box_cut_short(file, cut[1] + cut[2], size, top=False)
                if inner is not None and inner[0] in ISO_MOOV_EXTRAS:
                    return None
            return None if cut is None else cut[0]
    except (OSError, struct.error):
        return None


#: Boxes at the end of an MP4's index that hold metadata, not where frames are: FFmpeg reads a file whose index is
#: cut inside them whole (every frame and audio sample).
ISO_MOOV_EXTRAS = frozenset({"udta", "meta", "free", "skip"})


def _box_cut_short(file: BinaryIO, position: int, size: int, top: bool) -> tuple[str, int, int] | None:
    """(type, start, header length) of the first box from ``position`` of ``file`` that ends past ``size`` bytes,
    or None; ``top``: the file's top level (whose first box must be one of `ISO_FIRST_BOXES`)."""
    first = True
    while position + 8 <= size:
        file.seek(position)
        header = file.read(16)
        if len(header) < 8:  # (the file shrank)
            return None
        box_size, kind = struct.unpack(">I4s", header[:8])
        if (top and first and kind not in ISO_FIRST_BOXES) or not re.fullmatch(rb"[\x20-\x7e\xa9]{4}", kind):
            return None  # not boxes (or trailing junk)
        first = False
        length = 8
        if box_size == 1:  # a 64-bit size follows the type
            if len(header) < 16:
                return kind.decode("latin-1"), position, 8
            box_size, length = struct.unpack(">Q", header[8:16])[0], 16
        if box_size == 0 or box_size < length:  # the last box, to the end of the file; or no box (left to FFmpeg)
            return None
        if position + box_size > size:
            return kind.decode("latin-1"), position, length
        position += box_size
    return None


LAST_FRAME_CUT = "is cut short inside a frame (an interrupted copy, or an encoder's pipe stopped?), which is left out"
"""What `VideoInfo.caveats` and ``star-vsr info`` say of a file whose `VideoInfo.last_frame_cut` is set."""


def y4m_cut_inside_frame(path: Path, pix_fmt: str, width: int, height: int) -> bool:
    """Whether the Y4M file ``path`` (planar ``pix_fmt`` frames of ``width`` x ``height``) ends inside a frame: after
    its header line, each frame is ``FRAME\\n`` and the frame's planes, so the bytes after the header are a whole
    number of frames unless the file was cut. False where that cannot be told (a frame header with parameters, a
    format whose frame size is unknown, an unreadable file: left to FFmpeg)."""
    try:
        planes = av.VideoFormat(pix_fmt, width, height).components
        frame = len(b"FRAME\n") + sum(c.width * c.height * -(-c.bits // 8) for c in planes)  # bytes, with its header
        with open(path, "rb") as file:
            header = file.readline(4096)
            if not header.endswith(b"\n") or file.read(6) != b"FRAME\n":
                return False
            whole, part = divmod(os.fstat(file.fileno()).st_size - len(header), frame)
            file.seek(len(header) + whole * frame)
            start = file.read(5)  # where the cut frame starts: its header, or the part of it that is there
            return part > 0 and start == b"FRAME"[:len(start)]  # (else not frames of that size: left to FFmpeg)
    except (OSError, ValueError):
        return False


def _probe_container(path: Path) -> VideoInfo:
    """`VideoInfo` of the video file ``path`` from its headers, index and packet timestamps, decoding only its
    first frame (and a photo's header through PIL).

    Raises:
        CorruptVideoError: cut short, damaged, or no frame of it decodes.
        UnsupportedVideoError: a stream or image star-vsr cannot read (no frame rate, an animated WebP, ...).
    """
    if iso_box_cut_short(path) == "moov":  # the index of an MP4 / MOV whose index is at its end: FFmpeg found some
        # frames, or none ("contains no video stream", "its video codec cannot be decoded"), or its audio track
        # without a codec (a traceback), and called the file whole
        raise CorruptVideoError(f"{path} is cut short (an interrupted download or copy?): the file ends inside its "
                                f"index (the 'moov' box), which says where its frames are; get a complete copy")
    with open_container(path) as container:
        stream = find_video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise UnsupportedVideoError(
                f"{path}: the video stream has no frame rate; re-encode it with a fixed rate"
            )
        frame_rate = Fraction(rate.numerator, rate.denominator)
        audio, subtitles = container.streams.audio, container.streams.subtitles
        num_videos = len(video_streams(container))
        covers = len(container.streams.video) - num_videos
        audio_cut = bool(audio) and _frames_beyond_file(audio[0], path) > 0
        codec = stream.codec_context.name
        container_format = container.format.name
        raw_stream = container_format in RAW_STREAM_FORMATS
        rate_assumed = False
        if raw_stream:  # FFmpeg's raw demuxer says 25 fps whatever the stream's headers (H.264's VUI timing) say
            header_rate = stream.codec_context.framerate
            rate_assumed = not header_rate
            frame_rate = Fraction(header_rate.numerator, header_rate.denominator) if header_rate else frame_rate
        pix_fmt = stream.codec_context.pix_fmt or "unknown"
        width, height = stream.codec_context.width, stream.codec_context.height
        check_frame_pixels(path, width, height)
        pixel_aspect = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio or Fraction(1)
        hdr = _HDR_TRANSFERS.get(stream.codec_context.color_trc)
        wide_gamut = stream.codec_context.color_primaries == ColorPrimaries.BT2020
        untagged_hd = pix_fmt in av.video.format.names and is_untagged_hd(
            stream.codec_context.colorspace, width, height, av.VideoFormat(pix_fmt).is_rgb)
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration_s = container.duration / av.time_base
        else:
            duration_s = None
        # a full index (MP4 / MOV) answers without reading the file, unless the frame rate varies or the
        # file is very short (SHORT_FILE_FRAMES)
        timestamps, end = _indexed_timestamps(stream), None
        indexed = timestamps is not None
        if indexed:  # MP4's rate counts the last frame's duration (25 fps with a held last frame: 1250/51 fps)
            frame_rate = timeline_rate(timestamps, stream.time_base, frame_rate)
        # a variable rate in the index's decode timestamps: with B-frames they are squeezed together (the first
        # ones negative), and FFmpeg's rate and the track's duration, which follow them, are off (18.5 fps and
        # 0.32 s for frames shown over 0.54 s): both are taken from the presentation timestamps below
        variable_by_index = indexed and (_timing_error(timestamps, stream.time_base, frame_rate)
                                         > VARIABLE_RATE_FRAMES / frame_rate)
        # a last frame held longer (an end card, a slideshow's last slide): the index's times are evenly spaced,
        # only the track's duration says so, and the packets' durations say by how much
        held_by_index = indexed and stream.duration is not None and stream.time_base is not None and (
            (stream.duration - (timestamps[-1] - timestamps[0])) * stream.time_base
            > (1 + VARIABLE_RATE_FRAMES) / frame_rate)
        # an index lists decode timestamps (with B-frames the first ones are negative); one whose first frame is no
        # key frame (a copy cut after one without re-encoding) needs the presentation timestamps of its packets to
        # find the frames before the first key frame, which cannot be decoded (`_undecodable_lead`)
        cut_inside_gop = indexed and not next((e.is_keyframe for e in stream.index_entries if not e.is_discard), True)
        presentation = timestamps is None or len(timestamps) <= SHORT_FILE_FRAMES or variable_by_index or \
            held_by_index or cut_inside_gop
        in_file_order: list[tuple[int, bool]] = []
        retimed = False
        if presentation:
            timestamps, end, in_file_order, retimed = _frame_timestamps(container, stream, path, frame_rate)
        photo = is_photo_file(path, len(timestamps))
        first_frame = (DisplayOrientation(), False, None, None) if photo else _read_first_frame(path)
        nothing_decodes = first_frame is None
        first_frame = first_frame or (DisplayOrientation(), False, None, None)
        start_pts = lead_start = first_frame[3]
        if retimed and in_file_order:  # packets timed here (a raw stream, a program stream's packed frames): the
            # first frame that decodes is the first key frame's (a raw stream cut anywhere: 20 of 33 frames came);
            # the decoder's timestamp is on another clock (two program streams joined: a lead of 20 made up)
            lead_start = next((t for t, key in in_file_order if key), None)
            start_pts = lead_start if start_pts is None else start_pts
        # (codecs whose decoder leaves out what it cannot decode; MPEG-4 part 2's shows it against grey, out of
        # order, so its frames before the first key frame are not missing)
        lead = _undecodable_lead(in_file_order, lead_start) if lead_start is not None and codec in LEAD_CODECS else []
        if retimed and lead_start is not None and codec in LEAD_CODECS:
            # an open GOP's leading pictures, timed after its key frame here, which the decoder drops too (a raw
            # .h265 cut inside a group: 35 frames announced, 32 decoded): timed evenly, the last times go
            dropped = _undecoded_in_file_order(path, in_file_order) - len(lead)
            if 0 < dropped < len(timestamps):
                if end is not None:  # the last frame kept ends as the last one did
                    end -= timestamps[-1] - timestamps[-1 - dropped]
                lead += timestamps[-dropped:]
        if lead:
            # a recording that starts inside a group of pictures (a transport stream cut anywhere, a broadcast
            # capture): the frames before its first key frame cannot be decoded. Counted, they made the header's
            # count announce frames that never came, and the audio, placed from the stream's start, lagged the
            # picture by their length (1.08 s for 26 frames at 24 fps)
            left_out, kept = collections.Counter(lead), []
            for t in timestamps:  # sorted: those of the lead out (a restarted clock can repeat one further on)
                if left_out[t]:
                    left_out[t] -= 1
                else:
                    kept.append(t)
            timestamps = kept
        else:
            start_pts = None
        leading = len(lead)
        # one frame per packet: a header count can include empty packets (packed B-frames in AVI);
        # but a file cut short keeps the header's count, so that the reader reports it
        frames_cut = _frames_beyond_file(stream, path)
        truncated = frames_cut > 0
        with_end = [*timestamps, *([end] if end is not None else [])]  # the end of the last frame, where known
        if nothing_decodes and not truncated and timestamps:
            # a copy cut after a key frame without re-encoding, from an MP4 without a sync-sample table (every
            # frame listed as a key frame): "decoded 0 frames but its header announced 17; the file may be
            # truncated", then "no frames were written"
            raise CorruptVideoError(
                f"{path}: none of its {len(timestamps)} frames can be decoded: it may be a copy cut without "
                f"re-encoding that starts after a key frame, or damaged; cut it again from the original at a key "
                f"frame (or re-encode it), then try again")
        first_shown = start_pts if start_pts is not None else stream.start_time
        audio_lead_s = 0.0
        if audio and None not in (audio[0].start_time, first_shown, audio[0].time_base, stream.time_base):
            audio_lead_s = max(0.0, float(first_shown * stream.time_base - audio[0].start_time * audio[0].time_base))
        num_frames = stream.frames if truncated else len(timestamps)
        if ((stream.average_rate is None or (variable_by_index and not truncated)) and len(timestamps) > 1
                and timestamps[-1] > timestamps[0]):
            # no rate in the header (Matroska of variable-rate video): the mean rate of the frames, not
            # the guess from the time base (1000 fps for Matroska's milliseconds)
            # (from the index: the end of the last frame, where known, counts as one more frame time, as MP4's
            # own rate counts it: a held last frame stays a variable rate)
            ends = [*timestamps, *([end] if variable_by_index and end is not None else [])]
            mean = Fraction(len(ends) - 1) / ((ends[-1] - ends[0]) * stream.time_base)
            frame_rate = mean.limit_denominator(MAX_FPS_DENOMINATOR) or mean  # (a rate under 1/1001 fps kept whole)
        if not indexed and not truncated:
            # a rate FFmpeg estimated from the first packets (Matroska without a default duration: 30000/1001
            # for a long 30 fps FFV1 file with millisecond timestamps), or the mean just above (29.999 fps from
            # rounded milliseconds), gives way to one that the whole timeline fits (the end of the last frame,
            # where known, counts as one more frame time: a held last frame is no constant rate)
            frame_rate = timeline_rate(with_end, stream.time_base, frame_rate)
        if (variable_by_index or not indexed or lead) and not truncated and timestamps:  # what the frames cover: from
            # the first frame shown to the end of the last (or to one frame time after it). Not the index's
            # squeezed decode times, nor a container's duration without an index (Matroska, WebM, AVI, GIF), which
            # is where it ends: a video from 5 s to 5.25 s said 5.25 s
            last_end = (end - timestamps[0]) * stream.time_base if end is not None else (
                (timestamps[-1] - timestamps[0]) * stream.time_base + 1 / frame_rate)
            duration_s = float(last_end)
        # a file cut short lost frames from the middle of a B-frame group: its gaps are no variable rate; the end of
        # the last frame, where known, counts as one more frame time (a last frame held for a second made the
        # output's video end a second before its audio)
        timing_error_s = 0.0 if truncated else _timing_error(with_end, stream.time_base, frame_rate)
        frame_times = last_frame_s = None
        if timing_error_s > VARIABLE_RATE_FRAMES / frame_rate and len(timestamps) == num_frames:
            frame_times = tuple((t - timestamps[0]) * stream.time_base for t in timestamps)
            if end is not None and end > timestamps[-1]:
                last_frame_s = (end - timestamps[-1]) * stream.time_base
        # a Matroska file cut short: its track's end in the duration tag (written when the file was finished,
        # with the header) lies past its last frame
        listed_end, missing_s = _listed_end(stream), 0.0
        if listed_end is not None and timestamps and not truncated:
            last_end = float(end * stream.time_base if end is not None else timestamps[-1] * stream.time_base
                             + 1 / frame_rate)  # the end of the last frame: its duration, else 1 / fps
            if listed_end - last_end > CUT_SHORT_FRAMES / frame_rate:
                duration_s = last_end - float(timestamps[0] * stream.time_base)
                missing_s = listed_end - last_end
    if num_frames == 0 or width == 0 or height == 0:
        if _image_header(path)[0] > 1:  # FFmpeg's WebP decoder reads still images only
            raise UnsupportedVideoError(
                f"{path} is an animated {path.suffix[1:].upper()} image, which star-vsr cannot decode; save its "
                f"frames as a folder of PNG images (ImageMagick: magick {path.name} frames/%04d.png) or as a video, "
                f"and give that")
        if path.suffix.lower() in IMAGE_EXTENSIONS:  # not "a video stream" (a JPEG cut short, or no JPEG at all)
            mode = _decodable_pil_mode(path)
            if mode is not None:  # a whole picture of a kind FFmpeg does not decode (a 32-bit float TIFF) was
                # called "truncated or damaged"
                raise UnsupportedVideoError(f"{path} is an image of a kind star-vsr does not read (PIL mode {mode}"
                                            f"{PIL_MODE_NAMES.get(mode, '')}); save it as an 8- or 16-bit PNG")
            raise CorruptVideoError(f"{path} is not a readable image: no picture in it decodes; the file may be "
                                    f"truncated or damaged")
        raise CorruptVideoError(
            f"{path} holds a video stream without frames; the file may be truncated"
        )
    pages, side_alpha = 1, stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE")) == "1"
    profile = None
    if is_photo_file(path, num_frames):  # read as a folder of one frame: at its rate (FFmpeg's 25 fps for stills is
        # made up), upright by its EXIF orientation (FFmpeg's display matrix of a photo loses EXIF's mirroring,
        # orientation 2 read as 180 degrees), square pixels (FFmpeg took a JPEG's dpi for a pixel aspect ratio)
        frame_rate, duration_s = DEFAULT_FOLDER_FPS, None
        orientation, interlaced, pixel_aspect = exif_orientation(path) or DisplayOrientation(), False, 1
        pages, photo_pix_fmt, side_alpha, profile = _image_header(path)
        if photo_pix_fmt is None and not container_format.endswith("_pipe") and container_format != "image2":
            # (a one-frame H.264 file named .png passed `info` as a photo, then OpenCV found no image in it)
            container = container_format.split(",")[0]
            raise UnsupportedVideoError(
                f"{path} is named as a {path.suffix[1:].upper()} image but is not one: FFmpeg reads it as {codec} in "
                f"the {container} container; give it its own suffix (a video's: .mp4, .mkv, ...) or convert it to PNG")
        pix_fmt = photo_pix_fmt or pix_fmt
    else:
        orientation, interlaced, first_size, _ = first_frame
        width, height = first_size or (width, height)
    width, height = orientation.display_size(width, height)
    if orientation.transpose:
        pixel_aspect = 1 / pixel_aspect
    return VideoInfo(
        path=path,
        num_frames=num_frames,
        fps=float(frame_rate),
        width=width,
        height=height,
        codec=codec,
        pix_fmt=pix_fmt,
        duration_s=duration_s if duration_s is not None else float(num_frames / frame_rate),
        has_audio=len(audio) > 0,
        audio_codec=audio[0].codec_context.codec.canonical_name if audio else None,  # "mp3", not "mp3float"
        audio_streams=len(audio),
        subtitle_streams=len(subtitles),
        cover_pictures=covers,
        video_streams=num_videos,
        audio_cut=audio_cut,
        side_alpha=side_alpha,
        audio_lead_s=audio_lead_s,
        raw_stream=raw_stream,
        rate_assumed=rate_assumed,
        last_frame_cut=container_format == "yuv4mpegpipe" and y4m_cut_inside_frame(path, pix_fmt, width, height),
        start_pts=start_pts,
        undecodable_lead=leading,
        is_image_folder=False,
        frame_rate=frame_rate,
        orientation=orientation,
        pixel_aspect=Fraction(pixel_aspect),
        interlaced=interlaced,
        timing_error_s=timing_error_s,
        hdr=hdr,
        wide_gamut=wide_gamut,
        frame_times=frame_times,
        missing_s=missing_s,
        frames_cut=frames_cut,
        untagged_hd=untagged_hd,
        last_frame_s=last_frame_s,
        pages=pages,
        colour_profile=profile,
    )


def image_transparency(data: bytes) -> str | None:
    """How the image file ``data`` carries transparency, as the caveats name it: its pixel format with an alpha
    channel ("rgba", "ya8") or "pal8 with a transparent colour" (a palette or grey image's tRNS chunk, which
    OpenCV reads as that colour); None for an opaque image, or a header PIL cannot read (OpenCV judges damage)."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # the header only
            pix_fmt = _pil_pix_fmt(image)
            if "transparency" in image.info:
                return f"{pix_fmt} with a transparent colour"
            return pix_fmt if has_alpha(pix_fmt) else None
    except Exception:  # noqa: BLE001 (PIL raises OSError, SyntaxError, TypeError, ... on damaged headers)
        return None


def _image_header(path: Path) -> tuple[int, str | None, bool, str | None]:
    """(pages, pixel format, a transparent colour, colour profile) of an image file from PIL's reading of its
    header (the profile as `colour_profile` names it): more than 1
    page for a multi-page TIFF or an animated WebP; the pixel format as a photo's frame is read (by OpenCV, like a
    folder's frames), where FFmpeg names the format it decodes to (argb for every lossless WebP: an alpha channel
    noted that it had not); whether a palette or grey PNG marks a colour transparent (its tRNS chunk), which OpenCV
    reads as that colour. (1, None, False, None) when PIL cannot read it."""
    try:
        with Image.open(path) as image:  # the header, and for some formats a scan of the frame index
            return (int(getattr(image, "n_frames", 1)), _pil_pix_fmt(image), "transparency" in image.info,
                    colour_profile(image))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return 1, None, False, None


def colour_profile(image: Image.Image) -> str | None:
    """The name of the ICC profile embedded in an opened image, where it is not sRGB (the values of an sRGB one
    are what star-vsr reads them as); "an unnamed ICC profile" when its name cannot be read; None without one."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode in ("L", "LA", "I", "I;16", "I;16B", "F", "1"):  # grey: no colours to lose
        return None
    try:
        from PIL import ImageCms

        name = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:  # noqa: BLE001 (no littlecms, or a damaged profile: ImageCms raises its own errors)
        return "an unnamed ICC profile"
    return None if "srgb" in name.lower().replace(" ", "") else name or "an unnamed ICC profile"


#: What PIL's image modes that FFmpeg does not decode hold.
PIL_MODE_NAMES = {"F": ": 32-bit floating point", "I": ": 32-bit integers", "I;32": ": 32-bit integers"}


def _decodable_pil_mode(path: Path) -> str | None:
    """The mode of the picture in ``path`` when PIL decodes it whole (a truncated file does not), else None;
    ``UnsupportedVideoError`` when its header gives it more than `MAX_FRAME_PIXELS` (a real 20000x20000 PNG, which
    FFmpeg does not decode either, was called truncated or damaged)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.mode
    except Image.DecompressionBombError:
        pass
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    raise UnsupportedVideoError(too_large(path))


#: The most pixels a frame may have: PIL's limit against decompression bombs (a 60000x60000 PNG header on a few
#: bytes), twice its warning level; 11x a 16K frame, far more than any frame star-vsr could upscale.
MAX_FRAME_PIXELS = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 2 ** 28


def check_frame_pixels(path: Path, width: int, height: int) -> None:
    """``UnsupportedVideoError`` for frames of more than `MAX_FRAME_PIXELS` pixels."""
    if width * height > MAX_FRAME_PIXELS:
        raise UnsupportedVideoError(too_large(path, f"{width}x{height}"))


def too_large(path: Path, size: str | None = None) -> str:
    """The message for an image or video whose frames (of ``size``, "WxH", where known) have more than
    `MAX_FRAME_PIXELS` pixels."""
    frames = f"its frames are {size} pixels, more" if size else "its header gives it more pixels"
    return (f"{path}: {frames} than star-vsr reads ({MAX_FRAME_PIXELS:,} a frame, PIL's limit against decompression "
            f"bombs); scale it down first, or check that the file is what it should be")


def is_photo_file(path: Path, num_frames: int) -> bool:
    """Whether a file of ``num_frames`` frames is a photo (one frame, a frame-image suffix), which star-vsr reads
    as a folder of that one frame: decoded by OpenCV, upright by its EXIF orientation, at `DEFAULT_FOLDER_FPS`.
    FFmpeg decoded such a JPEG up to 12 levels apart from the same file in a folder, gave it a made-up 25 fps and
    misread its mirrored EXIF orientations."""
    return num_frames == 1 and path.suffix.lower() in IMAGE_EXTENSIONS


def exif_orientation(image_file: Path | BinaryIO) -> DisplayOrientation | None:
    """How the photo ``image_file`` (a path, or its bytes in a file object) is turned upright by its EXIF
    orientation (what photo viewers and PIL's ``ImageOps.exif_transpose`` do); None when PIL cannot read it."""
    try:
        with Image.open(image_file) as image:  # the header only
            return DisplayOrientation.from_exif(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None


def _pil_pix_fmt(image: Image.Image) -> str:
    """FFmpeg's name of an opened image's pixel format, from its header. PIL opens 16-bit RGB(A) PNG and TIFF in
    8-bit modes ("RGB"), so the depth is read from the file's raw mode ("RGB;16B"); FFmpeg names a single such
    file rgb48be, and a folder of them read as rgb24."""
    args = image.tile[0][3] if image.tile else None
    raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
    if image.mode in ("RGB", "RGBA") and isinstance(raw, str) and ";16" in raw:
        return ("rgb48" if image.mode == "RGB" else "rgba64") + ("be" if raw.endswith("B") else "le")
    return _PIL_MODE_TO_PIX_FMT.get(image.mode, image.mode.lower())


def _probe_folder(folder: Path, folder_fps: Fraction) -> VideoInfo:
    files = list_image_files(folder)
    try:
        with Image.open(files[0]) as image:  # reads the header (and a multi-page TIFF's page index)
            width, height = image.size
            codec, mode = (image.format or files[0].suffix[1:]).lower(), image.mode
            pix_fmt, side_alpha = _pil_pix_fmt(image), "transparency" in image.info  # (`_image_header`)
            pages, profile = int(getattr(image, "n_frames", 1)), colour_profile(image)
    except Image.DecompressionBombError:
        raise UnsupportedVideoError(too_large(files[0])) from None
    except (UnidentifiedImageError, OSError) as error:
        raise CorruptVideoError(f"{files[0]} is not a readable image ({error})") from error
    # upright as a single photo is shown and read: every frame turned as the first one's EXIF orientation says
    orientation = exif_orientation(files[0]) or DisplayOrientation()
    width, height = orientation.display_size(width, height)
    if codec == "tiff" and mode in ("F", "I"):  # OpenCV, which reads the frames, takes 8- and 16-bit samples only
        raise UnsupportedVideoError(f"{files[0]} has 32-bit {'float' if mode == 'F' else 'integer'} samples, which "
                                    f"star-vsr does not read; save the frames as 8- or 16-bit TIFF or PNG")
    return VideoInfo(
        path=folder,
        num_frames=len(files),
        fps=float(folder_fps),
        width=width,
        height=height,
        codec=codec,
        pix_fmt=pix_fmt,
        duration_s=float(len(files) / folder_fps),
        has_audio=False,
        audio_codec=None,
        is_image_folder=True,
        frame_rate=folder_fps,
        orientation=orientation,
        side_alpha=side_alpha,
        pages=pages,
        colour_profile=profile,
        missing_numbers=missing_numbers(files),
    )


def probe_video(
    path: str | Path, *, folder_fps: float | Fraction = DEFAULT_FOLDER_FPS
) -> VideoInfo:
    """Frame count, frame rate, size, codec and audio of a video file or frame folder.

    Headers give most of it; the frame count and timing come from the packets' timestamps
    (demuxed, not decoded), and the display matrix (how to turn frames upright) comes with the
    first decoded frame. The size is the upright size. For a folder, the size comes from the
    first image's header. Files are cached per (path, size, times, inode); folders are not.

    Args:
        path: Video file, or folder of PNG/JPEG/TIFF/BMP/WebP frames.
        folder_fps: Frame rate reported for a frame folder (ignored for files).

    Raises:
        VideoNotFoundError: `path` does not exist.
        CorruptVideoError: the file is truncated, damaged or not a video.
        UnsupportedVideoError: FFmpeg cannot decode its video codec.
        InputError: `path` is a folder without frame images.
    """
    path = check_exists(path)
    if path.is_dir():  # not cached: frames rewritten in place leave the folder's times as they were
        return _probe_folder(path, as_frame_rate(folder_fps))
    stat = path.stat()
    return _probe_cached(path, (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))


@functools.lru_cache(maxsize=16)
def _probe_cached(path: Path, version: tuple[int, int, int, int]) -> VideoInfo:
    """Probing a file once per version (size, times, inode: a file replaced by renaming is another): a
    command probes its input several times (reader, writer, resume), and probing can read the file."""
    del version  # part of the cache key only
    return _probe_container(path)
