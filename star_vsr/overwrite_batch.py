"""The record that lets ``star-vsr upscale-batch --overwrite``, stopped and run again, go on where it stopped.

Under ``--overwrite`` every output exists from the start (the old ones are replaced one by one), so a stopped
batch cannot tell the outputs it redid from the old ones it had not reached. It keeps a ledger in the output
folder (``LEDGER_NAME``, one JSON object per line): first the settings the batch runs with (its input folder
among them), then each output as it is finished, with the size and time of the input it was made from. The same
command run again skips the outputs the ledger lists that are still there and whose inputs are unchanged;
other settings (another model, scale, codec...) or ``--restart`` start a new ledger, so every video is redone.
The ledger is deleted when a batch runs to its end. Two batches at once on one output folder (which share its
videos) keep one ledger between them; when either starts or ends a ledger, a stopped batch redoes more videos,
never fewer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from .batch_record import NO_FOLLOW, changed_settings, setting_names
from .outputs import write_text_atomic
from .json_files import loads_json

LEDGER_NAME = ".star-vsr-overwrite.jsonl"
"""File of the ledger in the output folder (hidden: it is not an output)."""


class OverwriteLedger:
    """The outputs an ``upscale-batch --overwrite`` batch of ``settings`` has finished in ``output_dir``."""

    def __init__(self, output_dir: Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(output_dir) / LEDGER_NAME
        self.settings = json.loads(json.dumps(dict(settings), default=str))  # as the file stores them

    def finished(self, inputs: Mapping[str, Path]) -> tuple[set[str], str | None]:
        """Names of the outputs that a stopped batch of the same settings finished, among ``inputs`` (output
        name -> input file) those still there and made from the same input file as now, and a note for the user
        when the folder holds the ledger of a batch that cannot be continued (other settings, damaged)."""
        if not self.path.is_file():
            return set(), None
        try:
            header, *lines = self.path.read_text(encoding="utf-8").splitlines()
            settings = loads_json(header)["settings"]
            if not isinstance(settings, dict):
                raise TypeError("settings edited into a non-object")
        except (OSError, ValueError, LookupError, TypeError):  # damaged
            return set(), (f"cannot read {self.path}, the record of a batch stopped under --overwrite; redoing "
                           f"every video")
        changed = setting_names(changed_settings(settings, self.settings))
        if changed:
            return set(), (f"the batch stopped here under --overwrite ran with other settings ({', '.join(changed)}); "
                           f"redoing every video")
        done = dict(entry for entry in map(_done, lines) if entry)
        return {name for name, source in inputs.items() if name in done and done[name] == _signature(source)
                and (self.path.parent / name).exists()}, None

    def start(self) -> None:
        """Begin a new record (replacing an old one) holding the settings."""
        write_text_atomic(self.path, json.dumps({"settings": self.settings}) + "\n")

    def add(self, name: str, source: Path) -> None:
        """Record that output ``name`` is finished, made from ``source`` (one appended line: processes of a batch
        may add at once). Nothing when the ledger is gone (another batch on the folder ended and removed it)."""
        try:
            # not O_CREAT: no ledger without settings; no link followed (into a file it points to)
            ledger = os.open(self.path, os.O_WRONLY | os.O_APPEND | NO_FOLLOW)
        except FileNotFoundError:
            return
        with os.fdopen(ledger, "w", encoding="utf-8") as file:  # one write: appends of processes do not mix
            # the leading newline ends a line a crash cut short, which would swallow this record otherwise
            file.write("\n" + json.dumps({"done": name, "input": _signature(source)}) + "\n")

    def remove(self) -> None:
        """The batch ran to its end: nothing left to go on with."""
        self.path.unlink(missing_ok=True)


def _signature(source: Path) -> list[Any]:
    """What tells an input from another one put in its place: its name, size and modification time (of a
    frame folder, its frames' total size and latest time: a frame replaced in place changes no folder time)."""
    from .fingerprints import input_fingerprint

    size, modified, _ = input_fingerprint(Path(source))
    return [Path(source).name, size, modified]


def _done(line: str) -> tuple[str, Any] | None:
    """(output name, input signature) of a ledger line; None for a line cut short (a crash while it was
    written)."""
    try:
        entry = loads_json(line)
        return (entry["done"], entry["input"]) if isinstance(entry["done"], str) else None
    except (ValueError, LookupError, TypeError):
        return None


def batch_settings(args: Any, ignored: Iterable[str] = ()) -> dict[str, Any]:
    """What decides an ``upscale-batch`` run's outputs: its command-line options but the output folder, the
    ``--overwrite`` / ``--restart`` controls, the device and ``ignored`` (options the model ignores), with the
    input and model folders absolute."""
    ignored = {"output_dir", "overwrite", "restart", "device", "func", "command", *ignored}
    settings = {key: value for key, value in vars(args).items() if key not in ignored}
    for key in ("input_dir", "model"):
        if settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    return settings
