"""Folders as inputs: a folder of frame images is one clip, a folder of videos and frame folders is a
collection of clips (what `upscale-batch`, `degrade`, `evaluate`, `info` and the datasets take). Names sort
naturally (``frame2.png`` before ``frame10.png``); hidden entries are never clips.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Collection, Iterator, Optional, Sequence

from star_vsr.errors import InputError, why_missing

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
"""File suffixes (lower case) that count as frames of an image-folder video."""

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                                     ".flv", ".wmv", ".3gp", ".3g2", ".m2ts", ".mts", ".mxf", ".vob", ".ogv",
                                     ".y4m", ".nut", ".dv", ".asf", ".gif", ".h264", ".264", ".h265", ".265",
                                     ".hevc")  # (the last five: raw streams, `VideoInfo.raw_stream`)
"""File suffixes (lower case) taken as videos when a command or dataset scans a folder."""


def natural_sort_key(name: str) -> tuple[tuple[str | int, ...], tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value: "frame2.png" < "frame10.png", then by the name itself.

    Splitting on digit runs alternates text and numbers, so keys compare element by element
    without ever comparing a str to an int. The name without its suffix comes first, then the suffix, each so
    split: "in.mp4" < "in8.mp4" (the suffix's dot came after the end of "in"), "take.9" < "take.10", "shot.v2" <
    "shot.v10". Names of one key (``1.png`` and
    ``01.png``, ``A.png`` and ``a.png``) are ordered by name, not as the file system lists them (which differs
    between machines).
    """
    stem, suffix = os.path.splitext(name)
    return _natural_parts(stem), _natural_parts(suffix), name


def _natural_parts(text: str) -> tuple[str | int, ...]:
    """``text`` split into its text and digit runs, the digits as numbers and the text in lower case."""
    return tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(re.split(r"(\d+)", text)))


def _visible_files(folder: Path, suffixes: Collection[str]) -> Iterator[Path]:
    """The files directly in `folder` whose suffix (any case) is one of `suffixes`; hidden ones aside."""
    return (entry for entry in folder.iterdir()
            if entry.suffix.lower() in suffixes and entry.is_file() and not entry.name.startswith("."))


def holds_frame_images(folder: Path) -> bool:
    """Whether `folder` directly holds PNG/JPEG/TIFF/BMP/WebP files (hidden ones aside): the frames of one video."""
    return any(_visible_files(folder, IMAGE_EXTENSIONS))


def _holds_video_files(folder: Path) -> bool:
    return any(_visible_files(folder, VIDEO_EXTENSIONS))


def _holds_frame_folders(folder: Path) -> bool:
    return any(entry.is_dir() and not entry.name.startswith(".") and holds_frame_images(entry)
               for entry in folder.iterdir())


def is_frame_folder(folder: Path) -> bool:
    """Whether `folder` is the frame folder of one clip: it directly holds frame images and no video file or
    frame folder. A folder of clips with a picture beside them (a poster, a thumbnail, an overview) is a folder of
    clips (`stray_images_note`): with frame folders beside the picture, the picture alone was scored or upscaled."""
    return (folder.is_dir() and holds_frame_images(folder) and not _holds_video_files(folder)
            and not _holds_frame_folders(folder))


def clips_in_folder(folder: Path) -> list[Path]:
    """The clips directly in `folder`, naturally sorted: video files and subfolders of frame images (the
    layout of REDS4 / Vid4 and of ``upscale-batch --codec png``). Hidden entries (upscale's
    ``.NAME.partial`` progress folders among them) and folders without frames are not clips."""
    return [entry for entry in sorted(folder.iterdir(), key=lambda e: natural_sort_key(e.name))
            if not entry.name.startswith(".")
            and ((entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS)
                 or (entry.is_dir() and holds_frame_images(entry)))]  # a stray video in it: the reader says so


def broken_links(folder: Path) -> list[Path]:
    """The symbolic links directly in `folder` named like videos whose target does not exist (a moved or unmounted
    disk): `clips_in_folder` cannot tell what they were, so the batch commands name them as skipped (they were
    left out without a word). Hidden entries aside."""
    return [entry for entry in sorted(folder.iterdir(), key=lambda e: natural_sort_key(e.name))
            if not entry.name.startswith(".") and entry.suffix.lower() in VIDEO_EXTENSIONS
            and entry.is_symlink() and not entry.exists()]


