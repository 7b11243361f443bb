"""Argument types and input checks that several ``star-vsr`` commands share (``upscale``, ``upscale-batch``,
``degrade``, ``evaluate``, ``demo``, ``distill``): ``--seed``, ``--fps``, ``--max-frames``, paths, and the notes a
command prints about an input before working on it."""

from __future__ import annotations

import argparse
import os
import re
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Optional

from ..errors import InputError

#: The widest a description's lines are filled, in a wider terminal too (long lines are hard to read).
HELP_TEXT_WIDTH = 100


class ParagraphsHelpFormatter(argparse.HelpFormatter):
    """The commands' ``--help``: the description (the module docstring) filled paragraph by paragraph to the
    terminal's width, at most `HELP_TEXT_WIDTH`. Its source lines had become 20 to 116 characters long (argparse's
    ``RawDescriptionHelpFormatter`` printed them as they were: ragged, and wrapped mid-word in an 80-column
    terminal). A paragraph is blank-line separated; in one, a line starting with ``- `` is a list item and one
    starting with spaces a table row (``  --flag  text``) or a command: each is filled on its own, its wrapped lines
    indented under its text; a line indented that far (and deeper than the row's own start) continues it."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        width = min(width, HELP_TEXT_WIDTH)
        paragraphs = re.split(r"\n(?:[ \t]*\n)+", textwrap.dedent(text).strip("\n"))
        return "\n\n".join("\n".join(_fill_block(block, width, indent) for block in _blocks(paragraph))
                             for paragraph in paragraphs)


def _blocks(paragraph: str) -> list[list[str]]:
    """``paragraph``'s lines grouped: prose lines together, each list item or table row with the lines indented
    under its text."""
    blocks: list[list[str]] = []
    for line in paragraph.splitlines():
        indent = _indent(line)
        if not blocks:
            blocks.append([line])
            continue
        start, hanging = _indent(blocks[-1][0]), _hanging_indent(blocks[-1][0])
        under_its_text = hanging > 0 and indent >= hanging and indent > start  # (two indented commands: two rows)
        more_prose = hanging == 0 and indent == 0 and not line.startswith("- ")
        if under_its_text or more_prose:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _hanging_indent(first_line: str) -> int:
    """The column where the text of a block starting with ``first_line`` starts: 0 for prose, 2 after a list
    item's ``- ``, and for an indented line (a table row) after its indent, first word and the gap of two or more
    spaces after that word (or its indent alone, without such a gap)."""
    if first_line.startswith("- "):
        return 2
    row = re.match(r"\s+\S+\s{2,}", first_line)
    return row.end() if row else _indent(first_line)


def _fill_block(lines: list[str], width: int, indent: str) -> str:
    hanging = _hanging_indent(lines[0])
    text = " ".join([lines[0][hanging:]] + [line.strip() for line in lines[1:]])
    return textwrap.fill(" ".join(text.split()), width, initial_indent=indent + lines[0][:hanging],
                         subsequent_indent=indent + " " * hanging, break_on_hyphens=False, break_long_words=False)


def add_fps_argument(parser: argparse.ArgumentParser) -> None:
    """``--fps``, the frame rate of an image-folder input (``upscale``, ``upscale-batch`` and ``degrade``)."""
    parser.add_argument("--fps", type=frame_rate_argument, default=None,
                        help="frame rate of image-folder inputs, which store none (default 30; 24000/1001 or "
                             "23.976 for NTSC film); video files keep their own rate (--fps is refused where the "
                             "input is only video files, or one image)")


#: The largest ``--seed``: torch and NumPy take every integer in [0, 2^63).
MAX_SEED = 2**63 - 1
#: The highest ``--fps`` taken (video codecs and players go no higher in practice).
MAX_FRAME_RATE = 1000
#: The lowest ``--fps`` taken: a frame every 1000 s (a time-lapse of one frame every few minutes is far above it;
#: MP4 and Matroska writers were tested down to it, and below 1/1000 rates rounded to 0 or FFmpeg refused them).
MIN_FRAME_RATE = Fraction(1, 1000)


def device_argument(text: str) -> str:
    """A ``--device`` as the commands compare it (``auto``, ``cpu``, ``cuda:1``), in any case: ``CPU`` was refused as
    unknown, and ``AUTO`` was not the ``auto`` that upscale-batch places each process by."""
    return text.strip().lower()


def path_argument(text: str) -> str:
    """A file or folder argument, refused when empty (``-o ""``, or ``-o "$OUT"`` with ``OUT`` unset), which
    ``Path`` reads as the current folder: an input would be the current folder, an output go into it; a leading
    ``~`` expanded as the shell does; ``NEW/..`` of a missing ``NEW`` taken out (`without_missing_parents`)."""
    from ..outputs import without_missing_parents

    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?); name a file or folder")
    # the shell expands ~ only at a word's start: `--model=~/student` came as "~/student", "does not exist"
    return without_missing_parents(os.path.expanduser(text) if text.startswith("~") else text)


def max_frames_argument(text: str) -> int:
    """``--max-frames``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def seed_argument(text: str) -> int:
    """``--seed``: an integer in [0, MAX_SEED] (a negative or larger one was a traceback from torch or NumPy)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"the seed must be between 0 and 2^63 - 1 = {MAX_SEED}, got {text}")
    return seed


def frame_rate_argument(text: str) -> Fraction:
    """``--fps``: a number or a fraction ("24000/1001"); a decimal within 0.001 fps of an NTSC rate
    (N x 1000/1001: 23.976, 29.97, 59.94) is taken as that rate, as a user writing it means."""
    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a frame rate: {text!r} (a number such as 25 or 23.976, or "
                                         "24000/1001)") from None
    if not MIN_FRAME_RATE <= rate <= MAX_FRAME_RATE:
        raise argparse.ArgumentTypeError(f"the frame rate must be between {MIN_FRAME_RATE} (a frame every "
                                         f"{1 / MIN_FRAME_RATE} s) and {MAX_FRAME_RATE}, got {text}")
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    return ntsc if "/" not in text and rate.denominator != 1 and abs(ntsc - rate) < Fraction(1, 1000) else rate


def check_fps_for_clips(fps: Optional[Fraction], folder: Path, clips: list[Path]) -> None:
    """``InputError`` for ``--fps`` on a folder of clips without a frame folder: video files keep their own rate
    (``upscale-batch`` and ``degrade`` of a folder)."""
    if fps is not None and not any(clip.is_dir() for clip in clips):
        raise InputError(f"--fps is the frame rate of folders of frames, which store none; {folder} holds only "
                         f"video files, which keep their own")


def input_notes(path: str | Path, deinterlace: bool | str, folder_fps: Fraction | None = None, *,
                frames_output: bool = False) -> list[str]:
    """What to tell a user about an input before upscaling it: deinterlacing, the rate given to a frame folder
    (unless the output is PNG frames, which store none either), then `VideoInfo.caveats`."""
    from ..frames import FileFrameSource
    from ..io.reader import DEINTERLACER, LONE_FRAME_DEINTERLACER

    source = FileFrameSource(path, deinterlace, folder_fps)
    deinterlacer = LONE_FRAME_DEINTERLACER if source.info.num_frames == 1 else DEINTERLACER
    notes = [f"{path} is interlaced; deinterlacing it ({deinterlacer}) first, --deinterlace off keeps the fields"] \
        if source.deinterlaced and deinterlace == "auto" else []
    if deinterlace is True and (source.info.is_image_folder or source.info.is_photo):  # did nothing, said nothing
        kind = "photo" if source.info.is_photo else "folder of frames"
        notes.append(f"--deinterlace on does nothing for {path}: a {kind} is read as whole pictures, not fields")
    if source.info.is_image_folder and folder_fps is None and not frames_output:
        notes.append(f"{path} is a folder of frames, which stores no frame rate: the output plays it at "
                     f"{source.info.fps:g} fps (--fps sets it)")
    return notes + source.info.caveats()
