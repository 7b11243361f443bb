"""What the two training scripts share: YAML settings under the command line, and checkpoint folders.

``training/train_star.py`` and ``training/distill_student.py`` both read ``--config FILE.yaml`` as
defaults that command-line flags override, and both keep ``checkpoint-<step>`` folders in their
output folder (Accelerate states), resumable with ``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .errors import InputError

CHECKPOINT_PREFIX = "checkpoint-"


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` with the settings of ``--config`` (YAML mapping, keys = flag names) as defaults.

    A missing file, a file that is not a mapping, unknown keys and values that the flag would not
    accept (``max_train_steps: 1.5``, a scalar where the flag takes a list, a value outside its
    choices) are ``parser.error`` s (exit 2, one line naming the file and key), so a typo in a
    config cannot silently fall back to a default or reach the training loop.
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
        actions = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
        unknown = sorted(set(settings) - set(actions))
        if unknown:
            parser.error(f"{path}: unknown settings {unknown}; see --help for the valid ones")
        parser.set_defaults(**{key: _setting(parser, actions[key], value, path) for key, value in settings.items()})
    return parser.parse_args(argv)


def _setting(parser: argparse.ArgumentParser, action: argparse.Action, value: Any, path: Path) -> Any:
    """A YAML value as the flag would have parsed it (argparse converts only string defaults)."""
    where = f"{path}: {action.dest}"
    if value is None:
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            parser.error(f"{where} must be true or false, got {value!r}")
        return value
    takes_list = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if takes_list:
        if not isinstance(value, list) or (action.nargs == "+" and not value) \
                or (isinstance(action.nargs, int) and len(value) != action.nargs):
            count = action.nargs if isinstance(action.nargs, int) else "one or more"
            parser.error(f"{where} must be a list of {count} values, got {value!r}")
        items = [_converted(parser, action, item, where) for item in value]
    else:
        items = [_converted(parser, action, value, where)]
    if action.choices is not None:
        for item in items:
            if item not in action.choices:
                parser.error(f"{where} must be one of {', '.join(map(str, action.choices))}, got {item!r}")
    return items if takes_list else items[0]


def _converted(parser: argparse.ArgumentParser, action: argparse.Action, value: Any, where: str) -> Any:
    """One value through the flag's ``type``, as its command-line text (mappings and lists as JSON, which
    the flags that take structured values read, and plain types refuse)."""
    if value is None:
        return value
    if action.type is None:  # a plain string flag
        if isinstance(value, (dict, list)):
            parser.error(f"{where} must be a single value, got {value!r}")
        return value if isinstance(value, str) else str(value)
    if isinstance(value, bool) and action.type in (int, float):
        parser.error(f"{where} must be a number, got {value!r}")
    try:
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        return action.type(text)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        kind = getattr(action.type, "__name__", "a valid value")
        parser.error(f"{where} must be {kind}, got {value!r}")


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


def resume_checkpoint(output_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """The checkpoint ``--resume_from_checkpoint`` names, or None to start fresh.

    ``None`` starts fresh; ``"latest"`` is the newest checkpoint in ``output_dir`` (None when there
    is none yet, so a first run and its restarts share one command line); anything else must be a
    ``checkpoint-<step>`` folder (``InputError`` otherwise).
    """
    if resume is None:
        return None
    if resume == "latest":
        folders = checkpoint_folders(Path(output_dir))
        return folders[-1] if folders else None
    path = Path(resume)
    if path not in checkpoint_folders(path.parent):
        raise InputError(f"--resume_from_checkpoint {path} is not a {CHECKPOINT_PREFIX}<step> folder; give one, "
                         "or 'latest'")
    return path


def check_run_settings(args: argparse.Namespace) -> None:
    """``InputError`` for settings both training scripts share that cannot work: the learning rate and
    warm-up, fp16 without a GPU, and a checkpoint to resume that is already at ``max_train_steps``."""
    import torch

    if not args.learning_rate > 0 or args.lr_warmup_steps < 0:
        raise InputError(f"need --learning_rate > 0 and --lr_warmup_steps >= 0, got {args.learning_rate} and "
                         f"{args.lr_warmup_steps}")
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    if args.mixed_precision == "fp16" and not has_gpu:
        raise InputError("--mixed_precision fp16 needs a GPU; on the CPU use bf16 or no")
    resume = resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if resume is not None and checkpoint_step(resume) >= args.max_train_steps:
        raise InputError(f"{resume} is at step {checkpoint_step(resume)}, not before --max_train_steps "
                         f"{args.max_train_steps}: nothing to train (raise --max_train_steps to train on)")
