"""Which settings made each output of ``star-vsr upscale-batch``, so that a rerun with other ones says so.

``upscale-batch`` counts an output that exists as done: that is how a stopped batch goes on. Run again with
another ``--model`` or ``--upscale`` into the same folder, it said "3 of 3 videos already done; 0 to go" and
kept the old outputs without a word. Each finished output now adds a line to ``RECORD_NAME`` in the output
folder (one JSON object per line, appended: the processes of a batch add at once) with the batch's settings
(``overwrite_batch.batch_settings``); a rerun notes the existing outputs that other settings made. Outputs made
before the record existed, or by another program, have no line and get no note.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .errors import InputError, StarVSRError
from .json_files import loads_json

RECORD_NAME = ".star-vsr-upscale-batch.jsonl"
"""File of the record in the output folder (hidden: it is not an output)."""


def record_output(output_dir: Path, name: str, settings: Mapping[str, Any], source: Optional[str] = None,
                  signature: Optional[list[Any]] = None, record: str = RECORD_NAME) -> None:
    """Add that output ``name`` in ``output_dir`` was made with ``settings`` from the input named ``source``, whose
    ``input_signature`` was ``signature`` before it was read (one appended line of the file ``record``: ``degrade
    FOLDER`` keeps its own)."""
    line = json.dumps({"output": name, "settings": _as_stored(settings),
                       **({"input": source} if source is not None else {}),
                       **({"input_signature": signature} if signature is not None else {})})
    check_record(output_dir, record)  # (and no link followed: a link made meanwhile fails to open)
    descriptor = os.open(Path(output_dir) / record, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NO_FOLLOW, 0o666)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:  # one write: appends of processes do not mix
        file.write("\n" + line + "\n")  # the leading newline ends a line a crash cut short


#: ``os.O_NOFOLLOW`` where the system has it (not Windows).
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def check_record(output_dir: Path, record: str = RECORD_NAME) -> None:
    """``InputError`` when the record ``record`` in ``output_dir`` is a link: its lines were appended to the file
    it points to, a user's file among them (black-box hunt). A batch checks it before any work. (On Windows, where
    ``is_symlink`` misses junctions and there is no ``O_NOFOLLOW``, only symbolic links are found.)"""
    path = Path(output_dir) / record
    if path.is_symlink():
        raise InputError(f"{path} is a link (to {os.readlink(path)}); star-vsr keeps a record of its own there and "
                         f"would write through it: remove the link")


#: Bytes read at each end of an input file for its `input_signature`: its container's headers and index, which
#: another encode changes (a rerun reads them for every output it counts as done: 2 MiB each was 2 GB over 1000).
SIGNATURE_BYTES = 2 ** 16


def input_signature(source: Path) -> Optional[list[Any]]:
    """What tells a batch input's content from another's put in its place under its name, without modification
    times (a copy, a checkout or ``touch`` changes them, and every rerun then called its outputs stale): a file's
    size and a hash of its first and last 64 KiB; a frame folder's number of frame images and their total size. None
    when it cannot be read (removed meanwhile)."""
    from .io.folders import list_image_files

    try:
        if source.is_dir():
            files = list_image_files(source)
            return [len(files), sum(file.stat().st_size for file in files)]
        size = source.stat().st_size
        digest = hashlib.sha256()
        with open(source, "rb") as file:
            digest.update(file.read(SIGNATURE_BYTES))
            if size > SIGNATURE_BYTES:
                file.seek(max(SIGNATURE_BYTES, size - SIGNATURE_BYTES))
                digest.update(file.read(SIGNATURE_BYTES))
        return [size, digest.hexdigest()[:16]]
    except (OSError, StarVSRError):
        return None


def output_settings(settings: Mapping[str, Any], source: Path, output: Path,
                    dtype: Optional[str] = None) -> dict[str, Any]:
    """What shapes the output ``output`` of the input ``source`` among a batch's ``settings`` (``batch_settings``),
    as it takes effect: the codec and CRF a left-out ``--codec`` / ``--crf`` resolve to (typed out, the same
    encode is no other setting), ``dtype`` for ``--dtype`` where given (what ``auto`` resolves to on the batch's
    device: ``fp32`` typed out on a CPU that runs ``auto`` in float32 is no other setting), ``--fps`` only for a
    frame folder (a video keeps its own rate), and ``--deinterlace`` / ``--no-audio`` only for a video (frames
    have neither fields nor sound), ``--no-audio`` as left out for one without sound (where it changes nothing;
    as False, which records of earlier versions hold there); neither ``--fps`` nor ``--no-audio`` for PNG frames
    written (they store no rate, no sound)."""
    from .io.audio import is_silent_video
    from .io.writer import check_crf, writes_frames

    codec = settings.get("codec") or ("png" if writes_frames(Path(output), None) else "h264")
    effective = {**settings, "codec": codec, "crf": check_crf(codec, settings.get("crf"))}
    if dtype is not None:
        effective["dtype"] = dtype
    ignored = {"deinterlace", "no_audio"} if Path(source).is_dir() else {"fps"}
    if codec == "png":  # PNG frames store neither a frame rate nor sound
        ignored |= {"fps", "no_audio"}
    for name in ignored:
        effective.pop(name, None)
    if effective.get("no_audio") and is_silent_video(Path(source)):  # (a batch run again with --no-audio noted a
        effective["no_audio"] = False  # silent video's output as made "with other settings"; probed only then)
    return effective


def ledger_settings(settings: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """A batch's ``settings`` (``batch_settings``) as they take effect for all its outputs, for the ``--overwrite``
    ledger: ``--dtype`` as ``dtype`` (what ``auto`` resolves to), the codec and CRF a left-out ``--codec`` /
    ``--crf`` resolve to for video outputs, a diffusion run's overlaps as resolved. Typed out, a default was "other
    settings" to a stopped batch, which then redid every video (black-box hunt)."""
    from .io.writer import check_crf

    codec = settings.get("codec") or "h264"
    return _effective({**_as_stored(settings), "dtype": dtype, "codec": codec,
                       "crf": check_crf(codec, settings.get("crf"))})


