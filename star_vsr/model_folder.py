"""Checks that a pipeline folder on disk holds what ``from_pretrained`` will read, so a missing or
half-copied download is reported with what to get and where, not as a loader's traceback."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import MissingWeightsError

#: File name endings of model weights (single files, shards and shard indexes) in a component folder.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def check_pipeline_folder(folder: Path, kind: str, help_text: str) -> None:
    """Raise ``MissingWeightsError`` (naming the missing part, then ``help_text``) unless ``folder``
    has a ``model_index.json`` and every component folder it lists that holds a model
    (``config.json``) also holds its weights. ``kind`` names the pipeline in the message."""
    index = folder / "model_index.json"
    if not folder.exists():
        raise MissingWeightsError(f"{folder} does not exist: no {kind} pipeline there.\n{help_text}")
    if not index.is_file():
        raise MissingWeightsError(f"{folder} has no model_index.json: it is not a {kind} pipeline folder.\n"
                                  f"{help_text}")
    components = [name for name, value in json.loads(index.read_text()).items()
                  if not name.startswith("_") and isinstance(value, list) and value[0] is not None]
    for name in components:
        part = folder / name
        if not part.is_dir():
            raise MissingWeightsError(f"the {kind} pipeline at {folder} lists {name!r}, but {part} is missing "
                                      f"(an incomplete copy?).\n{help_text}")
        if (part / "config.json").is_file() and not any(f.name.endswith(WEIGHT_SUFFIXES) for f in part.iterdir()):
            raise MissingWeightsError(f"{part} has a config.json but no weights (*.safetensors or *.bin; an "
                                      f"incomplete copy?).\n{help_text}")
