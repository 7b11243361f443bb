"""VideoClipDataset: random HR clips from videos or frame folders, degraded on the fly.

Sources can be given as

- a folder whose entries are video files (``.mp4``, ``.mkv``, ``.mov``, ...) and/or sub-folders of
  PNG/JPEG/TIFF/BMP/WebP frames; a caption for ``clip.mp4`` (or frame folder ``clip/``) is read from ``clip.txt``
  next to it when that file exists (a folder that directly holds frames is one source);
- a CSV file with a ``path`` column and an optional ``caption`` column;
- a JSON file holding a list of ``{"path": ..., "caption": ...}`` objects (caption optional) or of
  path strings;
- a single video file, or a Python list of paths / ``{"path", "caption"}`` dicts.

Relative paths in a CSV/JSON list are relative to the list's folder.

Each item cuts ``num_frames`` frames at a random start and frame interval out of one source
(``star_vsr.io.read_frames``: PyAV seeks, decord only for RGB-coded video such as FFV1 RGB; frame
folders read only the files needed), crops a
random ``crop_size`` window, flips it horizontally half of the time, then builds the LR clip
and the hint (``star_vsr.data.pairs``).
"""

from __future__ import annotations

import csv
import io
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import numpy as np

from star_vsr.data.base import BadSampleError, ClipPairDataset, CropSize, check_caption, sources_fingerprint
from star_vsr.data.pairs import DegradationSpec
from star_vsr.errors import InputError, StarVSRError, VideoNotFoundError, check_true_or_false, why_missing
from star_vsr.io import probe_video, read_frames
from star_vsr.io.folders import (VIDEO_EXTENSIONS, broken_link_line, broken_links, clips_in_folder, is_frame_folder,
                                 other_subfolders, other_subfolders_note, stray_images_note)
from star_vsr.io.probe import VideoInfo
from star_vsr.units import count_of
from star_vsr.user_warnings import warn_user
from star_vsr.json_files import loads_json

#: Suffix of a caption file next to a clip (``clip.mp4`` -> ``clip.txt``).
CAPTION_SUFFIX = ".txt"
#: Errors of the readers that make a source unusable (rather than revealing a bug).
_READ_ERRORS = (StarVSRError, OSError, RuntimeError, ValueError)

FrameInterval = Union[int, Sequence[int]]


@dataclass(frozen=True)
class ClipSource:
    """One training video: a file or frame folder, and its caption (None: use the default)."""

    path: Path
    caption: Optional[str] = None


def _read_text(file: Path) -> str:
    """A caption or clip-list file as text: UTF-8, with or without the BOM Notepad and Excel write (which became
    three tokens of every caption); another encoding is an ``InputError`` saying how to save it."""
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(f"{file} is not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8 "
                         f"(Excel: CSV UTF-8; Notepad: UTF-8)") from None


def read_caption_file(clip: Path) -> Optional[str]:
    """The caption in ``clip.txt`` beside the video ``clip.mp4`` (or frame folder ``clip/``); None without one."""
    caption_file = clip.with_suffix(CAPTION_SUFFIX) if clip.is_file() else clip.with_name(clip.name + CAPTION_SUFFIX)
    if caption_file.is_file():
        return _read_text(caption_file).strip()  # "" (an empty file) means the default caption, at use
    return None


def _scan_folder(folder: Path) -> list[ClipSource]:
    if is_frame_folder(folder):
        return [ClipSource(folder, read_caption_file(folder))]
    clips = clips_in_folder(folder)
    # (the videos of a subfolder were left out of the training data without a word; cache-teacher said so)
    for note in (stray_images_note(folder), other_subfolders_note(folder, other_subfolders(folder, clips)),
                 *map(broken_link_line, broken_links(folder))):  # (links were left out without a word)
        if note:
            warn_user(note)
    return [ClipSource(entry, read_caption_file(entry)) for entry in clips]


def _entry(item: Any, root: Path, where: str) -> ClipSource:
    if isinstance(item, ClipSource):
        return item
    if isinstance(item, (str, Path)):
        path, caption = item, None
    elif isinstance(item, dict) and "path" in item:
        path, caption = item["path"], item.get("caption")
    else:
        raise InputError(f"{where}: each clip must be a path or an object with a 'path' key, got {item!r}")
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise InputError(f"{where}: a clip's path must be a file or folder name, got {path!r}")
    if caption is not None and not isinstance(caption, str):  # (a list became the caption "['a', 'b']")
        raise InputError(f"{where}: a clip's caption must be text, got {caption!r} for {path}")
    path = Path(path)
    caption = caption.strip() or None if caption is not None else None  # empty: the default, as in a CSV
    return ClipSource(path if path.is_absolute() else root / path, caption)


#: Suffixes of text files that are clip lists in other formats (one JSON object per line, tab-separated, plain
#: lines): refused by name, not read as a video.
OTHER_LIST_SUFFIXES = (".jsonl", ".ndjson", ".tsv", ".txt", ".lst", ".list", ".yaml", ".yml")


