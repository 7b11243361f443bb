"""What the two training scripts share: YAML settings under the command line, and checkpoint folders.

``training/train_star.py`` and ``training/distill_student.py`` both read ``--config FILE.yaml`` as
defaults that command-line flags override, and both keep ``checkpoint-<step>`` folders in their
output folder (Accelerate states), resumable with ``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Optional, Sequence

import yaml

CHECKPOINT_PREFIX = "checkpoint-"


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` with the settings of ``--config`` (YAML mapping, keys = flag names) as defaults.

    A missing file, a file that is not a mapping and unknown keys are ``parser.error`` s (exit 2, one
    line naming the file), so a typo in a config cannot silently fall back to a default.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        path = Path(known.config)
        if not path.is_file():
            parser.error(f"config file {path} does not exist")
        try:
            settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            parser.error(f"{path} is not valid YAML: {str(error).splitlines()[0]}")
        if not isinstance(settings, dict):
            parser.error(f"{path} must hold a mapping of settings (name: value)")
        valid = {action.dest for action in parser._actions} - {"help", "config"}
        unknown = sorted(set(settings) - valid)
        if unknown:
            parser.error(f"{path}: unknown settings {unknown}; see --help for the valid ones")
        parser.set_defaults(**settings)
    return parser.parse_args(argv)


def checkpoint_step(folder: Path) -> int:
    """The step of a ``checkpoint-<step>`` folder."""
    return int(folder.name[len(CHECKPOINT_PREFIX):])


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """``checkpoint-<step>`` folders of a run, oldest first (none when ``output_dir`` does not exist)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    folders = [p for p in output_dir.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
               and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(folders, key=checkpoint_step)


def prune_checkpoints(output_dir: Path, limit: Optional[int]) -> list[Path]:
    """Delete the oldest checkpoints so that at most ``limit - 1`` remain before a new one is saved.

    Returns the deleted folders (none when ``limit`` is None).
    """
    if limit is None:
        return []
    folders = checkpoint_folders(output_dir)
    old = folders[:max(len(folders) - limit + 1, 0)]
    for folder in old:
        shutil.rmtree(folder)
    return old
