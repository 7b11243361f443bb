"""What the two training scripts share: YAML settings under the command line, and checkpoint folders.

``training/train_star.py`` and ``training/distill_student.py`` both read ``--config FILE.yaml`` as
defaults that command-line flags override, and both keep ``checkpoint-<step>`` folders in their
output folder (Accelerate states), resumable with ``--resume_from_checkpoint latest``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .errors import InputError
from .outputs import give_default_mode

CHECKPOINT_PREFIX = "checkpoint-"


class SettingsParser(argparse.ArgumentParser):
    """The training scripts' parser: an error is one line, without the usage block (dozens of lines
    of flags, above which ``accelerate launch`` then prints its own traceback, buried the message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
            parser.error(f"{path}: unknown settings {unknown}; --help lists the valid ones")
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
    """Delete the oldest checkpoints so that at most ``limit`` remain (after a new one was saved).

    Returns the deleted folders (none when ``limit`` is None).
    """
    if limit is None:
        return []
    folders = checkpoint_folders(output_dir)
    old = folders[:max(len(folders) - limit, 0)]
    for folder in old:
        shutil.rmtree(folder)
    return old


def save_checkpoint(accelerator: Any, output_dir: Path, step: int, limit: Optional[int]) -> Path:
    """``accelerator.save_state`` into ``checkpoint-<step>``, atomically; every process must call it.

    The state is written into a hidden ``.checkpoint-<step>.partial`` folder, renamed once complete, and
    only then are the oldest checkpoints pruned to ``limit``: a run killed while saving (Ctrl-C twice,
    out of memory, a full disk) leaves the previous checkpoints whole, and ``latest`` never finds a
    half-written one.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    temp = output_dir / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(temp, ignore_errors=True)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        give_default_mode(temp)
        # checkpoints after this step belong to a run that went on from an earlier one: abandoned, and
        # `latest` must not go back to them (nor pruning keep them over this one)
        later = [folder for folder in checkpoint_folders(output_dir) if checkpoint_step(folder) >= step]
        old = []
        for folder in later:  # out of the way first, deleted once the new one is in place
            aside = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(aside, ignore_errors=True)
            folder.rename(aside)
            old.append(aside)
        temp.rename(final)
        for aside in old:
            shutil.rmtree(aside, ignore_errors=True)
        prune_checkpoints(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


#: Files in an output folder that mark a training run that got somewhere (with its ``checkpoint-<step>``
#: folders); ``train_config.yaml`` alone is a run that failed before its first step, safe to start over.
RUN_FILES = ("model_index.json", "training_summary.json")


def check_output_dir(output_dir: Path, resume: Optional[str], overwrite: bool) -> None:
    """``InputError`` when ``output_dir`` holds a run and this one neither goes on from it
    (``--resume_from_checkpoint``) nor replaces it (``--overwrite_output_dir``): training over an old
    run mixed their checkpoints, and ``latest`` could later resume the old one. Also when ``latest`` is asked
    for in a folder that holds a trained model but no checkpoint (a finished run saves its model, not always a
    checkpoint): it would start over and replace that model."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    checkpoints = checkpoint_folders(output_dir)
    model = [n for n in RUN_FILES if (output_dir / n).exists()]
    found = [p.name for p in checkpoints] + model
    log = output_dir / "train_log.jsonl"
    if log.is_file() and log.stat().st_size > 0:
        found.append(log.name)
    if resume is not None:
        if resume == "latest" and model and not checkpoints and not overwrite:  # "starting a new run" replaced it
            raise InputError(f"{output_dir} holds a trained model ({', '.join(model)}) but no checkpoint to go on "
                             f"from (checkpoints are saved every --checkpointing_steps); choose another --output_dir, "
                             f"or pass --overwrite_output_dir to start over")
        return
    if found and not overwrite:
        raise InputError(f"{output_dir} holds a run ({', '.join(found[:4])}); go on with --resume_from_checkpoint "
                         f"latest, choose another --output_dir, or pass --overwrite_output_dir to start over")


def clear_old_run(output_dir: Path) -> None:
    """For ``--overwrite_output_dir`` (main process only): delete the old run's checkpoints and step log,
    which a new run would otherwise mix with its own; its other files are replaced as the run writes them."""
    for folder in checkpoint_folders(Path(output_dir)):
        shutil.rmtree(folder)
    (Path(output_dir) / "train_log.jsonl").unlink(missing_ok=True)


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


class StopRequest:
    """Ctrl-C or SIGTERM during training, turned into a clean stop at the end of an optimizer step.

    The first signal only sets `requested`; the loop calls `agreed` after every optimizer step (where
    model, optimizer and schedule are consistent) and, when it is True, saves a checkpoint and stops.
    A second signal stops at once (KeyboardInterrupt). Under several processes `agreed` is the
    maximum over them, so all stop at the same step (a save needs them all). Use as a context
    manager; outside the main thread (no signal handlers) it never stops anything.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and saving a checkpoint (press Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def agreed(self, accelerator: Any) -> bool:
        """Whether any process was asked to stop (a collective call: every process must make it)."""
        if accelerator.num_processes == 1:
            return self.requested
        import torch

        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def checkpoint_or_stop(self, accelerator: Any, output_dir: Path, step: int, max_steps: int, every: int,
                           limit: Optional[int], progress: Any) -> None:
        """After optimizer step ``step`` (every process): save ``checkpoint-<step>`` every ``every`` steps,
        and on a stop request (`agreed`) before the last step, which finishes as usual, save it, close the
        ``progress`` bar, say how to go on and exit with 130."""
        stopping = self.agreed(accelerator) and step < max_steps
        if step % every == 0 or stopping:
            save_checkpoint(accelerator, output_dir, step, limit)
        if stopping:
            progress.close()
            accelerator.print(stopped_message(output_dir, step))
            accelerator.end_training()
            sys.exit(130)


def stopped_message(output_dir: Path, step: int) -> str:
    """What a run stopped by `StopRequest` prints: where its state is and how to go on."""
    return (f"stopped at step {step}; saved {Path(output_dir) / f'{CHECKPOINT_PREFIX}{step}'}. Go on with the same "
            f"command plus --resume_from_checkpoint latest")


def check_run_settings(args: argparse.Namespace) -> None:
    """``InputError`` for settings both training scripts share that cannot work: the learning rate and
    warm-up, fp16 without a GPU, an output folder holding another run (``check_output_dir``), and a
    checkpoint to resume that is already at ``max_train_steps``."""
    import torch

    if not args.learning_rate > 0 or args.lr_warmup_steps < 0:
        raise InputError(f"need --learning_rate > 0 and --lr_warmup_steps >= 0, got {args.learning_rate} and "
                         f"{args.lr_warmup_steps}")
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    if args.mixed_precision == "fp16" and not has_gpu:
        raise InputError("--mixed_precision fp16 needs a GPU; on the CPU use bf16 or no")
    check_output_dir(args.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    resume = resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if resume is not None and checkpoint_step(resume) >= args.max_train_steps:
        raise InputError(f"{resume} is at step {checkpoint_step(resume)}, not before --max_train_steps "
                         f"{args.max_train_steps}: nothing to train (raise --max_train_steps to train on)")
