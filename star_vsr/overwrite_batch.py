"""The record that lets ``star-vsr upscale-batch --overwrite``, stopped and run again, go on where it stopped.

Under ``--overwrite`` every output exists from the start (the old ones are replaced one by one), so a stopped
batch cannot tell the outputs it redid from the old ones it had not reached. It keeps a ledger in the output
folder (``LEDGER_NAME``, one JSON object per line): first the settings the batch runs with, then the name of
each output as it is finished. The same command run again skips the outputs the ledger lists; other settings
(another model, scale, codec...) or ``--restart`` start a new ledger, so every video is redone. The ledger is
deleted when a batch runs to its end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

LEDGER_NAME = ".star-vsr-overwrite.jsonl"
"""File of the ledger in the output folder (hidden: it is not an output)."""


class OverwriteLedger:
    """The outputs an ``upscale-batch --overwrite`` batch of ``settings`` has finished in ``output_dir``."""

    def __init__(self, output_dir: Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(output_dir) / LEDGER_NAME
        self.settings = json.loads(json.dumps(dict(settings), default=str))  # as the file stores them

    def finished(self) -> tuple[set[str], str | None]:
        """Names of the outputs that a stopped batch of the same settings finished, and a note for the user
        when the folder holds the ledger of a batch that cannot be continued (other settings, damaged)."""
        if not self.path.is_file():
            return set(), None
        try:
            header, *lines = self.path.read_text(encoding="utf-8").splitlines()
            settings = json.loads(header)["settings"]
        except (OSError, ValueError, LookupError, TypeError):  # damaged
            return set(), (f"cannot read {self.path}, the record of a batch stopped under --overwrite; redoing "
                           f"every video")
        if settings != self.settings:
            changed = sorted(key for key in {*settings, *self.settings} if settings.get(key) != self.settings.get(key))
            return set(), (f"the batch stopped here under --overwrite ran with other settings ({', '.join(changed)}); "
                           f"redoing every video")
        return {name for name in map(_done, lines) if name}, None

    def start(self) -> None:
        """Begin a new record (replacing an old one) holding the settings."""
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"settings": self.settings}) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    def add(self, name: str) -> None:
        """Record that output ``name`` is finished (one appended line: processes of a batch may add at once)."""
        with open(self.path, "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps({"done": name}) + "\n")

    def remove(self) -> None:
        """The batch ran to its end: nothing left to go on with."""
        self.path.unlink(missing_ok=True)


def _done(line: str) -> str | None:
    """The output name a ledger line records; None for a line cut short (a crash while it was written)."""
    try:
        name = json.loads(line)["done"]
    except (ValueError, LookupError, TypeError):
        return None
    return name if isinstance(name, str) else None


def batch_settings(args: Any) -> dict[str, Any]:
    """What decides an ``upscale-batch`` run's outputs: its command-line options but the folders, the
    ``--overwrite`` / ``--restart`` controls and the device, with the model folder absolute."""
    ignored = {"input_dir", "output_dir", "overwrite", "restart", "device", "func", "command"}
    settings = {key: value for key, value in vars(args).items() if key not in ignored}
    if settings.get("model"):
        settings["model"] = str(Path(settings["model"]).resolve())
    return settings