def _read_list_file(file: Path) -> list[ClipSource]:
    if file.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(_read_text(file), newline=""))
        if reader.fieldnames is not None:  # "path, caption" (a space after the comma) and "Caption" name the columns
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
            twice = [name for name in ("path", "caption") if reader.fieldnames.count(name) > 1]
            if twice:  # (the last of them was read without a word)
                raise InputError(f"{file}: the columns {', '.join(twice)} are named twice; keep one of each")
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InputError(f"{file}: a clip list in CSV needs a 'path' column (and optionally 'caption'); "
                             f"found columns {reader.fieldnames}")
        rows = []
        for row in reader:
            if any(isinstance(v, str) and v.strip() for v in row.get(None, ())):  # more fields than columns
                raise InputError(f"{file}, line {reader.line_num}: more fields than columns ({', '.join(row[None])} "
                                 f"left over); a caption that holds a comma needs quotes: "
                                 f"clip.mp4,\"a dog, running\"")
            values = {k: v.strip() for k, v in row.items() if k in ("path", "caption") and isinstance(v, str)}
            values = {k: v for k, v in values.items() if v}
            if "path" in values:
                rows.append(values)
            elif any(isinstance(v, str) and v.strip() for v in row.values()):  # rows left empty (",,") are skipped
                raise InputError(f"{file}, line {reader.line_num}: no path in this row ({row})")
    else:
        try:
            rows = loads_json(_read_text(file))
        except json.JSONDecodeError as error:
            raise InputError(f"{file} is not valid JSON ({error})") from error
        if not isinstance(rows, list):
            raise InputError(f"{file}: a clip list in JSON must be a list of paths or of "
                             '{"path": ..., "caption": ...} objects')
    return [_entry(row, file.parent, str(file)) for row in rows]


