"""Videos written in segments and joined at the end, so that a long write can stop and go on.

`SegmentedVideoWriter` writes frames into numbered segment files in a work folder. `commit()`
closes the open segment: each committed segment is a complete file that survives a crash or a
Ctrl-C. `finish()` joins the segments into the output, atomically (a hidden temporary file renamed
onto the final name, as `VideoWriter` does), adding the source's audio. Encoded segments are joined
by copying their packets (no second encode, no quality loss); a PNG output's segments are folders
of frames, joined by linking (or copying) the files under their final numbers.

H.264/H.265 segments are .mp4 (the container keeps the decode timestamps that B-frames need; .mkv
drops them), FFV1 segments .mkv. Every segment starts with a key frame, and segments encoded with
the same settings and frame size carry identical codec headers, which the join checks.
"""

from __future__ import annotations

import os
import shutil
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence

import av
import numpy as np
from tqdm.auto import tqdm

from star_vsr.errors import (CorruptVideoError, InputError, RanOutOfMemoryError, UnsupportedVideoError, again,
                             cannot_write)
from star_vsr.io.atomic import check_no_replace, move_into_place, remove_temporary, temporary_path
from star_vsr.io.audio import AudioCopy, carries_audio, check_audio
from star_vsr.io.probe import as_frame_rate, open_container
from star_vsr.io.tags import output_tags
from star_vsr.io.writer import (FrameClock, VideoWriter, _resolve_codec, check_crf,
                                check_png_folder, finish_error, warn_png_drops_audio, warn_png_drops_frame_rate)
from star_vsr.outputs import PNG_NAME, frame_files
from star_vsr.progress import bar_options

#: File (or folder, for PNG) name of segment i in the work folder; the suffix follows the codec.
SEGMENT_NAME = "segment_{:06d}{}"
SEGMENT_SUFFIXES = {"h264": ".mp4", "h265": ".mp4", "ffv1": ".mkv", "png": ""}


