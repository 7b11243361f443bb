"""Audio of the output video: the first audio stream of the source is carried into the output container, copied
as it is where the container takes it, else re-encoded (`AudioCopy`); `check_audio` tries it in memory before any
frame is upscaled.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction
from pathlib import Path

import av
from av.container import OutputContainer

from star_vsr.errors import CorruptVideoError, StarVSRError, UnsupportedVideoError, cli_advice
from star_vsr.io.probe import find_video_stream, open_container, probe_video, video_start, video_streams
from star_vsr.io.tags import track_tags
from star_vsr.user_warnings import warn_user

logger = logging.getLogger(__name__)

AUDIO_FALLBACK_CODEC = "aac"
"""Audio codec used when the source's audio cannot be copied into the output container."""

_REENCODES_SAID: set[tuple[str, str]] = set()
"""(source, output suffix) pairs whose audio re-encode `check_audio` has warned of in this process: once, although
the CLI checks before the model loads and the writer again when it opens (Python's own once-per-place filter
resets whenever a library touches the warning filters)."""

_NAMED_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
"""The layout given to audio stored without one (PCM in AVI/MKV), per channel count: no LFE channel
for 3 or 4 channels (FFmpeg's own default for 3 is 2.1, whose third channel AAC low-passes away)."""

_COPIED_LAYOUTS = {1: "mono", 2: "stereo"}
"""The layouts, per channel count, that audio stored without one is copied under (its channels mean nothing
else)."""

AUDIO_TRIAL_SECONDS = 2
"""Seconds of audio that `check_audio` writes into memory before any frame is upscaled."""

_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}  # output suffix -> FFmpeg muxer