def list_clip_sources(source: Union[str, Path, Sequence[Any]]) -> list[ClipSource]:
    """Resolve a folder, CSV/JSON list, video file or Python list into clip sources (see module doc).

    Raises:
        VideoNotFoundError: a given folder or list file does not exist.
        InputError: a list file is malformed, or no clip was found.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise VideoNotFoundError(f"training data {path} {why_missing(path)}; give a folder of videos, a CSV/JSON "
                                     "clip list or a video file")
        if path.is_dir():
            sources = _scan_folder(path)
        elif path.suffix.lower() in (".csv", ".json"):
            sources = _read_list_file(path)
        elif path.suffix.lower() in OTHER_LIST_SUFFIXES:  # else read as a video, failing at the first item
            raise InputError(f"{path} looks like a list of clips, but clip lists are CSV (.csv, with a 'path' column "
                             f"and optionally 'caption') or JSON (.json, a list of paths or of {{\"path\": ..., "
                             f"\"caption\": ...}} objects); convert it, or give a folder of videos")
        else:
            sources = [ClipSource(path, read_caption_file(path))]
    elif isinstance(source, Mapping):  # (its keys were read as file names)
        raise InputError("the training data is one {'path': ..., 'caption': ...} object; give a list of them")
    else:
        sources = [_entry(item, Path.cwd(), "clip list") for item in source]
    if not sources and isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".csv", ".json"):
        raise InputError(f"the clip list {source} lists no clips")
    if not sources:
        raise InputError(f"no training clips found in {source}: expected video files "
                         f"({', '.join(VIDEO_EXTENSIONS)}) "
                         "or folders of PNG/JPEG/TIFF/BMP/WebP frames")
    return sources


def sample_frame_indices(rng: np.random.Generator, total_frames: int, num_frames: int,
                         frame_interval: tuple[int, int]) -> list[int]:
    """Indices of a clip: ``num_frames`` frames ``interval`` apart from a random start.

    ``interval`` is drawn uniformly from ``frame_interval`` (min, max) and lowered when the video
    is too short for it (never below 1).

    Raises:
        BadSampleError: the video has fewer than ``num_frames`` frames.
    """
    if total_frames < num_frames:
        raise BadSampleError(f"has {count_of(total_frames, 'frame')}, a clip needs {num_frames}")
    interval = int(rng.integers(frame_interval[0], frame_interval[1] + 1))
    if num_frames > 1:
        interval = max(1, min(interval, (total_frames - 1) // (num_frames - 1)))
    span = (num_frames - 1) * interval + 1
    start = int(rng.integers(0, total_frames - span + 1))
    return [start + k * interval for k in range(num_frames)]


def as_frame_interval(frame_interval: FrameInterval, name: str = "frame_interval") -> tuple[int, int]:
    """``2`` -> (2, 2); ``(min, max)`` -> (min, max): whole numbers with 1 <= min <= max, else ``InputError``;
    like ``check_whole_number``, a float without a fraction (``2.0``, as YAML and JSON may give it) counts."""
    def whole(value: object) -> bool:
        return not isinstance(value, bool) and (isinstance(value, numbers.Integral)
                                                or (isinstance(value, float) and value.is_integer()))

    if whole(frame_interval):
        interval = (int(frame_interval), int(frame_interval))
    elif isinstance(frame_interval, Sequence) and len(frame_interval) == 2 and all(map(whole, frame_interval)):
        interval = (int(frame_interval[0]), int(frame_interval[1]))
    else:
        raise InputError(f"{name} must be an int or (min, max), got {frame_interval!r}")
    if not 1 <= interval[0] <= interval[1]:
        raise InputError(f"{name} needs 1 <= min <= max, got {frame_interval!r}")
    return interval


class VideoClipDataset(ClipPairDataset):
    r"""Random HR clips from videos / frame folders, with LR clips degraded on the fly.

    Parameters:
        source: folder, CSV/JSON clip list, video file, or list of paths / ``{"path", "caption"}`` dicts.
        num_frames (`int`, defaults to 8): frames per clip.
        crop_size (`int` or `(h, w)`, defaults to 256): HR crop, divisible by ``scale``.
        scale (`int`, defaults to 4): HR / LR size ratio (2, 3, 4).
        degradation (defaults to `"medium"`): preset name, ``DegradationConfig``, or None / "none" for
            bicubic downsampling only.
        frame_interval (`int` or `(min, max)`, defaults to 1): frames between consecutive clip frames;
            a (min, max) pair draws it per clip.
        random_flip (`bool`, defaults to True): flip clips horizontally with probability 1/2.
        caption_dropout (`float`, defaults to 0.0): probability of an empty caption.
        default_caption (`str`, defaults to `""`): caption of sources without one.
        seed (`int`, defaults to 0): base seed; item i of epoch e depends only on (seed, e, i).
        length (`int`, *optional*): items per epoch (default: one per source).
        backend (`str`, defaults to `"auto"`): frame reader, "auto", "decord" or "pyav" (``star_vsr.io.read_frames``).
        sharpen_gt (`bool`, defaults to False): sharpen the HR clip (unsharp masking) and degrade that
            (``ClipPairDataset``).

    Items: see ``ClipPairDataset``.
    """

    def __init__(self, source: Union[str, Path, Sequence[Any]], num_frames: int = 8, crop_size: CropSize = 256,
                 scale: int = 4, degradation: DegradationSpec = "medium", frame_interval: FrameInterval = 1,
                 random_flip: bool = True, caption_dropout: float = 0.0, default_caption: str = "", seed: int = 0,
                 length: Optional[int] = None, backend: Literal["auto", "decord", "pyav"] = "auto",
                 sharpen_gt: bool = False) -> None:
        if backend not in ("auto", "decord", "pyav"):  # else every source was skipped as unreadable, blaming the data
            raise InputError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
        self.sources = list_clip_sources(source)
        super().__init__(len(self.sources), num_frames, crop_size, scale, degradation, caption_dropout, seed, length,
                         sharpen_gt)
        self.frame_interval = as_frame_interval(frame_interval)
        self.random_flip = check_true_or_false("random_flip", random_flip)  # ("no" flipped)
        self.default_caption = check_caption("default_caption", default_caption)
        self.backend = backend
        self._info: dict[int, VideoInfo] = {}

    def source_name(self, source: int) -> str:
        return str(self.sources[source].path)

    def fingerprint(self, as_given: bool = False) -> str:
        return sources_fingerprint([s.path for s in self.sources], [s.caption for s in self.sources], as_given)

    def _probe(self, source: int) -> VideoInfo:
        if source not in self._info:
            self._info[source] = probe_video(self.sources[source].path)
        return self._info[source]

    def load_clip(self, source: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        clip = self.sources[source]
        crop_h, crop_w = self.crop_size
        try:
            info = self._probe(source)
        except _READ_ERRORS as error:
            if clip.path.is_dir() and clips_in_folder(clip.path):  # a list's entry (the reader advised upscale-batch)
                raise BadSampleError("is a folder of clips, where a clip list names one video (or one folder of "
                                     "frames) an entry; list its clips, or give the folder itself as the training "
                                     "data") from error
            raise BadSampleError(f"cannot be read ({error})") from error
        if info.height < crop_h or info.width < crop_w:
            raise BadSampleError(f"frames of {info.width}x{info.height} are smaller than the crop {crop_w}x{crop_h}")
        indices = sample_frame_indices(rng, info.num_frames, self.num_frames, self.frame_interval)
        top = int(rng.integers(0, info.height - crop_h + 1))
        left = int(rng.integers(0, info.width - crop_w + 1))
        flip = self.random_flip and rng.random() < 0.5
        try:
            frames = read_frames(clip.path, indices, backend=self.backend)  # (n, h, w, 3) uint8
        except _READ_ERRORS as error:
            raise BadSampleError(f"cannot be decoded ({error})") from error
        frames = frames[:, top:top + crop_h, left:left + crop_w]  # (n, H, W, 3)
        if flip:
            frames = frames[:, :, ::-1]
        # no caption, or an empty one (an empty caption file; a list's empty cell is None), is the default
        caption = clip.caption or self.default_caption
        return np.ascontiguousarray(frames), caption