def made_with_other_settings(output_dir: Path, current: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Among the outputs ``current`` names (output name -> the settings that would make it now,
    ``output_settings``), those the record says were last made with other settings: output name -> the flags
    that differed (``--model``, ``--upscale``). A damaged record line is passed over."""
    made: dict[str, dict[str, Any]] = {}
    for entry in _entries(Path(output_dir) / RECORD_NAME):
        if isinstance(entry.get("settings"), dict):
            made[entry["output"]] = entry["settings"]  # the last line of a name: how it was last made
    changed = {}
    for name, settings in current.items():
        now = _effective(_as_stored(settings))
        if name in made:
            made[name] = _effective(made[name])
        if name in made and made[name].get("dtype") == "auto" and "dtype" in now:
            made[name] = {**made[name], "dtype": now["dtype"]}  # a record from before dtypes were resolved: unknown
        differ = changed_settings(made[name], now) if name in made else []
        if differ:
            # a setting only one of the runs has (the diffusion options, which a student's run does not record) is
            # no flag the user changed: "--model" says it, where the note named eight flags nobody typed
            named = [key for key in differ if key in made[name] and key in now] or differ
            changed[name] = setting_names(named)
    return changed


def setting_names(keys: Iterable[str]) -> list[str]:
    """How messages name batch settings ``keys``: ``--model``, ``--upscale``, and "the input folder" for
    ``input_dir`` (upscale-batch takes it as an argument, not a flag: it was said as ``--input-dir``), sorted."""
    return sorted("the input folder" if key == "input_dir" else f"--{key.replace('_', '-')}" for key in keys)


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The settings whose values differ between a recorded run's ``saved`` ones and ``now``'s, sorted. One the record
    lacks counts as None: an option added since and left at its default (None; records from before
    ``--negative-prompt`` have none) is no change."""
    return sorted(key for key in {*saved, *now} if saved.get(key) != now.get(key))


def recorded_inputs(output_dir: Path, record: str = RECORD_NAME) -> dict[str, str]:
    """The input name each output in ``output_dir``'s record was last made from (output name -> input name), for the
    outputs recorded with one. Outputs are named from the inputs there are (``clip.mp4`` and a ``clip.mkv`` added
    later: ``clip_mp4.mkv``), so an input added to a batch folder took over an output another input had made, which
    then counted as done; the names recorded here stay theirs (``star_vsr.io.output_names``' ``kept``)."""
    return {out: entry["input"] for out, entry in _last_entries(output_dir, record).items()
            if isinstance(entry.get("input"), str)}


def made_from_changed_inputs(output_dir: Path, outputs: Mapping[Path, str], record: str = RECORD_NAME) -> list[str]:
    """Among ``outputs`` (input -> the name of its output there, counted as done), those the record says were last
    made from the same input name but another ``input_signature`` (the input replaced or changed since: a clip
    of ``degrade --overwrite`` with another preset kept its old upscaled output, scored without a word). Outputs
    recorded without one (by earlier versions) are not compared."""
    last = _last_entries(output_dir, record)
    changed = []
    for source, out in outputs.items():
        entry = last.get(out, {})
        if entry.get("input") == source.name and isinstance(entry.get("input_signature"), list):
            now = input_signature(source)
            if now is not None and now != entry["input_signature"]:
                changed.append(out)
    return sorted(changed)


def _last_entries(output_dir: Path, record: str) -> dict[str, dict[str, Any]]:
    """The last line of each output name in ``output_dir``'s ``record`` (how it was last made)."""
    return {entry["output"]: entry for entry in _entries(Path(output_dir) / record)}


def _entries(path: Path) -> list[dict[str, Any]]:
    """The record's lines as dicts with an ``"output"`` name (a damaged line is passed over)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):  # none yet, or unreadable
        return []
    entries = []
    for line in lines:
        try:
            entry = loads_json(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("output"), str):
            entries.append(entry)
    return entries


def _effective(settings: dict[str, Any]) -> dict[str, Any]:
    """A diffusion run's settings (they have ``chunk_frames``) as they take effect: the overlaps left out as the
    call resolves them (``--chunk-frames 4`` alone and with ``--chunk-overlap 2`` are one setting), without the
    student's ``--no-scene-cut-reset``, which a diffusion model ignores (both were "made with other settings")."""
    if "chunk_frames" not in settings:
        return settings
    from .pipelines.pipeline_star_vsr import resolve_overlaps

    settings = {key: value for key, value in settings.items() if key != "no_scene_cut_reset"}
    try:
        settings["chunk_overlap"], settings["tile_overlap"] = resolve_overlaps(
            settings["chunk_frames"], settings.get("chunk_overlap"), settings.get("tile_size"),
            settings.get("tile_overlap"))
    except TypeError:  # a record edited by hand: compared as it is
        pass
    return settings


def _as_stored(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as the record stores them (JSON: paths and fractions as strings)."""
    return json.loads(json.dumps(dict(settings), default=str))