def carries_audio(source: Path) -> bool:
    """Whether `source` has audio to carry into an output: an audio stream holding any data (a Matroska file can
    list an audio track with no packet in it, which a .mkv output then carried over as an empty track; MP4 / MOV
    muxers drop one). Demuxes up to the first audio packet (the whole file only when there is none), once per
    version of the file; an error while reading is left to the copy."""
    if not probe_video(source).has_audio:
        return False
    stat = Path(source).stat()  # (the version the probe's cache knows a file by)
    key = (str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if key not in _CARRIES_AUDIO:
        try:
            with open_container(source) as container:
                _CARRIES_AUDIO[key] = any(packet.size for packet in container.demux(container.streams.audio[0]))
        except av.FFmpegError:
            _CARRIES_AUDIO[key] = True
    return _CARRIES_AUDIO[key]


def is_silent_video(source: Path) -> bool:
    """Whether ``source`` is a readable video file without sound to copy (`carries_audio`): where ``--no-audio``
    changes nothing. False for a folder, and for a file gone or damaged since (as if it had sound)."""
    try:
        return source.is_file() and not carries_audio(source)
    except (OSError, StarVSRError):
        return False


_CARRIES_AUDIO: dict[tuple[str, int, int, int, int], bool] = {}
"""`carries_audio`'s answers, by resolved path and version (size, times, inode), as probes are cached."""


def check_audio(source: Path, suffix: str) -> None:
    """Raise `UnsupportedVideoError` now, before hours of upscaling, if the audio of `source`
    cannot go into a `suffix` file: a few packets are copied (or re-encoded) into memory."""
    if suffix.lower() not in _MUXERS:
        return
    try:
        with av.open(io.BytesIO(), mode="w", format=_MUXERS[suffix.lower()]) as output:
            audio = AudioCopy(source, output)
            try:
                audio.finish(Fraction(AUDIO_TRIAL_SECONDS))
            finally:
                audio.close()
    except (av.FFmpegError, ValueError) as error:
        without = cli_advice("keep_audio=False", "--no-audio")  # (degrade and demo keep the audio)
        raise UnsupportedVideoError(
            f"{source}: its audio cannot be written to a {suffix} file ({error}); "
            + (f"pass {without}, or write .mkv" if without else "write .mkv")
        ) from error
    said = (str(Path(source).resolve()), suffix.lower())
    if audio.transcode and said not in _REENCODES_SAID:  # lossy: said, not only logged (Opus into .mov, PCM into .mp4)
        _REENCODES_SAID.add(said)
        with av.open(io.BytesIO(), mode="w", format=_MUXERS[".mkv"]) as matroska:
            kept = suffix.lower() != ".mkv" and audio.source_codec in matroska.supported_codecs
        warn_user(f"{source}: its {audio.source_codec} audio cannot go into a {suffix} file as it is, so it is "
                  f"re-encoded as {AUDIO_FALLBACK_CODEC.upper()}" + (" (a .mkv output keeps it as it is)" if kept
                                                                      else ""))


def _must_transcode(audio: av.audio.stream.AudioStream, output: OutputContainer) -> bool:
    """Whether `audio` is re-encoded rather than copied into `output`: codecs the container
    cannot hold, PCM in .mp4 (players other than FFmpeg's do not play it), channels without
    a named layout in .mp4/.mov (their muxer fails on those when it writes the trailer; in .mov,
    mono and stereo are copied under that name: PCM from Matroska, which stores no layout, was
    re-encoded as lossy AAC) and codecs the muxer lists but refuses in its header (Opus and FLAC
    in .mov)."""
    name = audio.codec_context.name
    mp4_family = output.format.name in ("mp4", "mov") or "mp4" in output.format.name.split(",")
    unnamed = audio.layout.name.endswith("channels") and not (
        output.format.name.split(",")[0] == "mov" and audio.channels in _COPIED_LAYOUTS)
    return (name not in output.supported_codecs or (mp4_family and unnamed)
            or (name.startswith("pcm_") and output.format.name.split(",")[0] == "mp4")
            or not _header_takes(audio, output.format.name.split(",")[0]))


def _header_takes(audio: av.audio.stream.AudioStream, muxer: str) -> bool:
    """Whether the `muxer` writes a header for `audio` copied as it is (an in-memory trial)."""
    trial = av.open(io.BytesIO(), mode="w", format=muxer)
    try:
        trial.add_stream_from_template(audio)
        trial.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False
    finally:
        try:
            trial.close()
        except (av.FFmpegError, ValueError):
            pass


class AudioCopy:
    """Carries the first audio stream of a source video into an output container.

    Packets are copied as they are (remuxed) when the output container accepts the codec,
    else decoded and re-encoded as `AUDIO_FALLBACK_CODEC` (`_must_transcode`). Timestamps are
    shifted by the time of the source's frame 0 (the video stream's start, or its first frame that decodes),
    so audio stays in sync with video written from frame 0.
    """

    def __init__(self, source: Path, output: OutputContainer) -> None:
        self.source = source
        self._output = output
        self._input = open_container(source)
        in_audio = self._input.streams.audio[0]
        video = find_video_stream(self._input, source) if video_streams(self._input) else None
        start_s = video_start(video, probe_video(source)) * video.time_base if video is not None else 0  # frame 0
        self._shift = round(start_s / in_audio.time_base)  # in ticks of in_audio.time_base
        self.source_codec = in_audio.codec_context.name
        self.transcode = _must_transcode(in_audio, output)
        if not self.transcode:
            try:
                self._stream = output.add_stream_from_template(in_audio)
            except ValueError:  # the muxer refuses the codec after all
                self.transcode = True
            else:
                if in_audio.layout.name.endswith("channels") and in_audio.channels in _COPIED_LAYOUTS:
                    self._stream.codec_context.layout = _COPIED_LAYOUTS[in_audio.channels]  # named, for players
        if self.transcode:
            logger.info(
                "%s: audio %s does not fit the output container; re-encoding it as %s",
                source,
                in_audio.codec_context.name,
                AUDIO_FALLBACK_CODEC,
            )
            layout = in_audio.layout.name
            if layout.endswith("channels"):  # "2 channels": no named layout; the encoder wants one
                layout = _NAMED_LAYOUTS.get(in_audio.channels, layout)
            self._stream = output.add_stream(AUDIO_FALLBACK_CODEC, rate=in_audio.rate, layout=layout)
        self._stream.metadata.update(track_tags(in_audio.metadata))  # its language, which players choose by
        self._packets = self._input.demux(in_audio)
        self._pending: av.Packet | None = None
        self._lookahead: av.Packet | None = None  # read after a damaged packet, to see whether it was the last

    def _read_packet(self) -> av.Packet | None:
        """The next packet of the source's audio (the one looked ahead at first), or None at the end."""
        if self._lookahead is not None:
            packet, self._lookahead = self._lookahead, None
            return packet
        return self._demux()

    def _demux(self) -> av.Packet | None:
        """The next packet the demuxer gives, or None at the end."""
        try:
            return next(self._packets, None)
        except av.FFmpegError as error:
            raise CorruptVideoError(
                f"{self.source}: reading its audio failed ({error}); the file is damaged"
            ) from error

    def _next_packet(self) -> av.Packet | None:
        """Next non-empty packet with timestamps shifted, or None at the end."""
        while True:
            packet = self._read_packet()
            if packet is None:
                return None
            if packet.is_corrupt:  # the last one cut off by the end of the file (a truncated copy) would not
                # decode, and is left out (`VideoInfo.audio_cut`'s note tells the user before the run); one in the
                # middle (a transport-stream glitch) is kept, as players play it
                self._lookahead = self._demux()
                while self._lookahead is not None and self._lookahead.size == 0:  # (the demuxer's empty last one)
                    self._lookahead = self._demux()
                if self._lookahead is None:
                    logger.info("%s: leaving out its cut-off last audio packet", self.source)
                    return None
            if packet.size > 0 and packet.dts is not None:
                packet.dts -= self._shift
                if packet.pts is not None:
                    packet.pts -= self._shift
                return packet

    def mux_until(self, time_s: Fraction | None) -> None:
        """Mux the audio packets that start before `time_s` seconds (all when None)."""
        while True:
            packet = self._pending if self._pending is not None else self._next_packet()
            self._pending = None
            if packet is None:
                return
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if time_s is not None and timestamp * packet.time_base >= time_s:
                self._pending = packet
                return
            if self.transcode:
                for frame in packet.decode():
                    self._output.mux(self._stream.encode(frame))
            else:
                packet.stream = self._stream
                self._output.mux(packet)

    def finish(self, until_s: Fraction | None = None) -> None:
        """Mux the remaining audio (the whole track is kept; with `until_s`, the packets that start before
        `until_s` seconds: a video cut short) and flush the encoder."""
        self.mux_until(until_s)
        if self.transcode:
            self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        """Close the source (the output container is the caller's)."""
        self._input.close()