class SegmentedVideoWriter:
    """Writes frames to a video file or PNG folder through segments that can be committed.

    Args:
        path: The output, as for `VideoWriter` (its suffix chooses the container).
        fps: Frame rate (a Fraction is kept exactly).
        work_dir: Folder for the segments (made when the first segment opens).
        segments: (name, frame count) of segments committed earlier in `work_dir`, in order: a
            stopped write goes on after them.
        codec, crf, audio_from: As for `VideoWriter`; the audio is added when the segments are
            joined.
        audio_until_frame: Cut the audio where this frame of the output would start (a preview of
            the first frames); None keeps the whole track.
        progress: Show one tqdm bar of frames over all segments.
        total_frames: Expected frame count of the whole output, only for the progress bar.
        pixel_aspect: Width / height of a pixel as shown (see `VideoWriter`).
        frame_times: Each frame's time for variable-rate output (see `VideoWriter`): segments
            count frames at 1 / fps, and the join gives them these times.
        overwrite: As for `VideoWriter`: False refuses an existing `path`, and `finish` refuses one that
            appeared meanwhile (the segments stay in `work_dir`).
        tags_from: As for `VideoWriter`: its tags are read here (the input may be gone or replaced by the time
            the run ends) and added when the segments are joined.

    Raises:
        UnsupportedVideoError, InputError: As `VideoWriter` for the codec, crf and output path.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        work_dir: str | Path,
        segments: Sequence[tuple[str, int]] = (),
        *,
        codec: str | None = None,
        crf: int | None = None,
        audio_from: str | Path | None = None,
        audio_until_frame: int | None = None,
        progress: bool = False,
        total_frames: int | None = None,
        pixel_aspect: Fraction | float = Fraction(1),
        frame_times: Sequence[Fraction] | None = None,
        overwrite: bool = True,
        tags_from: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        check_no_replace(self.path, overwrite)
        self.work_dir = Path(work_dir)
        self.pixel_aspect = pixel_aspect
        self.frame_rate = as_frame_rate(fps)
        self.clock = FrameClock(self.frame_rate, frame_times)
        self.codec = _resolve_codec(self.path, codec)
        self.crf = check_crf(self.codec, crf)
        self.audio_from, self.audio_until_frame = audio_from, audio_until_frame
        if audio_from is not None and carries_audio(Path(audio_from)):
            if self.codec == "png":
                warn_png_drops_audio(str(self.path), Path(audio_from))
            else:
                check_audio(Path(audio_from), self.path.suffix)  # before any segment: the audio joins at the end
        if self.codec == "png":  # here, not per segment: a resumed run writes its first frames to a later segment
            warn_png_drops_frame_rate(str(self.path), self.frame_rate)
        check_png_folder(self.path, self.codec)
        self.tags = output_tags(tags_from, self.codec)
        self.segments: list[tuple[str, int]] = [(str(name), int(count)) for name, count in segments]
        self._writer: VideoWriter | None = None
        self._bar_settings = dict(total=total_frames, unit="frame", desc=self.path.name, disable=not progress)
        self._bar: tqdm | None = None  # opens with the first frame, counting the committed ones

    @property
    def frames_committed(self) -> int:
        """Frames in the committed segments."""
        return sum(count for _, count in self.segments)

    @property
    def frames_written(self) -> int:
        """Frames in the committed segments and in the open one (0 for an open one that an error aborted)."""
        writer = self._writer
        return self.frames_committed + (writer.frames_written if writer is not None and writer.is_open else 0)

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (h, w, 3) or a stack (n, h, w, 3) of uint8 RGB frames to the open segment."""
        if self._writer is None:
            name = SEGMENT_NAME.format(len(self.segments), SEGMENT_SUFFIXES[self.codec])
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._writer = VideoWriter(self.work_dir / name, self.frame_rate, codec=self.codec, crf=self.crf,
                                       label=self.path, pixel_aspect=self.pixel_aspect)
        self.start_progress()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*PNG frames store no frame rate")  # given by __init__
            if self.segments:  # the frame-size warning was given with the first segment
                warnings.simplefilter("ignore")
            try:
                self._writer.write(frames)
            except UnsupportedVideoError as error:  # the encoder did not open: not for this size, if the earlier
                if not self.segments or self._writer.frames_written:  # segments have it (an unsupported size
                    raise  # deleted a resumed run's saved progress)
                why = getattr(error.__cause__, "strerror", None) or error.__cause__ or error  # (FFmpeg's words)
                raise RanOutOfMemoryError(
                    f"{self.path}: the {self.codec} encoder could not start on the next frames ({why}), though it "
                    f"encoded the earlier ones at this size: most likely memory ran out; free memory (close other "
                    f"programs) and {again()} to go on") from error
        self._bar.update(len(frames) if frames.ndim == 4 else 1)

    def start_progress(self) -> None:
        """Show the progress bar now (as `VideoWriter.start_progress`), counting the committed frames."""
        if self._bar is None:
            self._bar = tqdm(initial=self.frames_committed, **self._bar_settings, **bar_options())

    def commit(self) -> tuple[str, int] | None:
        """Close the open segment and return its (name, frame count); None when it has no frames."""
        writer, self._writer = self._writer, None
        if writer is None or not writer.is_open or writer.frames_written == 0:
            if writer is not None:
                writer.abort()  # nothing written, or an error aborted it already: no segment
            return None
        writer.close()
        self.segments.append((writer.path.name, writer.frames_written))
        return self.segments[-1]

    def abort(self) -> None:
        """Throw away the open segment (committed ones stay in the work folder)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def finish(self, finishing: Optional[Callable[[], None]] = None) -> Path:
        """Commit the open segment and join all segments into `path`; the work folder is left as it is.
        ``finishing`` is called once the joined output is complete, just before it is put in place."""
        self.commit()
        self._close_bar()
        if not self.segments:
            raise InputError(f"no frames were written to {self.path}; nothing was saved")
        files = [self.work_dir / name for name, _ in self.segments]
        counts = [count for _, count in self.segments]
        temp = temporary_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.codec == "png":
                _join_frame_folders(temp, files)
            else:
                has_audio = self.audio_from is not None and carries_audio(Path(self.audio_from))
                _join_encoded(temp, files, counts, self.clock, self.audio_from if has_audio else None,
                              None if self.audio_until_frame is None else self.clock.seconds(self.audio_until_frame),
                              self.tags)
            if finishing is not None:
                finishing()
            move_into_place(temp, self.path, self.overwrite)
        except OSError as error:
            remove_temporary(temp)
            raise cannot_write(self.path, error) from None
        except av.FFmpegError as error:
            remove_temporary(temp)
            raise finish_error(self.path, error) from None
        except BaseException:
            remove_temporary(temp)
            raise
        return self.path


def _join_frame_folders(temp: Path, folders: Sequence[Path]) -> None:
    """PNG frames of `folders`, in order, into the new folder `temp` as one numbered sequence."""
    temp.mkdir()
    index = 0
    for folder in folders:
        for frame in frame_files(folder):
            target = temp / PNG_NAME.format(index)
            try:
                os.link(frame, target)  # the segment keeps its file until the join has succeeded
            except OSError:
                shutil.copyfile(frame, target)
            index += 1


def _join_encoded(temp: Path, files: Sequence[Path], counts: Sequence[int], clock: FrameClock,
                  audio_from: Path | None, audio_until_s: Fraction | None = None,
                  tags: tuple[dict[str, str], dict[str, str]] = ({}, {})) -> None:
    """Copy the video packets of the segment `files` (`counts` frames each) into one container `temp`.

    Each packet's timestamps are turned into frame numbers (exact: every segment has the same
    frame rate) and shifted by the frames of the segments before it; `clock` turns frame numbers
    into the output's timestamps (ticks of 1 / frame rate, or each frame's own time). Decode
    timestamps must rise across segments, but the encoder's B-frame delay (how far the first decode
    timestamp lies before the first frame) depends on a segment's length (a 2-frame segment has
    none, a long one 2 frames with x264's defaults), so every segment's decode timestamps are moved
    back to the largest delay of all. Audio from `audio_from` is interleaved as
    `VideoWriter` does it, up to `audio_until_s` seconds (None: all of it). `tags`: the container's and the
    video track's metadata tags (`star_vsr.io.tags.source_tags`).
    """
    frame_rate = clock.frame_rate
    delays = [_decode_delay(file, frame_rate) for file in files]
    output = av.open(str(temp), mode="w")
    output.metadata.update(tags[0])
    audio: AudioCopy | None = None
    try:
        stream, headers, offset = None, None, 0
        for file, expected, delay in zip(files, counts, delays):
            segment = open_container(file)
            try:
                source = segment.streams.video[0]
                if stream is None:
                    stream, headers = output.add_stream_from_template(source), source.codec_context.extradata
                    stream.time_base = clock.time_base
                    if output.format.name in ("mp4", "mov"):  # the tag `VideoWriter` gave the segments: the template
                        stream.codec_tag = source.codec_tag  # leaves it out (H.265 was hev1, which Apple refuses)
                    stream.metadata.update(tags[1])
                    # the rate in the header (Matroska's default duration: without it a 1-frame .mkv read as 1000
                    # fps, and a variable-rate one of intra-only FFV1 lost every frame's duration, which the muxer
                    # writes only where it differs from the default), as the encoder's own stream has it
                    stream.codec_context.framerate = frame_rate
                    if audio_from is not None:
                        audio = AudioCopy(audio_from, output)
                elif source.codec_context.extradata != headers:
                    raise CorruptVideoError(f"{file} was encoded with other codec settings than the segments "
                                            f"before it and cannot be joined to them")
                count = 0
                for packet in segment.demux(source):
                    if packet.size == 0 or packet.pts is None:
                        continue  # the demuxer's end-of-stream packet
                    dts = packet.pts if packet.dts is None else packet.dts  # intra-only streams in .mkv
                    pts_frame = round(packet.pts * source.time_base * frame_rate)
                    dts_frame = round(dts * source.time_base * frame_rate) - (max(delays) - delay)
                    packet.stream = stream
                    clock.retime(packet, offset + pts_frame, offset + dts_frame)
                    output.mux(packet)
                    count += 1
                    if audio is not None:
                        audio.mux_until(clock.seconds(offset + count))
            finally:
                segment.close()
            if count != expected:
                raise CorruptVideoError(f"{file} holds {count} frames where {expected} were written; the segment "
                                        f"is damaged")
            offset += count
        if audio is not None:
            audio.finish(audio_until_s)
            audio = None
    finally:
        if audio is not None:
            audio.close()
        output.close()


def _decode_delay(file: Path, frame_rate: Fraction) -> int:
    """Frames by which the first decode timestamp of segment `file` precedes its first frame (0 without B-frames)."""
    segment = open_container(file)
    try:
        source = segment.streams.video[0]
        for packet in segment.demux(source):
            if packet.size and packet.pts is not None:
                dts = packet.pts if packet.dts is None else packet.dts
                return max(0, -round(dts * source.time_base * frame_rate))
        return 0
    finally:
        segment.close()