def broken_link_line(link: Path) -> str:
    """How the batch commands report a broken link to a video (`broken_links`)."""
    return f"skipped {link}: it {why_missing(link)}"


def clip_collection(path: Path) -> list[Path]:
    """The clips of ``path`` when it is a folder of clips (`clips_in_folder`), not the frame folder of one clip
    (`is_frame_folder`) or a file; [] otherwise."""
    return clips_in_folder(path) if path.is_dir() and not is_frame_folder(path) else []


def check_output_outside_clips(output_dir: Path, clips: Sequence[Path], flag: str) -> None:
    """``InputError`` when the output folder ``output_dir`` (given as ``flag``) of a command over a folder of clips
    is inside one of the frame folders among ``clips``: its outputs would mix with that clip's frames (and the clip
    then read as a folder of clips)."""
    for folder in (clip for clip in clips if clip.is_dir()):
        if output_dir.resolve().is_relative_to(folder.resolve()):
            raise InputError(f"the output folder {output_dir} is inside {folder}, the frame folder of one of the "
                             f"input's clips: its outputs would mix with that clip's frames; choose another {flag}")


def _first_names(names: Sequence[str]) -> str:
    """``a, b, c, ... (7 in all)``: the first three of ``names`` in a note."""
    return ", ".join(names[:3]) + (f", ... ({len(names)} in all)" if len(names) > 3 else "")


def stray_images_note(folder: Path) -> str | None:
    """What the commands that take a folder of clips say of the pictures directly in it (a poster, a
    thumbnail; `is_frame_folder`): they are not clips and are left out. None when there are none."""
    images = sorted((entry.name for entry in _visible_files(folder, IMAGE_EXTENSIONS)), key=natural_sort_key)
    if not images:
        return None
    clips = "videos" if _holds_video_files(folder) else "frame folders (clips)"
    return (f"{folder} holds {clips}, so the picture{'s' if len(images) != 1 else ''} beside them "
            f"{'are' if len(images) != 1 else 'is'} left out ({_first_names(images)}); the frames of a video go in "
            f"a folder of their own, one per video")


def other_subfolders(folder: Path, clips: Sequence[Path], besides: Sequence[Path] = ()) -> list[str]:
    """Names of the visible subfolders of ``folder`` that are not among ``clips`` (no frame images in them: empty,
    or a folder of videos, whose videos are not searched) nor ``besides`` (e.g. the command's own output folder)."""
    skip = {Path(p).resolve() for p in (*clips, *besides)}
    return sorted((p.name for p in folder.iterdir()
                   if p.is_dir() and not p.name.startswith(".") and p.resolve() not in skip), key=natural_sort_key)


def other_subfolders_note(folder: Path, names: Sequence[str]) -> str | None:
    """What the commands that take a folder of clips say of ``other_subfolders``: left out; None when none."""
    if not names:
        return None
    return (f"subfolders of {folder} without frame images are left out ({_first_names(names)}); the videos inside a "
            f"subfolder are not searched: give that subfolder itself")


def clip_name(clip: Path) -> str:
    """A clip's name: a video's file stem, a frame folder's name (what pairs clips of two folders, and names them in
    tables)."""
    return clip.stem if clip.is_file() else clip.name


def clip_key(path: Path) -> str:
    """How ``clips_by_name`` keys the clip ``path``: its ``clip_name`` in Unicode NFC."""
    return unicodedata.normalize("NFC", clip_name(path))


def clips_by_name(folder: Path, flag: str, needed: Optional[Collection[str]] = None) -> dict[str, Path]:
    """`clips_in_folder` by name: a video's file stem or a frame folder's name (how two folders of clips,
    LR and ground truth or prediction and ground truth, are paired); `InputError` naming the ``flag`` when two
    share a name (``a.mp4`` and ``a.mkv``, or ``a.mp4`` and a folder ``a``: which one to take would be a guess),
    among the ``needed`` names only where given (clips the pairing leaves out may share one: upscale-batch keeps
    an ``a.mkv`` beside ``a.mp4``). Names are keyed in Unicode NFC: ``café`` written on macOS (NFD, ``e`` + a
    combining accent) and typed elsewhere (NFC) are one name, and did not pair."""
    clips: dict[str, list[Path]] = {}
    for path in clips_in_folder(folder):
        clips.setdefault(clip_key(path), []).append(path)
    clashes = {name: paths for name, paths in clips.items()
               if len(paths) > 1 and (needed is None or name in needed)}
    if clashes:
        listed = "; ".join(", ".join(p.name + ("/" if p.is_dir() else "") for p in paths)
                           + (" (one name in two Unicode forms, NFC and NFD)"
                              if len({clip_name(p) for p in paths}) > 1 else "")
                           for paths in clashes.values())
        raise InputError(f"{flag} {folder} holds clips of the same name (videos are paired by name without the "
                         f"suffix, frame folders by their name): {listed}; keep one of each")
    return {name: paths[0] for name, paths in clips.items()}


