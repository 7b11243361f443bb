"""What a folder run (``upscale-batch``, ``degrade FOLDER``) says of the outputs it finds and skips as done.

Both commands count an output that exists as done: that is how a stopped run goes on. A file that only looks
like an output (another program's, a ``--max-frames`` preview, the input copied in, a run at another scale)
would then end up in a dataset without a word, so each existing output is probed once and the ones that do
not match what this run would make are named, with ``--overwrite`` as the way to redo them. One that cannot be
read at all (an empty file, a damaged one, a frame folder without frames) is named as not done, and the command
exits 1 (it exited 0, "N of N already done", over a dataset with holes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Mapping, Optional, Sequence

from ..errors import listed

if TYPE_CHECKING:
    from ..io.probe import VideoInfo

FFMPEG_CODECS = {"h264": "h264", "h265": "hevc", "ffv1": "ffv1"}
"""``--codec`` -> the codec name ``probe_video`` reports for a file it wrote."""

SIZE_SLACK = 1
"""Pixels a side may differ from the expected size and still match: 4:2:0 outputs are padded (``upscale``) or
cropped (``degrade``) to even sizes, by at most one pixel a side."""


@dataclass
class ExistingOutputs:
    """Existing outputs that do not match this run: output name -> how."""

    unreadable: dict[str, str] = field(default_factory=dict)  # "empty file", "damaged", "no frames", "cannot be read"
    short: dict[str, str] = field(default_factory=dict)  # fewer frames than this run: "1 of 5 frames"
    other_size: dict[str, str] = field(default_factory=dict)  # "64x48, not 256x192"
    other_codec: dict[str, str] = field(default_factory=dict)  # "h264": not --codec's (an .mkv: h264 or ffv1)

    def forget_sizes_of(self, names: Collection[str]) -> None:
        """Leave out the frame counts and sizes of the outputs ``names``, which another note names with why (their
        input changed since they were made: not "another program's file?" of a run's own output). An unreadable
        one keeps its note."""
        for name in names:
            self.other_size.pop(name, None)
            self.short.pop(name, None)

    def readable(self, names: Iterable[str]) -> list[str]:
        """``names`` without the outputs that cannot be read (named as not done: no other note of them)."""
        return [name for name in names if name not in self.unreadable]

    def not_done(self, done: Mapping[Path, str]) -> list[str]:
        """The inputs (names) among ``done`` (input -> its output's name, counted as done) whose output cannot be
        read: not done, and the command exits 1."""
        return [source.name for source, name in done.items() if name in self.unreadable]


def check_existing_outputs(inputs: list[Path], outputs: dict[Path, Path], codec: Optional[str],
                           expected: Callable[[VideoInfo, Path], tuple[int, int, int]]) -> ExistingOutputs:
    """Probe the existing output ``outputs[i]`` of each input ``i`` of ``inputs`` against what this run would
    make of it: ``expected(info of i, outputs[i])`` -> (frames, width, height); sizes within ``SIZE_SLACK``. PNG outputs
    (folders) count their frame files and are measured by their first. The codec is compared where ``codec``
    (``--codec``) names one: an .mkv input's output is NAME.mkv with H.264 and with FFV1, so a rerun with the
    other codec skips it. An input that cannot be probed is left to the run, which reports it if it gets to it."""
    from PIL import Image

    from ..errors import StarVSRError
    from ..io import probe_video
    from ..outputs import frame_files

    found = ExistingOutputs()
    for source in inputs:
        output = outputs[source]
        try:
            frames, width, height = expected(probe_video(source), output)
        except StarVSRError:  # the input itself: reported when (if ever) it is processed
            continue
        try:
            info = None if output.is_dir() else probe_video(output)
        except StarVSRError:
            found.unreadable[output.name] = "empty file" if _empty_file(output) else "cannot be read"
            continue
        if info is not None and info.damage:
            found.unreadable[output.name] = "damaged"
            continue
        if info is None:  # PNG frames
            try:
                files = frame_files(output)
            except OSError:  # a folder that cannot be listed (or gone meanwhile): not the batch's end
                found.unreadable[output.name] = "cannot be read"
                continue
            if not files:
                found.unreadable[output.name] = "no frames"
                continue
            try:
                with Image.open(files[0]) as image:
                    held, size = len(files), image.size  # (w, h)
            except (OSError, Image.DecompressionBombError):
                found.unreadable[output.name] = "cannot be read"
                continue
        else:
            held, size = info.num_frames, (info.width, info.height)
        if held < frames:
            found.short[output.name] = f"{held} of {frames} frames"
        if abs(size[0] - width) > SIZE_SLACK or abs(size[1] - height) > SIZE_SLACK:
            found.other_size[output.name] = f"{size[0]}x{size[1]}, not {width}x{height}"
        if info is not None and codec in FFMPEG_CODECS and info.codec != FFMPEG_CODECS[codec]:
            found.other_codec[output.name] = info.codec
    return found


def _empty_file(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def existing_output_lines(found: ExistingOutputs, codec: Optional[str], short_hint: str) -> list[str]:
    """The notes (without ``note: ``) that name ``found``'s outputs; ``short_hint``: what a short output may be
    (``"a --max-frames preview or another program's file?"``)."""
    lines = []
    if found.unreadable:
        many = len(found.unreadable) != 1
        lines.append(f"{len(found.unreadable)} existing output{'s' * many} cannot be read and {'are' if many else 'is'}"
                     f" not done: {listed([f'{name} ({how})' for name, how in found.unreadable.items()], 5)}; delete "
                     f"{'them' if many else 'it'} and run again to redo {'them' if many else 'it'} (--overwrite "
                     f"redoes every one)")
    for named, what, after in (
            (found.short, "hold{s} fewer frames than this run gives", f": {short_hint} delete {{them}} or pass "
                                                                       f"--overwrite to redo"),
            (found.other_size, "{are} not the size this run makes", "; pass --overwrite to redo {them}"),
            (found.other_codec, f"{{are}} not {codec}", f"; pass --overwrite to redo {{them}} with --codec {codec}")):
        if named:
            lines.append(done_but_line(len(named), what, listed([f"{name} ({how})" for name, how in named.items()], 5),
                                       after))
    return lines


def done_but_line(count: int, what: str, names: str, after: str) -> str:
    """``N existing outputs count as done but WHAT (NAMES)AFTER``, with ``{s}``, ``{are}``, ``{were}`` and
    ``{them}`` in ``what`` and ``after`` agreeing with ``count`` ("1 ... is ... it", "2 ... are ... them")."""
    many = count != 1
    words = {"s": "" if many else "s", "are": "are" if many else "is", "were": "were" if many else "was",
             "them": "them" if many else "it", "their": "their" if many else "its"}
    return (f"{count} existing output{'s count' if many else ' counts'} as done but {what.format(**words)} "
            f"({names}){after.format(**words)}")


def renamed_lines(inputs: Sequence[Path], names: Mapping[str, str], codec: Optional[str], kept: Mapping[str, str],
                  folders: Collection[str]) -> list[str]:
    """``X is written as Y (why)`` for each of a folder run's ``inputs`` not written under its own output name
    (``names``: the output names given, ``star_vsr.io.output_names``; ``kept``, ``folders``: as it took them)."""
    from ..io import output_name

    wanted = {path.name: output_name(path.name, codec, folder=path.is_dir()) for path in inputs}
    return [f"{path.name} is written as {names[path.name]} "
            f"({_renamed_because(path.name, wanted, names, kept, folders)})"
            for path in inputs if names[path.name] != wanted[path.name]]


def _renamed_because(name: str, wanted: Mapping[str, str], names: Mapping[str, str], kept: Mapping[str, str],
                     folders: Collection[str]) -> str:
    """Why input ``name`` of a folder run is not written under its own output name ``wanted[name]`` (``names``: the
    names given; ``kept``: those kept from earlier runs; ``folders``: the frame folders). It said "clip.mkv is
    another video's output" where none was."""
    own = wanted[name]
    owner = next((other for other, out in names.items() if out == own and other != name), None)
    if owner is not None:
        kind = "the frame folder" if owner in folders else "the video"
        return f"{own} is the output of {kind} {owner}" + (", from an earlier run" if kept.get(owner) == own else "")
    others = sorted(other for other, out in wanted.items() if out == own and other != name)
    if not others:  # the name an earlier run gave it while another input had own's (that one removed since)
        return "the name an earlier run gave its output"  # (it said "( would be written as x.mp4 too)")
    return f"{' and '.join(others)} would be written as {own} too"


def made_from_changed_inputs_line(names: list[str]) -> Optional[str]:
    """``done_but_line`` for the existing outputs ``names`` made from an earlier version of their input
    (``batch_record.made_from_changed_inputs``); None when there are none."""
    if not names:
        return None
    return done_but_line(len(names), "{were} made from an earlier version of {their} input (its content has changed "
                         "since)", listed(names, 5), "; delete {them} and run again to redo {them} (--overwrite redoes "
                         "every one)")


def made_from_other_inputs_line(outputs: Mapping[str, str], recorded: Mapping[str, str]) -> Optional[str]:
    """``done_but_line`` for the existing outputs (input name -> output name, those counted as done) that the record
    (output name -> input name, ``batch_record.recorded_inputs``) says another input made: a.avi's a.mkv, with a.avi
    removed since and another a.mkv added, counted as a.mkv's. None when there are none."""
    other = sorted(f"{out} of {recorded[out]}" for name, out in outputs.items()
                   if recorded.get(out) not in (None, name))
    if not other:
        return None
    return done_but_line(len(other), "{were} made from another input", listed(other, 5),
                         "; pass --overwrite to redo {them} from this one")


def earlier_names_line(names: Mapping[str, str], recorded: Mapping[str, str], output_dir: Path) -> Optional[str]:
    """A note naming the outputs that an earlier run made of this run's inputs under another name and that stay in
    ``output_dir`` beside this run's (``names``: input name -> this run's output name; ``recorded``: output name ->
    input name, ``batch_record.recorded_inputs``): a run with ``--codec ffv1`` after one with H.264 wrote a.mkv and
    left a.mp4 without a word, and ``star-vsr evaluate`` then refused the folder (two clips named a). None when there
    are none."""
    mine = set(names.values())
    left = sorted(f"{out} (of {source}, now written as {names[source]})" for out, source in recorded.items()
                  if source in names and out not in mine and (output_dir / out).exists())
    if not left:
        return None
    many = len(left) != 1
    return (f"{len(left)} output{'s' * many} of an earlier run here (another --codec) stay{'s' * (not many)} beside "
            f"this run's: {listed(left, 5)}; star-vsr evaluate pairs clips by name without the suffix and refuses a "
            f"folder with two of one name: delete the earlier {'ones' if many else 'one'} once this run is done")