def photos_in_folder(folder: Path) -> list[Path]:
    """The photos (PNG/JPEG/TIFF/BMP/WebP files) directly inside `folder`, naturally sorted, hidden ones aside
    (macOS's ``._x.jpg`` are not photos): the sources of a photo dataset."""
    return sorted(_visible_files(folder, IMAGE_EXTENSIONS), key=lambda entry: natural_sort_key(entry.name))


def list_image_files(folder: Path) -> list[Path]:
    """PNG/JPEG/TIFF/BMP/WebP files directly inside `folder`, naturally sorted. Hidden files are skipped.

    Raises `InputError` when there are none.
    """
    files = list(_visible_files(folder, IMAGE_EXTENSIONS))
    clips = clips_in_folder(folder)
    videos = [clip.name for clip in clips if clip.is_file()]
    frame_folders = [clip.name for clip in clips if clip.is_dir()]
    if videos:  # a folder of videos with a stray picture read as a 1-frame video, silently
        images = f" and {len(files)} frame image{'s' if len(files) != 1 else ''}" if files else ""
        also = (f"; or move the frame images into a folder of their own, then `star-vsr upscale-batch {folder} "
                f"-o FOLDER` for all" if files else f", or `star-vsr upscale-batch {folder} -o FOLDER` for all its "
                                                      f"videos")
        raise InputError(
            f"{folder} holds {len(videos)} video{'s' if len(videos) != 1 else ''} ({', '.join(videos[:3])}"
            f"{', ...' if len(videos) > 3 else ''}){images}; give one video file or a folder that holds only the "
            f"frames of one video{also}"
        )
    if frame_folders:  # REDS4 / Vid4's LR/ (LR/calendar/00000000.png, ...), maybe with an overview picture beside
        names = sorted((file.name for file in files), key=natural_sort_key)
        pictures = f"{len(files)} picture{'s' if len(files) != 1 else ''} ({_first_names(names)})"
        beside = f"{pictures} and " if files else "no frame images but "
        raise InputError(
            f"{folder} holds {beside}{len(frame_folders)} folder{'s' if len(frame_folders) != 1 else ''} "
            f"of frames ({', '.join(frame_folders[:3])}{', ...' if len(frame_folders) > 3 else ''}), one video each; "
            f"give one of them (to upscale them all: `star-vsr upscale-batch {folder} -o FOLDER`)"
        )
    if not files:
        raise InputError(
            f"{folder} is a folder but holds no {'/'.join(sorted(IMAGE_EXTENSIONS))} frames; "
            "point to a video file or a folder of frame images"
        )
    return sorted(files, key=lambda file: natural_sort_key(file.name))


def missing_numbers(files: Sequence[Path]) -> tuple[tuple[int, int], ...]:
    """Ranges (first, last) of the numbers missing between the first and the last of ``files`` where every name
    is one text and a number (``shot.1001.png``, ``0002.png``): frames lost from a numbered sequence; () for names
    that are not so numbered, or whose numbers are mostly not consecutive (numbered by time, not by frame)."""
    parts = [re.fullmatch(r"(.*?)(\d+)", file.stem) for file in files]
    if len(files) < 2 or None in parts or len({part.group(1).lower() for part in parts}) > 1:  # type: ignore
        return ()
    numbers = sorted({int(part.group(2)) for part in parts})  # type: ignore[union-attr]
    steps = [after - before for before, after in zip(numbers, numbers[1:])]
    if sum(step == 1 for step in steps) * 2 < len(steps):  # mostly not 1 apart: no frame count (timestamps,
        return ()  # FFmpeg's -frame_pts, every other frame kept), whose gaps are no lost frames
    return tuple((before + 1, after - 1) for before, after in zip(numbers, numbers[1:]) if after > before + 1)
