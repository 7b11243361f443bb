"""What the two training scripts share: YAML settings under the command line, checkpoint folders, the checks of
their settings (``check_number``, ``check_run_settings``) and stopping on a signal after a save (``StopRequest``).

``training/train_star.py`` and ``training/distill_student.py`` both read ``--config FILE.yaml`` as
defaults that command-line flags override, and both keep ``checkpoint-<step>`` folders in their
output folder (Accelerate states), resumable with ``--resume_from_checkpoint latest``. A run records its
settings in ``train_config.yaml`` when it starts and every resume in ``train_config_resumes.yaml``; a resume
whose settings would change what is trained is refused (``RESUMABLE_CHANGES`` lists the others). A run
that starts over in a folder (``--overwrite_output_dir``) first deletes what runs wrote there, and only that
(``clear_old_run``).
"""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Collection, Hashable, Iterable, Iterator, Mapping, Optional, Sequence

import yaml

from .errors import (DISK_FULL_ERRNOS, NO_PICKLE, InputError, MissingWeightsError, StarVSRError, first_line,
                     is_damaged_weights_error, is_failed_write, is_out_of_memory, load_failure, TrainingDivergedError,
                     why_missing, write_errno, write_failed, write_reason)
from .outputs import (FINAL_STEP_FILE, REPLACING_INDEX, TRAINING_SUMMARY_FILE, folder_lock, give_default_mode,
                      saved_index, write_text_atomic)
from .progress import warning_lines
from .units import count_of
from .json_files import loads_json

CHECKPOINT_PREFIX = "checkpoint-"
#: The settings a run started with, written into its output folder (and never rewritten by a resume).
CONFIG_FILE = "train_config.yaml"
#: Per-step log the teacher's training (training/train_star.py) writes next to its checkpoints.
TRAIN_LOG_FILE = "train_log.jsonl"
#: One YAML document per resume of the run: the step and checkpoint it went on from, the settings it went on
#: with, and those that differ from the settings that trained the checkpoint.
RESUMES_FILE = "train_config_resumes.yaml"

#: Settings a resumed run may change (with a logged warning): they say how often to save, validate and log,
#: what validation measures, and how memory is spent, not what is trained (validation runs on a forked RNG;
#: gradient checkpointing recomputes the same values). ``max_train_steps`` is one too, which users raise to
#: train longer, but only under a schedule that does not depend on it (``FIXED_SCHEDULES``): a decaying one
#: would continue with another learning rate. Any other changed setting (model, scale, data, degradation,
#: losses and their weights, learning rate and schedule, batch size, seed, precision...) stops the resumed
#: run unless ``--allow_changed_settings``.
RESUMABLE_CHANGES = frozenset({
    "max_train_steps",
    "checkpointing_steps", "checkpoints_total_limit",
    "validation_steps", "validation_video", "validation_prompt", "validation_num_inference_steps",
    "validation_guidance_scale", "validation_noise_level", "num_validation_clips", "validation_frames",
    "validation_size",
    "report_to", "logging_dir", "tracker_project_name",
    "dataloader_num_workers", "gradient_checkpointing", "vae_gradient_checkpointing",
    "save_dtype",  # the precision the final model is saved in, once, at the end
})
#: Learning-rate schedules (diffusers.optimization) that do not depend on ``max_train_steps``.
FIXED_SCHEDULES = ("constant", "constant_with_warmup", "piecewise_constant")
#: Settings that say how to start this process, not what the run is: recorded, never compared.
RUN_CONTROL_SETTINGS = frozenset({"config", "output_dir", "resume_from_checkpoint", "overwrite_output_dir",
                                  "allow_changed_settings"})

logger = logging.getLogger(__name__)

#: The most characters of PyTorch's error a checkpoint that does not fit is named with (`load_training_checkpoint`).
MAX_DETAIL_CHARS = 300

#: A training script's map from its settings (a dict as ``changed_settings`` compares them) to what of them shapes
#: its checkpoints (setting name -> a value; None where it shapes nothing): ``check_resumed_settings``.
ShapeOf = Callable[[Mapping[str, Any]], Mapping[str, Any]]


#: Path settings of both training scripts that are not recorded with the run's settings (an empty one is refused
#: all the same: ``--resume_from_checkpoint ""`` was read as ".").
UNRECORDED_PATH_SETTINGS = ("resume_from_checkpoint", "logging_dir")


#: The most optimizer steps a run takes (``--max_train_steps``): years of training at a step a second. A number
#: past sys.maxsize crashed ``distill_student.py``'s progress bar with a traceback, after its folder was made, and
#: ``train_star.py`` trained without end, a checkpoint after another (black-box hunt).
MAX_TRAIN_STEPS = 10**9


def train_steps(text: str) -> int:
    """``--max_train_steps``: a whole number of optimizer steps, 1 to `MAX_TRAIN_STEPS`."""
    try:
        steps = int(text)
    except ValueError:
        steps = None
    if steps is None or not 1 <= steps <= MAX_TRAIN_STEPS:
        raise argparse.ArgumentTypeError(f"must be a whole number of steps from 1 to {MAX_TRAIN_STEPS:,}, got {text}")
    return steps


def optional_value(kind: Callable[[str], Any], empty_is_none: bool = True) -> Callable[[str], Any]:
    """An argparse type that also accepts ``none`` / ``null`` (-> None), and an empty value unless
    ``empty_is_none`` is False: for paths, where an unset shell variable (``--validation_video "$VIDEO"``)
    silently turned validation off, the empty path is refused instead (``parse_with_config``). ``none`` is how a
    command line clears a setting its ``--config`` file gives."""
    nones = ("none", "null", "") if empty_is_none else ("none", "null")

    def parse(value: str) -> Any:
        return None if value.strip().lower() in nones else kind(value)

    parse.__name__ = getattr(kind, "__name__", "value")
    parse.takes_text = kind is str  # type: ignore[attr-defined]  # (``_converted``: YAML's numbers are no text)
    parse.accepts_none = True  # type: ignore[attr-defined]  (``parse_with_config`` lets ``null`` through)
    return parse


#: A path setting that may be none (``none`` / ``null``), never empty.
path_or_none = optional_value(str, empty_is_none=False)


def bool_value(value: str) -> bool:
    """An argparse type for on / off settings: ``true`` / ``false``, ``1`` / ``0``, ``yes`` / ``no``, ``on`` /
    ``off``. Flags that take it with ``nargs="?", const=True`` are on when given alone (``--overwrite_output_dir``)
    and can still be turned off from the command line when a config file turns them on."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


bool_value.__name__ = "true or false"


def launcher_precision(mixed_precision: Optional[str]) -> str:
    """``--mixed_precision``, or when not given the launcher's (``accelerate launch --mixed_precision`` or
    ``accelerate config``, which reach the script as ``ACCELERATE_MIXED_PRECISION``), else ``no``: the precision the
    run trains in, recorded and compared on resume as such (a launcher's bf16 was recorded as null). A launcher's
    fp16 / bf16 that a given ``--mixed_precision`` (a ``--config`` key too) overrides gets a note: it was dropped
    without a word (black-box hunt: ``accelerate launch --mixed_precision fp16`` with the tiny config's ``no``)."""
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if mixed_precision is None:
        return launcher
    if launcher != "no" and launcher != mixed_precision and is_first_process():
        print(f"note: --mixed_precision {mixed_precision} (given to the script or in its --config) overrides the "
              f"launcher's {launcher}; pass --mixed_precision none to train in the launcher's", file=sys.stderr)
    return mixed_precision


class SettingsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` adds a flag's ``(default: ...)`` only where its own help does not already say the default and
    the default is a value: not ``(default: None)`` after "default: the launcher's", not ``(default: False)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text or any(action.default is hidden for hidden in (None, False, argparse.SUPPRESS)):
            return help_text
        return super()._get_help_string(action) or help_text


class SettingsParser(argparse.ArgumentParser):
    """The training scripts' parser: an error is one line, without the usage block (dozens of lines
    of flags, above which ``accelerate launch`` then prints its own traceback, buried the message).

    ``path_settings`` names the settings that are paths, which the run records (and compares) absolute;
    ``pair_settings`` those that are an int or a pair ([height, width], [min, max]), which it records as a pair
    (so a resumed run given ``32`` where it started with ``[32, 32]`` does not count as changed);
    ``content_settings`` maps paths that a resume compares by what they hold to the record of it beside the
    checkpoint (``check_same_data``), where the run wrote one: a copy of the teacher cache a run started on was
    refused as "other settings" (black-box hunt).
    """

    def __init__(self, *args: Any, path_settings: Sequence[str] = (), pair_settings: Sequence[str] = (),
                 content_settings: Optional[Mapping[str, str]] = None, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=SettingsHelpFormatter, **kwargs)
        self.path_settings = tuple(path_settings)
        self.pair_settings = tuple(pair_settings)
        self.content_settings = dict(content_settings or {})

    def error(self, message: str) -> None:  # type: ignore[override]
        # under accelerate launch every process parses the same command line and files: said by the first only
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n" if is_first_process() else None)


#: How long a process of a training run waits for the others in a collective (the gradient all-reduce, a barrier)
#: before the run is ended. The others wait there while the main process validates or saves the final model:
#: minutes to hours for a large model on a long clip, where torch's default through Accelerate (10 minutes under
#: NCCL, 30 under gloo) ended the run. A process that truly hangs is still found, later. (upscale-batch's
#: ``BARRIER_TIMEOUT`` is longer: its processes wait there for each other's whole videos.)
COLLECTIVE_TIMEOUT = timedelta(hours=6)


def process_group_kwargs() -> Any:
    """Accelerate's ``InitProcessGroupKwargs`` with `COLLECTIVE_TIMEOUT`, for ``Accelerator(kwargs_handlers=)``."""
    from accelerate.utils import InitProcessGroupKwargs

    return InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)


def process_prefix() -> str:
    """``[process i] `` under several processes (each one says what stopped it), else nothing."""
    return f"[process {os.environ.get('RANK', '0')}] " if launched_processes() > 1 else ""


def script_error(prog: str, error: BaseException) -> str:
    """The line a training script ``prog`` exits with on ``error`` (a ``StarVSRError`` of its run): ``prog: error:
    message``, as its argument errors read, with ``[process i]`` first under several processes (each process stops
    on its own error and says so: one that only a single process hits must not go unsaid). An error a DataLoader
    worker raised comes back with the worker's traceback in its message ("Caught InputError in DataLoader worker
    process 0. Original Traceback ..."): its own message is said (the shipped configs load with a worker: review)."""
    message = str(error)
    if message.startswith("Caught ") and "\nOriginal Traceback" in message:
        last = message.rstrip().splitlines()[-1]  # "star_vsr.errors.InputError: the message"
        message = last.split(": ", 1)[1] if ": " in last else last
    return f"{process_prefix()}{prog}: error: {message}"


def script_interrupted(prog: str) -> str:
    """The line a training script ``prog`` says when Ctrl-C stops it outside `StopRequest`'s clean stop after a
    step: while it sets up, or a second Ctrl-C (its exit status is 130). Checkpoints are written whole before they
    replace anything, so those saved before are usable."""
    return (f"{process_prefix()}{prog}: interrupted; checkpoints saved before, if any, are whole "
            f"(--resume_from_checkpoint latest goes on from the newest)")


#: What gloo (PyTorch's CPU process group; its messages name it) says in the collective a process was waiting in when a
#: peer process of the run ended (its own error said by that process).
PEER_GONE = ("Connection closed by peer", "Connection reset by peer")


def run_script(prog: str, run: Callable[[], Any]) -> None:
    """A training script's ``__main__``: ``run()``, and its end as one line: a ``StarVSRError`` as `script_error`
    (exit status 2, as argparse's errors and ``star-vsr``'s; it was 1, so the two scripts' setting errors exited
    differently: one script raised them, the other passed them to argparse; 1 for a run that diverged and for a full
    disk, also where a library's write meets it, said as ``star-vsr`` says it), Ctrl-C or SIGTERM outside
    `StopRequest`'s clean stop (while it sets up or saves its model, or a second one) as `script_interrupted` (130 /
    143). Both are a KeyboardInterrupt from here on, unless ignored at the start (a shell's background job); the
    script's own first lines turn Ctrl-C into a quiet exit while its libraries load."""
    from .errors import StarVSRError, exit_status, os_error_line
    from .interrupts import interrupt_requested, request_interrupt

    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM as Ctrl-C (it ended a run setting up or saving its model
        if signal.getsignal(sig) is not signal.SIG_IGN:  # with no word; `accelerate launch` passes Ctrl-C on as it)
            signal.signal(sig, request_interrupt)
    # warnings as one line, as ``star-vsr`` shows them, above the progress bar: a skipped sample was Python's
    # "/.../torch/utils/data/_utils/fetch.py:52: BadSampleWarning: ..." and that file's source line
    show_warning = warnings.showwarning
    warnings.showwarning = warning_lines(f"{process_prefix()}{prog}")  # (and `data_worker_init` in the workers)
    try:
        run()
    except StarVSRError as error:
        print(script_error(prog, error), file=sys.stderr)
        sys.exit(exit_status(error))  # 1 for a full disk or a run that diverged
    except Exception as error:
        if interrupt_requested():  # an interrupt a library wrapped in its own error (diffusers' lazy imports do)
            _stop_interrupted(prog)
        if launched_processes() > 1 and "gloo" in str(error) and any(words in str(error) for words in PEER_GONE):
            # (gloo's 30-line traceback under the stopped process's one line: black-box hunt)
            print(script_error(prog, "another process of this run stopped (its error is above), and this one "
                                     "with it"), file=sys.stderr)
            sys.exit(1)
        if not (is_failed_write(error) and write_errno(error) in DISK_FULL_ERRNOS):
            raise
        # a full disk under a library's write: one line, as `star-vsr` says it
        again = "run it again with --resume_from_checkpoint latest"  # (the same command is refused: a run is there)
        line = os_error_line(error, again) if isinstance(error, OSError) else f"a write failed: {write_reason(error)}"
        print(script_error(prog, line), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _stop_interrupted(prog)
    finally:
        warnings.showwarning = show_warning
        _end_data_workers()


def _end_data_workers() -> None:
    """End the DataLoader workers a run leaves (its last iterator, held by an error's traceback, never shut them
    down): Python's exit sends each daemon child SIGTERM and waits for it, and `ignore_stop_signals` makes the
    workers ignore SIGTERM, so a run whose worker raised (a damaged frame) printed its error and then waited forever
    (black-box hunt). Killed: the run is over, and nothing of theirs is kept."""
    import multiprocessing

    children = [child for child in multiprocessing.active_children() if child.daemon]
    if not children:
        return
    if hasattr(signal, "SIGCHLD"):  # torch's handler raises "DataLoader worker (pid N) is killed by signal"
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout=10)


def _stop_interrupted(prog: str) -> None:
    """`run_script`'s end on Ctrl-C or SIGTERM: one line, exit status 130 / 143."""
    from .interrupts import interrupted_exit_status

    for sig in (signal.SIGINT, signal.SIGTERM):  # stopping: the launcher's echo of the same Ctrl-C is no second
        signal.signal(sig, signal.SIG_IGN)  # traceback
    print(script_interrupted(prog), file=sys.stderr)
    sys.exit(interrupted_exit_status())  # 130 for Ctrl-C, 143 for SIGTERM


def add_checkpoint_arguments(group: Any, default_output_dir: str, run_files: str) -> None:
    """The flags both training scripts share, on an ``argparse`` argument ``group``: where the run goes
    (``--output_dir``, default ``default_output_dir``), its checkpoints, resuming, and starting over (deleting
    ``run_files``, the script's own list of what runs write, named in the help)."""
    group.add_argument("--output_dir", default=default_output_dir, help="checkpoints, logs and the final model")
    group.add_argument("--checkpointing_steps", type=optional_value(int), default=500,
                       help="save a checkpoint every N steps (none: only when the run is stopped, Ctrl-C)")
    group.add_argument("--checkpoints_total_limit", type=optional_value(int), default=None,
                       help="keep at most N checkpoints (none: all)")
    group.add_argument("--resume_from_checkpoint", type=path_or_none, default=None,
                       help='a checkpoint folder or "latest" (the newest in output_dir); settings that change what is '
                            "trained must be those that trained it (star_vsr.training_run.RESUMABLE_CHANGES lists the "
                            "others); every resume is recorded in train_config_resumes.yaml")
    group.add_argument("--allow_changed_settings", type=bool_value, nargs="?", const=True, default=False,
                       metavar="BOOL",
                       help="resume even though settings that change what is trained differ from the checkpoint's")
    group.add_argument("--overwrite_output_dir", type=bool_value, nargs="?", const=True, default=False, metavar="BOOL",
                       help=f"start over in an output_dir that holds a run: what runs write there is deleted first "
                            f"({run_files}); other files stay")


class _NumberInAnotherBase(yaml.constructor.ConstructorError):
    """A YAML number written in a base nobody meant (``_UniqueKeyLoader.construct_yaml_number``): valid YAML,
    refused."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in a mapping is an error (PyYAML keeps the last one: a
    setting edited in one place was silently overridden by its copy further down)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults, whose keys this mapping may override
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(None, None, "a list or mapping cannot be a setting's name",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_number(self, node: yaml.ScalarNode) -> Any:
        """A YAML int or float, except those YAML 1.1 (PyYAML's) reads in a base nobody meant: ``010`` is the octal
        number 8 and ``1:30`` the base-60 number 90, which ``max_train_steps: 010`` trained for without a word
        (black-box hunt); they are an error at their line. ``0x10`` and ``1_000`` read as written (``1e-4``, which
        YAML 1.1 reads as text, reaches a number flag as its text)."""
        text = self.construct_scalar(node)
        value = (yaml.SafeLoader.construct_yaml_int if node.tag.endswith(":int") else
                 yaml.SafeLoader.construct_yaml_float)(self, node)
        digits = text.replace("_", "").lstrip("+-")
        octal = (node.tag.endswith(":int") and len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbB"
                 and int(digits, 10) != abs(value))  # (007 and 00 mean what they say)
        if octal or ":" in digits:
            raise _NumberInAnotherBase(
                None, None, f"YAML reads {text} as the {'octal' if octal else 'base-60'} number {value}; write the "
                            f"number in decimal, or put text in quotes", node.start_mark)
        return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_number)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _UniqueKeyLoader.construct_yaml_number)


def yaml_argument(text: str) -> Any:
    """A command-line value written in YAML (``[720, 1280]``), read as a config's values are (``010`` refused); text
    that is no YAML is an ``argparse.ArgumentTypeError`` (``--crop_size '[1,'`` was a traceback)."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        what = "" if isinstance(error, _NumberInAnotherBase) else " is not a YAML value:"
        raise argparse.ArgumentTypeError(f"{text!r}{what} {problem}") from None


#: The ``diffusers.optimization.get_scheduler`` schedules the training scripts offer: all but ``piecewise_constant``,
#: whose step rules no flag sets (it failed with a traceback at the start of the run).
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")


def add_optimizer_arguments(group: Any, lr_scheduler: str, lr_warmup_steps: int, adam_beta2: float,
                            adam_weight_decay: float) -> None:
    """The learning-rate schedule, AdamW, gradient-clipping and precision flags both training scripts share, on an
    ``argparse`` argument ``group``, with each script's own defaults for the schedule, its warm-up,
    ``--adam_beta2`` and ``--adam_weight_decay``."""
    group.add_argument("--lr_scheduler", default=lr_scheduler, choices=LR_SCHEDULERS,
                       help="diffusers.optimization schedule (constant has no warm-up: constant_with_warmup has)")
    group.add_argument("--lr_warmup_steps", type=int, default=lr_warmup_steps, help="warm-up steps of the schedule")
    group.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW beta1, in [0, 1)")
    group.add_argument("--adam_beta2", type=float, default=adam_beta2, help="AdamW beta2, in [0, 1)")
    group.add_argument("--adam_weight_decay", type=float, default=adam_weight_decay, help="AdamW weight decay")
    group.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon")
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0: off)")
    group.add_argument("--mixed_precision", type=optional_value(str), choices=(None, "no", "fp16", "bf16"),
                       default=None, metavar="{no,fp16,bf16}",
                       help="training precision (default: the launcher's, accelerate launch --mixed_precision or "
                            "accelerate config, else no)")


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` with the settings of ``--config`` (YAML mapping, keys = flag names) as defaults.

    A missing file, a file that is not a mapping, a key given twice, unknown keys and values that the flag would not
    accept (``max_train_steps: 1.5``, a scalar where the flag takes a list, a value outside its
    choices) are ``parser.error`` s (exit 2, one line naming the file and key), so a typo in a
    config cannot silently fall back to a default or reach the training loop.
    """
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--config", action="append", default=None)
    pre.add_argument("-h", "--help", action="store_true")
    try:
        known = pre.parse_known_args(argv)[0]
        configs = [None] if known.help else known.config or [None]  # (--help printed a broken config's error)
    except argparse.ArgumentError:  # ``--config`` without a file: the script's own parser says so, below
        configs = [None]
    for given in configs if len(configs) > 1 else ():  # (an unset shell variable: said as such)
        _checked_path(parser, "config", given)
    if len(configs) > 1:  # (the last one was used, the others dropped without a word)
        parser.error(f"--config is given {len(configs)} times ({', '.join(configs)}); give one config file (flags "
                     f"override its settings)")
    if configs[0] is not None:
        parser.set_defaults(**_read_config(parser, configs[0]))
    args = parser.parse_args(argv)
    for action in parser._actions:  # ``--trainable none``: a list setting cleared from the command line
        if action.nargs in ("+", "*") and isinstance(getattr(args, action.dest, None), list) \
                and None in getattr(args, action.dest):
            if getattr(args, action.dest) != [None]:
                parser.error(f"--{action.dest} takes none alone, to clear it, or values")
            setattr(args, action.dest, None)
    for name in (*getattr(parser, "path_settings", ()), *UNRECORDED_PATH_SETTINGS):  # ~ expanded too: a config's
        value = getattr(args, name, None)  # value, --output_dir=~/run (no shell expands them): saves went to ~/run
        if isinstance(value, str):  # and ./~/run both
            setattr(args, name, _checked_path(parser, name, value))
    return args


def _read_config(parser: argparse.ArgumentParser, config: str) -> dict[str, Any]:
    """The settings of the YAML file ``config`` as ``parser``'s defaults (each value as its flag takes it); a file
    that is missing, no YAML, no mapping, or holds unknown settings is a ``parser.error``."""
    path = Path(_checked_path(parser, "config", config))
    if path.is_dir():
        parser.error(f"config file {path} is a folder; name a YAML file")
    if not path.is_file():  # (a pipe, <(...), is no link to nothing)
        parser.error(f"config file {path} " + (why_missing(path) if not path.exists() else
                                               "is not a regular file; save the settings as a YAML file"))
    try:
        settings = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as error:  # where: PyYAML's message puts it on later lines
        mark = error.problem_mark or error.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        valid = isinstance(error, _NumberInAnotherBase)  # (valid YAML, but not what the user meant)
        parser.error(f"{path}{where if valid else ' is not valid YAML' + where}: {error.problem or error.context}")
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        parser.error(f"{path} is not valid YAML: {str(error).splitlines()[0]}")
    except RecursionError:  # (PyYAML composes nested collections recursively: a crafted file, a traceback)
        parser.error(f"{path} is not a settings file: its collections are nested too deep (hundreds of levels)")
    if not isinstance(settings, dict):
        parser.error(f"{path} must hold a mapping of settings (name: value)")
    started = sorted(RUN_CONTROL_SETTINGS - {"output_dir"})  # how a run was started (output_dir: where it runs)
    if RUN_CONTROL_SETTINGS - {"allow_changed_settings"} <= set(settings):  # a run's own record (it records every
        # setting): its recipe, not how that run was started (refused as "unknown settings ['config']", the file it
        # read; a recorded overwrite_output_dir would then have replaced the run that wrote it; black-box hunt)
        left_out = [f"--{name} {str(settings[name]).lower() if isinstance(settings[name], bool) else settings[name]}"
                    for name in started if name != "config" and settings.get(name) not in (None, False)]
        for name in started:
            settings.pop(name, None)
        if left_out and is_first_process():
            one = len(left_out) == 1
            print(f"note: {path} is a run's record; its {', '.join(left_out)} {'is' if one else 'are'} left out "
                  f"(give {'it' if one else 'them'} on the command line)", file=sys.stderr)
    elif "config" in settings:
        parser.error(f"{path}: config: {settings['config']} names another config file; a config cannot include "
                     f"one: copy its settings into this file")
    actions = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
    unknown = sorted(map(str, set(settings) - set(actions)))  # (a key may be a number: ``1: 2``)
    if unknown:
        near = [close[0] if len(unknown) == 1 else f"{name} -> {close[0]}" for name in unknown
                if (close := difflib.get_close_matches(name, actions, 1))]
        meant = f" (did you mean {', '.join(near)}?)" if near else ""  # (a misspelt key: black-box hunt)
        parser.error(f"{path}: unknown settings {unknown}{meant}")  # the parser adds "(see --help)"
    return {key: _setting(parser, actions[key], value, path) for key, value in settings.items()}


def _checked_path(parser: argparse.ArgumentParser, name: str, value: str) -> str:
    """Path setting ``value`` as star-vsr's path options take it (``path_argument``): a leading ``~`` expanded, and
    an empty one (``--output_dir ""``, ``--output_dir "$OUT"`` with ``OUT`` unset, ``output_dir: ''``) an error:
    ``Path("")`` is the current folder, so the run would have written its checkpoints there."""
    from .cli.arguments import path_argument

    try:
        return path_argument(value)
    except argparse.ArgumentTypeError as error:
        parser.error(f"--{name} is {error}")
        raise  # (parser.error exits)


def _setting(parser: argparse.ArgumentParser, action: argparse.Action, value: Any, path: Path) -> Any:
    """A YAML value as the flag would have parsed it (argparse converts only string defaults)."""
    where = f"{path}: {action.dest}"
    if value is None:
        if action.default is not None and not getattr(action.type, "accepts_none", False):
            parser.error(f"{where} needs a value (null or nothing after the colon is not one here)")
        return None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            parser.error(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) and action.choices is not None and ("yes" if value else "no") in action.choices:
        return "yes" if value else "no"  # YAML 1.1 reads an unquoted no / off as false: ``mixed_precision: no``
    takes_list = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if takes_list:
        if action.nargs in ("+", "*") and not isinstance(value, (list, dict)):  # one value, as the flag takes it
            value = [value]  # (``trainable: upsamplers.4`` was refused where ``--trainable upsamplers.4`` is not)
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
    """One value through the flag's ``type``, as its command-line text: mappings and lists as JSON for the flags that
    take structured values (type ``json.loads``, or one marked ``takes_json``), refused for the others; a whole float
    (``4.0``) that the type refuses as text is tried as the int it is, for a flag that gives an int."""
    if value is None:
        return value
    takes_json = action.type is json.loads or getattr(action.type, "takes_json", False)
    if isinstance(value, (dict, list)) and not takes_json:  # (``default_caption: [a, b]`` trained with the caption
        parser.error(f"{where} must be a single value, got {value!r}")  # '["a", "b"]', a path flag took one too)
    takes_text = action.type in (None, str) or getattr(action.type, "takes_text", False)
    if takes_text and not isinstance(value, str) and action.choices is None:  # (``default_caption: no`` trained with
        # the caption "False", ``logging_dir: 2024_12`` logged to 202412)
        parser.error(f"{where} takes text, but YAML read the unquoted value as {type(value).__name__} {value!r} (it "
                     f"reads no, on or 1_000 so): put the text in quotes")
    if action.type is None:  # a plain string flag
        return value
    if isinstance(value, bool) and action.type in (int, float):
        parser.error(f"{where} must be a number, got {value!r}")
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if isinstance(value, float) and value.is_integer() and not takes_json:  # ``max_train_steps: 1000.0`` was refused
        # as "must be a whole number ..., got 1000.0" (black-box hunt): a whole float is an int flag's whole number
        # (an int flag's only: a true-or-false flag took 1.0 as "1", true; review)
        try:
            return action.type(text)
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            try:
                whole = action.type(str(int(value)))
            except (argparse.ArgumentTypeError, TypeError, ValueError):
                whole = None  # refused below, in the words of the value as given
            if type(whole) is int:
                return whole
    try:
        return action.type(text)
    except argparse.ArgumentTypeError as error:  # the type's own words ("must be ..., got ...")
        parser.error(f"{where} {error}")
    except (TypeError, ValueError):
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
        _remove_checkpoint(folder)
    return old


def _remove_checkpoint(folder: Path, ignore_errors: bool = False) -> None:
    """Delete a checkpoint folder; of a link to one (another run's, linked in), the link alone (``rmtree`` refused
    a link with an OSError, or left it where errors were ignored)."""
    if folder.is_symlink():
        folder.unlink(missing_ok=True)
    else:
        shutil.rmtree(folder, ignore_errors=ignore_errors)


def _record_checkpoint_settings(temp: Path, output_dir: Path, processes: int) -> None:
    """Into the checkpoint being saved (``temp``): the settings of the run that saved it (``CONFIG_FILE``), when
    the run recorded them, and how many processes saved it (``PROCESSES_FILE``)."""
    try:
        settings = current_settings(output_dir)
    except InputError:  # a damaged record must not cost the checkpoint (nor, waiting, the other processes)
        settings = None
    if settings is not None:  # what trained this state, whichever run folder it is later resumed from
        _write_settings(temp / CONFIG_FILE, settings)
    # how many processes saved it: the random_states_<i>.pkl a resume needs (a lost last one is not a gap)
    (temp / PROCESSES_FILE).write_text(f"{processes}\n", encoding="utf-8")
    give_default_mode(temp)


def save_checkpoint(accelerator: Any, output_dir: Path, step: int, limit: Optional[int]) -> Path:
    """``accelerator.save_state`` into ``checkpoint-<step>``, atomically; every process must call it. The
    checkpoint also holds the settings of the run that saved it (``CONFIG_FILE``), when the run recorded them.

    The state is written into a hidden ``.checkpoint-<step>.partial`` folder, renamed once complete, and
    only then are the oldest checkpoints pruned to ``limit``: a run killed while saving (Ctrl-C twice,
    out of memory, a full disk) leaves the previous checkpoints whole, and ``latest`` never finds a
    half-written one.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    temp = output_dir / f".{final.name}.partial"
    if accelerator.is_main_process:  # left by a run killed while saving, at this step or another one
        for suffix in (".partial", ".old"):
            for stale in output_dir.glob(f".{CHECKPOINT_PREFIX}*{suffix}"):
                _remove_checkpoint(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(temp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _record_checkpoint_settings(temp, output_dir, accelerator.num_processes)
    except BaseException as error:  # a full disk: one line, not safetensors' or torch.save's traceback
        if accelerator.is_main_process:  # (under several processes the launcher stops the others)
            _remove_checkpoint(temp, ignore_errors=True)
        if not is_failed_write(error):
            raise
        go_on = ": free some space, then --resume_from_checkpoint latest" * (write_errno(error) in DISK_FULL_ERRNOS)
        raise write_failed(f"cannot save {final.name} in {output_dir} ({write_reason(error)}); checkpoints saved "
                           f"before, if any, are whole{go_on}", error) from None
    if accelerator.is_main_process:
        # checkpoints after this step belong to a run that went on from an earlier one: abandoned, and
        # `latest` must not go back to them (nor pruning keep them over this one)
        later = [folder for folder in checkpoint_folders(output_dir) if checkpoint_step(folder) >= step]
        old = []
        for folder in later:  # out of the way first, deleted once the new one is in place
            aside = folder.with_name(f".{folder.name}.old")
            _remove_checkpoint(aside, ignore_errors=True)
            folder.rename(aside)
            old.append(aside)
        temp.rename(final)
        for aside in old:
            _remove_checkpoint(aside, ignore_errors=True)
        prune_checkpoints(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


#: Model file a finished run saves in its output folder (``save_pretrained``), naming its component folders.
MODEL_INDEX = "model_index.json"
#: File in each checkpoint holding how many processes saved it (``checkpoint_processes``).
PROCESSES_FILE = "num_processes.txt"
#: Files in an output folder that mark a training run that got somewhere (with its ``checkpoint-<step>``
#: folders); ``train_config.yaml`` alone is a run that failed before its first step, safe to start over.
RUN_FILES = (MODEL_INDEX, REPLACING_INDEX, TRAINING_SUMMARY_FILE)


def check_finite(accelerator: Any, value: Any, what: str, step: int, checkpointing: bool) -> None:
    """``TrainingDivergedError`` unless ``value`` (a step's loss, or its gradient norm) is finite, before the step is
    applied: a diverging run (a learning rate too high) trained on with NaN weights, saved them in its checkpoints
    and final model with exit status 0, or crashed (a NaN flow in the student's warp makes grid_sample's backward
    segfault in torch 2.14), and a resume from such a checkpoint crashed again (black-box hunt). ``step``: the step
    it belongs to (1-based); ``checkpointing``: whether the run saves checkpoints.

    The gradient norm is not checked under fp16's loss scaler (``accelerator.scaler``): it skips a step whose scaled
    gradients overflowed, and lowers its scale, as it should in the first steps of most runs (review); the loss,
    computed before the scaling, is. With several processes the loss check is each process's: the one that finds
    it stops, and the launcher ends the others. None (a norm a plugin does not give) passes."""
    import torch  # (this module loads no torch: the command line imports it)

    if value is None or (accelerator.scaler is not None and what != "loss"):  # (the loss is unscaled: an fp16
        return  # forward that overflowed is no overflow the scaler's skip and lower scale cure: review)
    value = torch.as_tensor(value).detach()
    finite = torch.isfinite(value)
    if bool(finite.all()):
        return
    resume = (" and resume from the last checkpoint saved before it, if one was (--resume_from_checkpoint latest "
              "--allow_changed_settings; it holds no part of this step)" if checkpointing else "")
    shown = float(value[~finite].flatten()[0])  # (a tensor of several values: the first that is not finite)
    raise TrainingDivergedError(f"training diverged at step {step}: its {what} is {shown} (a learning rate too "
                                f"high?); nothing of the step was applied or saved. Lower --learning_rate{resume}")


def gradient_norm(accelerator: Any, parameters: list[Any], max_norm: float) -> Any:
    """The norm of ``parameters``' gradients (all processes': after the step's all-reduce), clipped to ``max_norm``
    first where it is above 0 (``--max_grad_norm``); without clipping it was not computed, and a finite loss with
    non-finite gradients (sqrt or a norm at 0, grid_sample's backward) went into the weights unseen (review): torch's
    ``clip_grad_norm_`` at an infinite ``max_norm`` gives it and changes no gradient."""
    if max_norm > 0:
        return accelerator.clip_grad_norm_(parameters, max_norm)
    if accelerator.scaler is not None:  # (`check_finite` leaves fp16 to its scaler: no norm to look at)
        return None
    import torch

    return torch.nn.utils.clip_grad_norm_(parameters, math.inf)


def check_batches_per_epoch(num_items: int, args: argparse.Namespace, num_processes: int) -> None:
    """``InputError`` unless an epoch of ``num_items`` clips fills one optimizer step on every process: batches of
    ``--train_batch_size`` (the last partial one dropped), ``--gradient_accumulation_steps`` of them per step.
    Fewer items made smaller batches than the run says and records, fewer batches steps that averaged fewer
    micro-batches than asked for, both without a word. Where the steps do not divide an epoch's batches, the last
    step of each epoch sums the batches left, each weighted 1 / steps (Accelerate ends the accumulation with the
    data, and divides every loss by ``--gradient_accumulation_steps``): a note says so (the first process) where
    ``--max_train_steps`` reaches an epoch's end."""
    if num_items < args.train_batch_size:
        raise InputError(f"the dataset has {count_of(num_items, 'clip')}, fewer than --train_batch_size "
                         f"{args.train_batch_size}")
    batches = num_items // (args.train_batch_size * num_processes)  # per process and epoch
    if batches == 0:  # (fewer than one batch on each process)
        raise InputError(f"the dataset has {count_of(num_items, 'clip')}, fewer than --train_batch_size "
                         f"{args.train_batch_size} "
                         f"x {num_processes} processes: use more clips, or a smaller batch or fewer processes")
    if batches < args.gradient_accumulation_steps:
        raise InputError(f"the dataset's {num_items} clips make {batches} batch{'es' * (batches != 1)} of "
                         f"--train_batch_size {args.train_batch_size} per epoch"
                         + (f" on each of {num_processes} processes" if num_processes > 1 else "")
                         + f", fewer than --gradient_accumulation_steps {args.gradient_accumulation_steps}: each step "
                         f"would average only {batches}; lower --gradient_accumulation_steps or use more clips")
    left = batches % args.gradient_accumulation_steps
    steps_per_epoch = -(-batches // args.gradient_accumulation_steps)  # (the last one of each epoch partial)
    if left and args.max_train_steps >= steps_per_epoch and is_first_process():  # (a run that ends before the
        # epoch does takes no partial step: the note was printed for it too)
        print(f"note: an epoch holds {batches} batches of --train_batch_size {args.train_batch_size}"
              + (" on each process" if num_processes > 1 else "") + f": the last step of each epoch sums {left} of "
              f"them, each weighted 1/{args.gradient_accumulation_steps} as by --gradient_accumulation_steps (a "
              f"smaller, noisier step; a number of clips that makes a multiple of it avoids that)", file=sys.stderr)


def load_training_checkpoint(accelerator: Any, checkpoint: Path) -> None:
    """``accelerator.load_state(checkpoint)``; a damaged or incomplete checkpoint (a truncated or half-copied
    file: an ``OSError``, a safetensors or ``torch.load`` error; a file missing) is an ``InputError`` naming it
    and the checkpoint before it, not a traceback from deep inside Accelerate. A missing
    ``random_states_<process>.pkl`` counts as incomplete: Accelerate skips it with an info line, and the resumed
    run would draw other random numbers than the run it continues. Nothing in the run folder is changed."""
    from safetensors import SafetensorError

    checkpoint = Path(checkpoint)
    # one file per process that saved it (a process beyond them, in a run allowed to have more processes than
    # saved it, starts its generators afresh, as Accelerate does); the same decision on every process, which all
    # read the same folder. A checkpoint of an earlier version, counted by its files: 0 and any gap are missing
    saved = {path.name for path in checkpoint.glob("random_states_*.pkl")}
    gaps = [index for index in range(max(checkpoint_processes(checkpoint), 1))
            if f"random_states_{index}.pkl" not in saved]
    if gaps:
        raise damaged_checkpoint(checkpoint, f"random_states_{gaps[0]}.pkl, the random number generators' states, "
                                             f"is missing; without it the resumed run would not be exact")
    for index in range(accelerator.num_processes):  # every process checks the files of all (the same decision on
        if f"random_states_{index}.pkl" in saved:  # each), those a process of this run reads
            _check_random_states(checkpoint, f"random_states_{index}.pkl")
    _check_custom_states(checkpoint, len(getattr(accelerator, "_custom_objects", ())))
    try:
        accelerator.load_state(str(checkpoint))
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - sorted below; anything else is raised as it is
        damaged_model = isinstance(error, MissingWeightsError)  # a model folder in it (LocalModelMixin's check)
        reason = (error.__cause__ or error) if damaged_model else error  # (not its advice to copy the folder)
        missing = _missing_file(error, checkpoint)
        if missing is not None:
            raise damaged_checkpoint(checkpoint, f"{missing} is missing") from error
        if not damaged_model and (is_out_of_memory(error) or isinstance(error, (PermissionError, FileNotFoundError))):
            raise  # not the file's bytes: said as they are
        if "size mismatch" in str(error) or "Error(s) in loading state_dict" in str(error):
            # the line that names a weight ("size mismatch for ...: copying a param with shape ..."), not the
            # header "Error(s) in loading state_dict for StarVSRUNetModel:" alone
            detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), first_line(error))
            if len(detail) > MAX_DETAIL_CHARS:  # "Unexpected key(s) in state_dict: ..." lists every key
                detail = detail[:MAX_DETAIL_CHARS] + " ..."
            raise InputError(f"{checkpoint} does not fit the model of this run ({detail}); resume with "
                             f"the settings that trained it") from error
        if not (isinstance(error, (OSError, SafetensorError)) or is_damaged_weights_error(error)):
            raise
        text = load_failure(reason)  # (what the unpickler found, not torch's advice to load with weights_only=False)
        if text.startswith(NO_PICKLE):  # (torch.load's bare KeyError(101): it read "(101)"; black-box hunt)
            text = f"a file of it is {text}"
        elif first_line(reason).startswith("Weights only load failed"):
            text = f"a file of it is no PyTorch state torch.load reads safely ({text})"
        raise damaged_checkpoint(checkpoint, text) from error


#: What Accelerate's ``random_states_<process>.pkl`` holds and ``load_state`` sets (it skips the file when one is
#: missing, with an info line).
RANDOM_STATE_KEYS = ("random_state", "numpy_random_seed", "torch_manual_seed")


def _check_random_states(checkpoint: Path, name: str) -> None:
    """``InputError`` (``damaged_checkpoint``) unless ``checkpoint/name`` is a random-states file Accelerate can
    restore: ``load_state`` catches any error reading it and logs only "Could not load random states", so a
    truncated file went on with other random numbers, the resume no longer exact, without a word."""
    def lacking(states: Any) -> Optional[str]:
        return next((f"it holds no {key}" for key in RANDOM_STATE_KEYS
                     if not isinstance(states, dict) or key not in states), None)

    _read_state(checkpoint, name, lambda why: f"{name}, the random number generators' states, cannot be read: "
                                              f"{why}; without it the resumed run would not be exact", lacking)


def _read_state(checkpoint: Path, name: str, unreadable: Callable[[str], str],
                lacking: Callable[[Any], Optional[str]] = lambda state: None) -> None:
    """``damaged_checkpoint`` with ``unreadable(why)`` unless ``checkpoint/name`` reads as Accelerate's ``load``
    reads it (torch.load with weights only, NumPy's types allowed) and ``lacking`` finds nothing missing in it;
    running out of memory and a permission error are raised as they are (not the file's bytes)."""
    from accelerate.utils import load

    try:
        missing = lacking(load(checkpoint / name))
        if missing:
            raise ValueError(missing)
    except Exception as error:  # noqa: BLE001 - whatever Accelerate would have swallowed, or unpickled whole
        if is_out_of_memory(error) or isinstance(error, PermissionError):
            raise
        raise damaged_checkpoint(checkpoint, unreadable(load_failure(error))) from error


def _check_custom_states(checkpoint: Path, registered: int) -> None:
    """``InputError`` unless ``checkpoint`` holds one ``custom_checkpoint_<i>.pkl`` for each of the ``registered``
    states of this run (the training clock, distill_student's weight average), as Accelerate's ``load_state``
    requires ("Number of custom checkpoints in folder ... does not match the number of registered objects", a
    traceback), each plain data: ``load_state`` unpickles them whole (weights_only=False), and a downloaded
    checkpoint's file ran the code it named (security review)."""
    found = {path.name for path in checkpoint.glob("custom_checkpoint_*.pkl")}
    wanted = {f"custom_checkpoint_{index}.pkl" for index in range(registered)}
    if found == wanted:
        for name in sorted(found):
            _read_state(checkpoint, name, lambda why: f"{name} cannot be read as plain data ({why}): it is damaged, "
                                                      f"or holds Python objects, which loading would run")
        return
    if found < wanted:  # lost, or saved by a run with fewer states: the file says which, not this check
        missing = min(wanted - found, key=lambda name: int(re.sub(r"\D", "", name)))
        raise damaged_checkpoint(checkpoint, f"{missing}, a state this run registers, is missing (or the run that "
                                             f"saved it had fewer: another --ema_decay?)")
    raise InputError(f"{checkpoint} holds {len(found)} registered states (the training clock, a weight average), "
                     f"this run registers {registered}: it was saved by a run with other settings (another "
                     f"--ema_decay?); resume with the settings that trained it")


def _missing_file(error: BaseException, checkpoint: Path) -> Optional[str]:
    """The name of the file of ``checkpoint`` that ``error`` (a ``FileNotFoundError``) says is missing, or None
    (not one, or a file elsewhere). safetensors gives no ``filename``, only the message; Accelerate, not finding a
    model's ``model.safetensors``, asks for ``pytorch_model.bin``: named by the file it saves."""
    if not isinstance(error, FileNotFoundError) or isinstance(error, MissingWeightsError):  # (a model folder's own)
        return None
    named = [error.filename] if error.filename else [  # the checkpoint's path as given or resolved, then a name
        found for folder in {str(checkpoint), str(checkpoint.resolve())}
        for found in re.findall(re.escape(folder) + r"/[^\s'\"]+", str(error))]
    inside = [Path(name) for name in named if checkpoint.resolve() in Path(name).resolve().parents]
    if not inside:
        return None
    name = inside[0].name
    weights = re.fullmatch(r"pytorch_model(_\d+)?\.bin", name)
    return f"model{weights.group(1) or ''}.safetensors" if weights else name


def from_elsewhere(checkpoint: Path, output_dir: Path) -> bool:
    """Whether ``checkpoint`` is in another folder than ``output_dir``: another run's, which this one goes on from.
    A link in ``output_dir`` to a checkpoint elsewhere is in it (``latest`` found it there; it was refused as
    "another run than the one of --resume_from_checkpoint", with the advice to pass ``latest``)."""
    return Path(checkpoint).absolute().parent.resolve() != Path(output_dir).resolve()


def damaged_checkpoint(checkpoint: Path, reason: str) -> InputError:
    """The error for a checkpoint that cannot be loaded for ``reason``: what to go on from instead."""
    earlier = [folder for folder in checkpoint_folders(checkpoint.parent)
               if checkpoint_step(folder) < checkpoint_step(checkpoint)]
    then = (f"go on from the one before it with --resume_from_checkpoint {earlier[-1]}, or delete {checkpoint}"
            if earlier else f"delete {checkpoint}")
    return InputError(f"{checkpoint} is damaged and cannot be loaded ({reason}); {then} (then `latest` takes the "
                      f"last checkpoint left), or start over with --overwrite_output_dir")


def build_optimizer(params: Sequence[Any], args: argparse.Namespace, num_processes: int) -> tuple[Any, Any]:
    """AdamW over ``params`` with the ``--learning_rate`` / ``--adam_*`` settings, and the ``--lr_scheduler``
    schedule with ``--lr_warmup_steps`` of warm-up over ``--max_train_steps``; both in scheduler steps times
    ``num_processes``, as Accelerate steps a prepared schedule once per process each update."""
    import torch
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(list(params), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * num_processes,
                                 num_training_steps=args.max_train_steps * num_processes)
    return optimizer, lr_scheduler


def resume_training(accelerator: Any, checkpoint: Optional[Path], optimizer: Any, lr_scheduler: Any,
                    args: argparse.Namespace) -> int:
    """Load ``checkpoint`` (``resume_checkpoint``'s; None: a new run) into the prepared model, optimizer and
    schedule, with this run's hyperparameters (``apply_run_hyperparameters``); the step it goes on after (0 for a
    new run). Says so on the console when it resumes, or when ``--resume_from_checkpoint latest`` found none."""
    if checkpoint is None:
        if args.resume_from_checkpoint:
            accelerator.print(f"no checkpoint in {args.output_dir}; starting a new run")
        return 0
    accelerator.print(resuming_message(checkpoint, args.output_dir))
    load_training_checkpoint(accelerator, checkpoint)
    apply_run_hyperparameters(optimizer, lr_scheduler, args)
    return checkpoint_step(checkpoint)


def apply_run_hyperparameters(optimizer: Any, lr_scheduler: Any, args: argparse.Namespace) -> None:
    """Give a resumed optimizer and schedule this run's learning rate and AdamW settings.

    ``accelerator.load_state`` restores the optimizer's hyperparameters and the schedule's base learning rate as
    the checkpoint saved them, so a ``--learning_rate`` (or ``--adam_*``) changed with ``--allow_changed_settings``
    was recorded as changed but never used. The schedule's shape (warm-up, kind, length) comes from this run's
    settings already: only its base rate is saved. The rate of the current step is
    ``learning_rate * lr_lambda(step)``, as the schedule computes it; unchanged settings leave every value as
    it was (the same expression), so an exact resume stays exact."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # Accelerate's wrappers hold the torch objects
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
    for group in optimizer.param_groups:
        group.update(initial_lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                     weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    scheduler.base_lrs = [args.learning_rate] * len(optimizer.param_groups)
    for group, lr_lambda in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["lr"] = args.learning_rate * lr_lambda(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


#: The component folders of both pipelines a training run saves (StarVSR's and the student's).
PIPELINE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "unet", "controlnet", "scheduler", "student")


def check_output_dir(output_dir: Path, resume: Optional[str], overwrite: bool) -> None:
    """``InputError`` when ``output_dir`` holds a run and this one neither goes on from it
    (``--resume_from_checkpoint``) nor replaces it (``--overwrite_output_dir``): training over an old
    run mixed their checkpoints, and ``latest`` could later resume the old one. Also when ``latest`` is asked
    for in a folder that holds a trained model but no checkpoint (a finished run saves its model, not always a
    checkpoint): it would start over and replace that model. Also when it is the student that ships with star-vsr.
    """
    from .student import check_not_the_shipped_student

    check_not_the_shipped_student(output_dir, "train into")
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return
    checkpoints = checkpoint_folders(output_dir)
    model = [n for n in RUN_FILES if (output_dir / n).exists()]
    found = _run_found(output_dir)
    if resume is not None:
        checkpoint = resume_checkpoint(output_dir, resume)
        # going on here from another folder's run: its saves deleted this folder's later checkpoints ("abandoned")
        if checkpoint is not None and from_elsewhere(checkpoint, output_dir) and found and not overwrite:
            go_on = (f"to go on with the run there (one that went on from {checkpoint} too), pass "
                     f"--resume_from_checkpoint latest; " if checkpoints else "")
            raise InputError(f"{output_dir} holds another run ({', '.join(found[:4])}) than the one of "
                             f"--resume_from_checkpoint {checkpoint}, and going on here would mix the two; {go_on}to "
                             f"go on from {checkpoint}, choose a new --output_dir, or pass --overwrite_output_dir to "
                             f"replace the run here")
        if overwrite and checkpoint is not None and not from_elsewhere(checkpoint, output_dir) and is_first_process():
            # (the run went on from its checkpoint without a word; a note, not a refusal: one command line that
            # started the run over may be the one its restarts use)
            print(f"note: --overwrite_output_dir has no effect: --resume_from_checkpoint {resume} goes on from "
                  f"{checkpoint} (leave out --resume_from_checkpoint to start over)", file=sys.stderr)
        if resume == "latest" and model and not checkpoints and not overwrite:  # "starting a new run" replaced it
            raise InputError(f"{output_dir} holds a trained model ({', '.join(model)}) but no checkpoint to go on "
                             f"from (checkpoints are saved every --checkpointing_steps); choose another --output_dir, "
                             f"or pass --overwrite_output_dir to start over")
        return
    if found and not overwrite:
        # without a checkpoint there is nothing to go on from (`latest` starts over, or is refused beside a model)
        go_on = "go on with --resume_from_checkpoint latest, " if checkpoints else ""
        raise InputError(f"{output_dir} holds a run ({', '.join(found[:4])}); {go_on}choose another --output_dir, "
                         f"or pass --overwrite_output_dir to start over")
    taken = [f"{name}/" for name in PIPELINE_COMPONENTS
             if (output_dir / name).is_dir() and any((output_dir / name).iterdir())]
    if not found and taken:  # the final save replaces these folders whole: the user's files in them were deleted
        raise InputError(f"{output_dir} holds {', '.join(taken)} (no saved model's: no {MODEL_INDEX}); the trained "
                         f"pipeline is saved as such folders and would replace {'it' if len(taken) == 1 else 'them'}: "
                         f"choose another --output_dir")


def _run_found(output_dir: Path) -> list[str]:
    """What in ``output_dir`` makes it hold a training run: its checkpoints, a saved model (`RUN_FILES`), a
    training log that is not empty."""
    found = [p.name for p in checkpoint_folders(output_dir)] + [n for n in RUN_FILES if (output_dir / n).exists()]
    log = output_dir / TRAIN_LOG_FILE
    if log.is_file() and log.stat().st_size > 0:
        found.append(log.name)
    return found


def main_process_step(accelerator: Any, step: Callable[[], None]) -> None:
    """Run ``step`` on the main process only (making and locking the output folder, `prepare_output_dir`); when it
    raises, every process raises it (its type and message), so that none goes on: the other processes of a run
    refused by the output folder's lock read the checkpoints of the run holding it, and said one that run was
    pruning was damaged (delete it), or waited in the next collective until the process group's timeout."""
    error: Optional[Exception] = None
    failure: list[Optional[tuple[type, str, Optional[int]]]] = [None]  # (type, message, errno: a full disk's status)
    if accelerator.is_main_process:
        try:
            step()
        except Exception as caught:
            error, failure[0] = caught, (type(caught), str(caught), getattr(caught, "errno", None))
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(failure, from_process=0)
    if error is not None:
        raise error
    if failure[0] is not None:
        kind, message, number = failure[0]
        try:
            raised = kind(message) if issubclass(kind, StarVSRError) else StarVSRError(message)
        except TypeError:  # (an error class of other arguments)
            raised = StarVSRError(message)
        if number is not None:
            raised.errno = number  # type: ignore[attr-defined]
        raise raised


def prepare_output_dir(args: argparse.Namespace, checkpoint: Optional[Path],
                       run_outputs: Callable[[Mapping[str, Any]], Iterable[str]], held: ExitStack) -> None:
    """Make ``args.output_dir`` (main process only, once the settings are known to work), lock it for as long as
    ``held`` lasts (the run's main: ``OutputBusyError`` when another run holds it; two runs wrote one folder, one's
    settings record beside the other's model, or the second deleted the first's record as a run stopped untrained),
    and, when this run starts over in it, delete what an earlier run wrote there (``clear_old_run``): with
    ``--overwrite_output_dir``, or ``--resume_from_checkpoint latest`` without a checkpoint to go on from (a run
    stopped before its first one, whose log, TensorBoard events and validation images would mix with this
    run's), or a new run in a folder where one stopped before it had trained a step (its settings record and
    TensorBoard events were left, and the next run's events joined them). ``checkpoint`` is the one this run goes on
    from, if any; one in another folder, with ``--overwrite_output_dir``, replaces the run in this one too."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    held.enter_context(folder_lock(output_dir, output_dir))
    stopped_untrained = (output_dir / CONFIG_FILE).is_file() and not _run_found(output_dir)
    if (checkpoint is None and (args.overwrite_output_dir or args.resume_from_checkpoint is not None
                                or stopped_untrained)
            or checkpoint is not None and from_elsewhere(checkpoint, output_dir) and args.overwrite_output_dir):
        # (the last case: a run there replaced by one going on from elsewhere)
        clear_old_run(args, run_outputs)


def clear_old_run(args: argparse.Namespace, run_outputs: Callable[[Mapping[str, Any]], Iterable[str]]) -> list[Path]:
    """Delete what training runs write into ``args.output_dir`` (main process only), so that a run starting
    over there does not mix its checkpoints, logs, validation images and model with the old run's. Nothing
    else is touched: files of the user's in that folder stay, and so does anything outside it.

    Deleted: ``checkpoint-<step>`` folders and the hidden temporaries of a save, ``CONFIG_FILE``,
    ``RESUMES_FILE`` and ``FINAL_STEP_FILE``, the saved model (``MODEL_INDEX`` and the component folders it
    names), and what the script's ``run_outputs(settings)`` names (glob patterns relative to the folder: its
    log, TensorBoard folder, validation images...) for this run's settings and for each set the old run
    recorded (its logging folder may have been another); then the folders this left empty. Returns the deleted
    paths.
    """
    from .io.atomic import is_real_folder  # (here: star_vsr.io loads PyAV, which this module does not need)

    output_dir = Path(args.output_dir)
    recorded = []
    for record in (output_dir / CONFIG_FILE, *(folder / CONFIG_FILE for folder in checkpoint_folders(output_dir)),
                   output_dir / RESUMES_FILE):
        try:
            documents = _read_settings(record)
        except InputError:  # damaged: it goes too, without naming more to delete
            continue
        recorded += [document.get("settings") if record.name == RESUMES_FILE else document for document in documents]
    settings = [vars(args), *({**vars(args), **values} for values in recorded if isinstance(values, dict))]
    names = [CONFIG_FILE, RESUMES_FILE, FINAL_STEP_FILE, *_checkpoint_files(output_dir), *_model_files(output_dir)]
    patterns = [*map(glob.escape, names), *(pattern for values in settings for pattern in run_outputs(values))]
    root = output_dir.resolve()
    deleted = []
    for pattern in dict.fromkeys(patterns):
        if Path(pattern).is_absolute():  # an absolute logging folder: inside output_dir, or left alone
            if not Path(pattern).is_relative_to(root):
                continue
            pattern = str(Path(pattern).relative_to(root))
        for path in sorted(output_dir.glob(pattern)):
            # a link is deleted, not followed; "logs/.." (a glob of an odd project name) is the folder itself
            where = Path(os.path.normpath(path.parent.resolve() / path.name))
            if path.name in ("", ".", "..") or where == root or not where.is_relative_to(root) \
                    or not (path.exists() or path.is_symlink()):
                continue
            shutil.rmtree(path) if is_real_folder(path) else path.unlink()
            deleted.append(path)
    for path in deleted:  # folders left empty (logs/ of a removed TensorBoard folder, validation/)
        for parent in path.parents:
            at = parent.resolve()
            if at == root or not at.is_relative_to(root) or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
    return deleted


def tensorboard_pattern(logging_dir: Any, project: Any) -> str:
    """The glob pattern of the TensorBoard folder a run writes (``<logging_dir>/<project>``), for ``run_outputs``."""
    return str(Path(glob.escape(str(logging_dir))) / glob.escape(str(project)))


def check_overwrite_keeps_inputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``InputError`` when ``--overwrite_output_dir`` would delete an input of the run: a path setting (the
    model to start from, the data) that is the output folder or lies inside it."""
    if not args.overwrite_output_dir:
        return
    root = Path(args.output_dir).expanduser().resolve()
    for name in getattr(parser, "path_settings", ()):
        value = getattr(args, name, None)
        if name in RUN_CONTROL_SETTINGS or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser().resolve()
        if path == root or path.is_relative_to(root):
            raise InputError(f"--{name} {value} is inside --output_dir {args.output_dir}, which "
                             f"--overwrite_output_dir would clear first: choose another --output_dir")


def _checkpoint_files(output_dir: Path) -> list[str]:
    """The ``checkpoint-<step>`` folders, and the hidden ones of a save that did not finish (``save_checkpoint``)."""
    hidden = re.compile(rf"\.{re.escape(CHECKPOINT_PREFIX)}\d+\.(partial|old)")
    leftovers = [path.name for path in output_dir.iterdir() if path.is_dir() and hidden.fullmatch(path.name)] \
        if output_dir.is_dir() else []
    return [folder.name for folder in checkpoint_folders(output_dir)] + leftovers


def _model_files(output_dir: Path) -> list[str]:
    """``MODEL_INDEX`` (or the ``REPLACING_INDEX`` of a save stopped midway) and the component folders it names
    (``save_pretrained`` writes one per component)."""
    index = saved_index(output_dir)
    if index is None:
        return []
    try:
        components = loads_json(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        components = {}
    if not isinstance(components, dict):
        components = {}
    folders = [name for name, value in components.items() if not name.startswith("_") and isinstance(value, list)
               and name not in (".", "..") and Path(name).name == name]
    return [index.name, *folders]


def resume_checkpoint(output_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """The checkpoint ``--resume_from_checkpoint`` names, or None to start fresh.

    ``None`` starts fresh; ``"latest"`` is the newest checkpoint in ``output_dir`` (None when there
    is none yet, so a first run and its restarts share one command line); anything else must be a
    ``checkpoint-<step>`` folder (``InputError`` otherwise), a relative one found from the current folder or else
    in ``output_dir`` (``checkpoint-2`` as ``ls OUTPUT_DIR`` shows it).
    """
    if resume is None:
        return None
    if resume == "latest":
        folders = checkpoint_folders(Path(output_dir))
        return folders[-1] if folders else None
    path = Path(resume)
    if not path.is_absolute() and not os.path.lexists(path) and os.path.lexists(Path(output_dir) / path):
        path = Path(output_dir) / path  # (a link there to nothing is named as such, not looked for here)
    if not path.exists():
        where = "" if path.is_absolute() or os.path.lexists(path) else f" (here or in --output_dir {output_dir})"
        raise InputError(f"--resume_from_checkpoint {path}{where} {why_missing(path)}; give a "
                         f"{CHECKPOINT_PREFIX}<step> folder, or 'latest'")
    if path not in checkpoint_folders(path.parent):
        raise InputError(f"--resume_from_checkpoint {path} is not a {CHECKPOINT_PREFIX}<step> folder; give one, "
                         "or 'latest'")
    return path


def _write_settings(path: Path, settings: Mapping[str, Any]) -> None:
    """``settings`` as the YAML of a run's record: in their order, non-ASCII paths as they are (not escaped)."""
    path.write_text(yaml.safe_dump(dict(settings), sort_keys=False, allow_unicode=True), encoding="utf-8")


def recorded_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``args`` as a run records and compares them: plain YAML values, exactly as read back from the file
    (tuples as lists), the parser's ``path_settings`` absolute and its ``pair_settings`` as pairs."""
    return _comparable(vars(args), parser)


def _comparable(settings: Mapping[str, Any], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``settings`` with paths absolute and pairs as pairs, through a YAML round trip."""
    paths, pairs = getattr(parser, "path_settings", ()), getattr(parser, "pair_settings", ())
    resolved = {}
    for name, value in settings.items():
        if name in paths and isinstance(value, str) and value:  # absolute whether or not it exists (now)
            path = Path(value).expanduser()
            value = str(path.resolve() if path.exists() else path.absolute())
        elif name in pairs and isinstance(value, int) and not isinstance(value, bool):  # 32 -> [32, 32]
            value = [value, value]
        resolved[name] = value
    return yaml.safe_load(yaml.safe_dump(_plain(resolved), sort_keys=False))


def _plain(value: Any) -> Any:
    """Tuples as lists and paths as strings, recursively (what ``yaml.safe_dump`` writes)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def _read_settings(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a settings file (none when it does not exist); ``InputError`` when damaged."""
    if not path.is_file():
        return []
    try:
        documents = [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
                     if document is not None]
        if not all(isinstance(document, dict) for document in documents):
            raise ValueError("not a mapping of settings")
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as error:  # (nested too deep)
        raise InputError(f"cannot read the settings recorded in {path} ({str(error).splitlines()[0]}); restore "
                         f"it, or delete it to go on without comparing settings") from None
    return documents


def current_settings(output_dir: Path) -> Optional[dict[str, Any]]:
    """The settings the run in ``output_dir`` trains with now: those of its last resume, else those it
    started with; None when it recorded none."""
    output_dir = Path(output_dir)
    resumes = _read_settings(output_dir / RESUMES_FILE)
    if resumes:
        return resumes[-1].get("settings")
    started = _read_settings(output_dir / CONFIG_FILE)
    return started[0] if started else None


def checkpoint_settings(checkpoint: Path) -> Optional[dict[str, Any]]:
    """The settings that trained ``checkpoint``: those it holds, else (a checkpoint saved before checkpoints held
    them) those of its run folder's last resume before its step, else those the run started with; None when
    nothing was recorded (a run of an earlier version of ``distill_student.py``)."""
    checkpoint = Path(checkpoint)
    own = _read_settings(checkpoint / CONFIG_FILE)
    if own:
        return own[0]
    earlier = [entry for entry in _read_settings(checkpoint.parent / RESUMES_FILE)
               if entry.get("step", 0) < checkpoint_step(checkpoint)]
    if earlier:
        return earlier[-1].get("settings")
    started = _read_settings(checkpoint.parent / CONFIG_FILE)
    return started[0] if started else None


def changed_settings(saved: Mapping[str, Any], args: argparse.Namespace,
                     parser: argparse.ArgumentParser) -> list[tuple[str, Any, Any]]:
    """(name, old, new) for each setting of ``args`` that differs from ``saved`` (settings a run recorded), the
    ``RUN_CONTROL_SETTINGS`` aside. Both sides are compared as ``recorded_settings`` writes them; a setting
    that ``saved`` lacks (added to the script since) counts as its default in ``parser``, which must be the
    script's parser as built, without a ``--config``'s defaults."""
    return _changes(*_compared_settings(saved, args, parser))


def _changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, old, new) for each setting that differs between ``before`` and ``now`` (`_compared_settings`)."""
    return [(name, before.get(name), value) for name, value in now.items()
            if name not in RUN_CONTROL_SETTINGS and before.get(name) != value]


def _compared_settings(saved: Mapping[str, Any], args: argparse.Namespace, parser: argparse.ArgumentParser,
                       by_content: Collection[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``saved`` as ``changed_settings`` compares it, the settings of ``args`` as it compares them), without the
    settings ``by_content`` names where both give one (a path whose content ``check_same_data`` compares)."""
    now = recorded_settings(args, parser)
    defaults = vars(parser.parse_args([]))
    saved = dict(saved)
    if "mixed_precision" in saved and saved["mixed_precision"] is None:  # recorded before the launcher's precision
        saved["mixed_precision"] = now.get("mixed_precision")  # was filled in (launcher_precision): unknown, as now
    before = _comparable({**defaults, **{name: value for name, value in saved.items() if name in now}}, parser)
    for name in by_content:  # (one given or not still is compared)
        if before.get(name) is not None and now.get(name) is not None:
            before.pop(name)
            now.pop(name)
    return before, now


def changes_what_is_trained(name: str, args: argparse.Namespace) -> bool:
    """Whether a resumed run changing setting ``name`` would train something else (see ``RESUMABLE_CHANGES``)."""
    if name == "max_train_steps":
        return getattr(args, "lr_scheduler", None) not in FIXED_SCHEDULES
    return name not in RESUMABLE_CHANGES


def _listed(changes: Sequence[tuple[str, Any, Any]], args: argparse.Namespace) -> str:
    """``name: old -> new, ...`` (values as JSON)."""
    def shown(value: Any) -> str:
        return json.dumps(value, default=str)

    items = []
    for name, old, new in changes:
        note = ""
        if name == "max_train_steps" and changes_what_is_trained(name, args):
            note = f" (the {args.lr_scheduler} learning-rate schedule depends on it)"
        items.append(f"{name}: {shown(old)} -> {shown(new)}{note}")
    return ", ".join(items)


def note_ignored_settings(args: argparse.Namespace, parser: argparse.ArgumentParser, names: Sequence[str],
                          why: str) -> None:
    """A note (first process only) naming the settings of ``names`` that ``args`` sets to other than their defaults,
    which have no effect ``why`` (e.g. "with --dataset images"): they were dropped without a word. A note, not a
    refusal: a config written for one kind of data keeps them when the command line switches to another."""
    given = [f"--{name} {getattr(args, name)}" for name in names  # compared as recorded: a run's record reused as
             if _comparable({name: getattr(args, name)}, parser)  # its config names frame_interval [1, 1], the
             != _comparable({name: parser.get_default(name)}, parser)]  # default 1 as a pair
    if given and is_first_process():
        print(f"note: {', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect {why}", file=sys.stderr)


def is_first_process() -> bool:
    """Whether this is the first (or only) process ``accelerate launch`` started: its ``RANK`` is 0 or unset. What
    every process would say alike (the same command line, the same files) is said by this one only."""
    return os.environ.get("RANK", "0") == "0"


def launched_processes() -> int:
    """How many processes ``accelerate launch`` (torchrun underneath) started this one among: its ``WORLD_SIZE``
    (1 when not launched)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def note_one_process_of_several(what: str) -> None:
    """Say so when ``accelerate launch --num_processes N`` (N > 1) started this process alone: without
    ``--multi_gpu`` (or an ``accelerate config`` that sets several processes up) Accelerate 1.16's simple launcher
    starts one process, and only the ``MASTER_ADDR`` it sets for the others it does not start tells (``what`` then
    ran as one, twice as long for two, without a word)."""
    # (torchrun's; MPI launches, which Accelerate reads the size of, set MASTER_ADDR too)
    group = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    if "ACCELERATE_MIXED_PRECISION" in os.environ and "MASTER_ADDR" in os.environ and not any(
            name in os.environ for name in group):
        print(f"note: accelerate launch started one process, not the several its --num_processes asks for (they "
              f"need --multi_gpu in place of --cpu, which on a machine without a GPU starts CPU processes): {what} "
              f"runs as one", file=sys.stderr)


def checkpoint_processes(checkpoint: Path) -> int:
    """How many processes saved ``checkpoint``: what ``save_checkpoint`` recorded in ``PROCESSES_FILE``, else (a
    checkpoint of an earlier version) the ``random_states_<i>.pkl`` Accelerate writes, one per process (0: none
    found). Part of what is trained: each step averages the batches of every process."""
    try:
        return int((Path(checkpoint) / PROCESSES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return len(list(Path(checkpoint).glob("random_states_*.pkl")))


def check_resumed_settings(args: argparse.Namespace, parser: argparse.ArgumentParser, checkpoint: Path,
                           checkpoint_shape: Optional[ShapeOf] = None) -> None:
    """``InputError`` listing each setting that changes what is trained (``changes_what_is_trained``) and
    differs from the settings that trained ``checkpoint``, or naming another number of processes than the one that
    saved it (``checkpoint_processes``), unless ``--allow_changed_settings``; and, with it too, naming the settings
    whose change changes ``checkpoint_shape`` (the script's: what of its settings shapes a checkpoint's weights,
    optimizer state and saved objects): a checkpoint cannot be loaded into another shape (the flag, offered for a
    LoRA's rank, then failed with "does not fit the model"). The settings are not compared when the run recorded
    none."""
    before, now = checkpoint_processes(checkpoint), launched_processes()
    if before and before != now and not args.allow_changed_settings:
        raise InputError(f"{checkpoint} was trained by {before} process{'es' * (before != 1)} and this run has {now}: "
                         f"each step would average {now} instead of {before} batches of --train_batch_size (another "
                         f"model); resume with accelerate launch --num_processes {before}, or pass "
                         f"--allow_changed_settings to go on with {now} (recorded in {RESUMES_FILE})")
    saved = checkpoint_settings(checkpoint)
    if saved is None:
        return
    by_content = [name for name, record in getattr(parser, "content_settings", {}).items()  # (a run recorded
                  if (Path(checkpoint).parent / record).is_file()]  # before the record: by its path, as then)
    before_settings, now_settings = _compared_settings(saved, args, parser, by_content)
    changes = [change for change in _changes(before_settings, now_settings)
               if changes_what_is_trained(change[0], args)]
    reshaped = _reshaped(before_settings, now_settings, checkpoint_shape) if checkpoint_shape is not None else []
    if reshaped:
        others = [change for change in changes if change[0] not in {name for name, _, _ in reshaped}]
        raise InputError(f"{checkpoint} was trained with other settings that shape its weights: "
                         f"{_listed(reshaped, args)}. A checkpoint cannot be resumed in another shape: resume with "
                         f"the earlier {'value' if len(reshaped) == 1 else 'values'}, or start a new run with another "
                         f"--output_dir" + (f" (its other changed settings, {_listed(others, args)}, need "
                                            f"--allow_changed_settings)" if others and not args.allow_changed_settings
                                            else ""))
    if args.allow_changed_settings:
        return
    if changes:
        raise InputError(f"{checkpoint} was trained with other settings: {_listed(changes, args)}. Going on with "
                         f"them would train another model under the same run: resume with the earlier settings, "
                         f"start a new run with another --output_dir, or pass --allow_changed_settings to go on "
                         f"with the new ones (recorded in {RESUMES_FILE})")


def _reshaped(before: Mapping[str, Any], now: Mapping[str, Any], checkpoint_shape: ShapeOf
              ) -> list[tuple[str, Any, Any]]:
    """(name, old, new) of the settings that differ between ``before`` and ``now`` (`_compared_settings`) and change
    ``checkpoint_shape``: those of its keys whose shape differs and whose setting itself changed (``loss_time``
    switched off makes an unchanged ConvLSTM width moot, which is then not listed)."""
    shape_before, shape_now = checkpoint_shape(before), checkpoint_shape(now)
    return [(name, before.get(name), now.get(name)) for name in shape_now
            if shape_before.get(name) != shape_now[name] and before.get(name) != now.get(name)]


def record_run_settings(args: argparse.Namespace, parser: argparse.ArgumentParser,
                        checkpoint: Optional[Path], data_ids: Optional[Mapping[str, Collection[str]]] = None) -> None:
    """Record the settings of a run in its output folder (main process, once the run has started).

    A new run (``checkpoint`` None) writes them to ``CONFIG_FILE`` and drops the resume history of a run it
    replaces. A resumed run leaves ``CONFIG_FILE`` as its run started (in a folder without one, resuming another
    folder's checkpoint, it writes the settings that trained the checkpoint there) and appends to ``RESUMES_FILE`` the step
    and checkpoint it goes on from, its settings and those that changed (``name: [old, new]``; null when the
    run recorded none), and logs a warning naming the changes. ``data_ids`` maps each of the parser's
    ``content_settings`` to the ids of the data it gives now (as ``check_same_data`` takes them), so that the warning
    tells a path that only moved (the same content) from data changed under ``--allow_changed_settings``.
    """
    output_dir = Path(args.output_dir)
    now = recorded_settings(args, parser)
    if checkpoint is None:
        (output_dir / RESUMES_FILE).unlink(missing_ok=True)
        _write_settings(output_dir / CONFIG_FILE, now)
        return
    checkpoint = Path(checkpoint)
    saved = checkpoint_settings(checkpoint)
    changes = None if saved is None else changed_settings(saved, args, parser)
    processes = (checkpoint_processes(checkpoint), launched_processes())
    if changes is not None and processes[0] and processes[0] != processes[1]:  # (--allow_changed_settings)
        changes.append(("num_processes", *processes))
    if saved is not None and not (output_dir / CONFIG_FILE).is_file():  # another folder's checkpoint resumed
        # into a new one: the settings that trained it start this folder's record, as the warning below says
        _write_settings(output_dir / CONFIG_FILE, saved)
    same_folder = checkpoint.parent.resolve() == output_dir.resolve()
    entry = {"step": checkpoint_step(checkpoint), "checkpoint": checkpoint.name if same_folder
             else str(checkpoint.resolve()), "changed": None if changes is None else
             {name: [old, new] for name, old, new in changes}, "settings": now}
    with (output_dir / RESUMES_FILE).open("a", encoding="utf-8") as handle:
        handle.write(yaml.safe_dump(entry, sort_keys=False, explicit_start=True, allow_unicode=True))
    if changes is None:
        logger.warning(f"no settings were recorded for {checkpoint} (a run of an earlier version): they cannot be "
                       f"compared with this run's, which are recorded in {output_dir / RESUMES_FILE}")
    elif changes:
        # without the flag a change got here only as a path to the same content (`check_same_data`), not forced;
        # with it, a path that only moved still is the same content (it was said to be accepted with the flag)
        accepted = [name for name, _, _ in changes if changes_what_is_trained(name, args)]
        same = [name for name in accepted if not args.allow_changed_settings
                or _same_content(checkpoint, parser, name, (data_ids or {}).get(name, ()))]
        forced = [name for name in accepted if name not in same]
        notes = ([f"{', '.join(forced)} accepted with --allow_changed_settings"] if forced else []) + (
            [f"{', '.join(same)}: the same content the run started on"] if same else [])
        noted = f" ({'; '.join(notes)})" if notes else ""
        logger.warning(f"resuming {checkpoint} with changed settings: {_listed(changes, args)}{noted}; recorded in "
                       f"{output_dir / RESUMES_FILE} ({CONFIG_FILE} keeps those the run started with)")


def _same_content(checkpoint: Path, parser: argparse.ArgumentParser, name: str, data_ids: Collection[str]) -> bool:
    """Whether setting ``name`` gives the content the run that saved ``checkpoint`` started on: one of the parser's
    ``content_settings`` whose record beside the checkpoint holds one of ``data_ids`` (`check_same_data`)."""
    record = getattr(parser, "content_settings", {}).get(name)
    return record is not None and (checkpoint.parent / record).is_file() and \
        _read_record(checkpoint.parent / record) in data_ids


def check_same_data(checkpoint: Optional[Path], record_name: str, data_id: str, change: str, allowed: bool,
                    also: Collection[str] = ()) -> None:
    """``InputError`` when the run that saved ``checkpoint`` started on other data than ``data_id`` (its record
    ``record_name`` beside the checkpoint differs, and from each of ``also``: the ids earlier versions recorded of
    the same data) and ``allowed`` (``--allow_changed_settings``) is false: a data folder or teacher cache changed
    under a paused run would go on with other clips at every step. ``change`` says what changed, for the message
    (``--train_data DIR changed since this run started``). A run without a record (a new one, or one of an earlier
    version) passes."""
    record = Path(checkpoint).parent / record_name if checkpoint is not None else None
    if record is not None and record.is_file() and _read_record(record) not in (data_id, *also) \
            and not allowed:
        raise InputError(f"{change}: going on would train on other clips or targets; resume with the data it started "
                         f"on, start a new --output_dir, or pass --allow_changed_settings")


def record_data_id(output_dir: Path, checkpoint: Optional[Path], record_name: str, data_id: Optional[str]) -> None:
    """Keep ``data_id`` (None: nothing to record) in ``output_dir / record_name`` for ``check_same_data`` (main
    process, once the run has started): a new run writes it; a resume keeps the record of its start (or copies that
    of the folder it goes on from), unless its data differs, which ``--allow_changed_settings`` let through: the run
    goes on with that data, and the next resume compares with it."""
    record = Path(output_dir) / record_name
    if checkpoint is None:
        record.unlink(missing_ok=True)
    elif from_elsewhere(checkpoint, output_dir):  # gone on from another folder's run
        record.unlink(missing_ok=True)  # (another run's, if any)
        if (Path(checkpoint).parent / record_name).is_file():
            shutil.copyfile(Path(checkpoint).parent / record_name, record)
    if data_id is not None and (checkpoint is None or record.is_file()) and (
            not record.is_file() or _read_record(record) != data_id):
        record.write_text(data_id + "\n", encoding="utf-8")


def _read_record(record: Path) -> str:
    """The data id in ``record`` ("" when it is not text: damaged, and so another run's data; a UnicodeDecodeError
    traceback on resume before: review)."""
    try:
        return record.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return ""


#: A SIGTERM this soon after the first Ctrl-C is the same request passed on: ``accelerate launch`` (1.16) answers
#: Ctrl-C by terminating its training process at once, then kills it 5 s later.
LAUNCHER_ECHO_SECONDS = 2.0


class StopRequest:
    """Ctrl-C or SIGTERM during training, turned into a clean stop at the end of an optimizer step.

    The first signal only sets `requested`; the loop calls `agreed` after every optimizer step (where
    model, optimizer and schedule are consistent) and, when it is True, saves a checkpoint and stops.
    A second signal stops at once (KeyboardInterrupt). Under several processes `agreed` is the
    maximum over them, so all stop at the same step (a save needs them all). Use as a context
    manager; outside the main thread (no signal handlers) it never stops anything. ``announce``: whether
    this process says so on stderr; Ctrl-C reaches every process of a run, so only the main one does.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True) -> None:
        self.requested, self._since = False, 0.0
        self.signum = signal.SIGINT  # the first stop request's signal: the exit status is 128 + it
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a DataLoader worker forked with the handler: Ctrl-C reaches it too, and
            return  # each printed the notice (the training process stops the run, and its workers with it)
        if self.requested and signum == signal.SIGTERM and time.monotonic() - self._since < LAUNCHER_ECHO_SECONDS:
            return  # the launcher passing on the same Ctrl-C (accelerate 1.16 terminates its child at once)
        if self.requested:  # stop at once, with the first request's status (143 for SIGTERM, SIGTERM; it was 130)
            from .interrupts import request_interrupt

            request_interrupt(self.signum)  # (raises KeyboardInterrupt)
        self.requested, self._since, self.signum = True, time.monotonic(), signum
        if self.announce:
            print("\nstopping after this step and saving a checkpoint (at the last step: the final model, as "
                  "usual; press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def agreed(self, accelerator: Any) -> bool:
        """Whether any process was asked to stop (a collective call: every process must make it)."""
        if accelerator.num_processes == 1:
            return self.requested
        import torch

        flag = torch.tensor([float(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)

    def checkpoint_or_stop(self, accelerator: Any, output_dir: Path, step: int, max_steps: int, every: Optional[int],
                           limit: Optional[int], progress: Any) -> None:
        """After optimizer step ``step`` (every process): save ``checkpoint-<step>`` every ``every`` steps (None:
        never on a schedule),
        and on a stop request (`agreed`) before the last step, which finishes as usual, save it, close the
        ``progress`` bar, say how to go on and exit with 128 + the signal (130: Ctrl-C). A request that comes
        during a scheduled save stops the run right after that save."""
        stopping = self.agreed(accelerator) and step < max_steps
        if (every is not None and step % every == 0) or stopping:
            save_checkpoint(accelerator, output_dir, step, limit)
            stopping = stopping or (self.agreed(accelerator) and step < max_steps)
        if stopping:
            progress.close()
            accelerator.print(stopped_message(output_dir, step))
            accelerator.end_training()
            sys.exit(128 + self.signum)  # 130 for Ctrl-C, 143 for SIGTERM


def data_worker_init(worker_id: int) -> None:
    """A training ``DataLoader``'s ``worker_init_fn``: `ignore_stop_signals`, and warnings shown as one line as
    ``run_script`` shows them (a worker started by spawn or forkserver, not fork, has Python's own
    ``showwarning``; its ``sys.argv`` is the script's)."""
    ignore_stop_signals(worker_id)
    warnings.showwarning = warning_lines(f"{process_prefix()}{Path(sys.argv[0]).name}")


def ignore_stop_signals(worker_id: int) -> None:
    """A training ``DataLoader``'s ``worker_init_fn``: Ctrl-C and SIGTERM ignored in its workers, which the training
    process stops itself (after the step it stops at). ``accelerate launch`` passes Ctrl-C on as SIGTERM to every
    process below it, the workers too, and a worker killed by it failed the step with torch's "DataLoader worker
    (pid N) is killed by signal: Terminated" traceback instead of the clean stop with a checkpoint."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


class StepLosses:
    """What an optimizer step logs: each value averaged over the step's micro-batches
    (``--gradient_accumulation_steps``) and over the processes. ``add`` after every micro-batch keeps the local
    values (no collective call); ``means``, once the optimizer stepped, reduces them and starts the next step.
    ``summed``: names of values counted rather than averaged (clips the data loader skipped). distill_student logged
    its last micro-batch's losses alone, and froze the time-distillation ConvLSTM on them."""

    def __init__(self, summed: Collection[str] = ()) -> None:
        self.summed = frozenset(summed)
        self._values: dict[str, list[Any]] = {}

    def add(self, values: Mapping[str, Any]) -> None:
        """One micro-batch's values: scalar tensors."""
        for name, value in values.items():
            self._values.setdefault(name, []).append(value.detach().float())

    def means(self, accelerator: Any) -> dict[str, float]:
        """The step's values by name (a collective call: every process must make it)."""
        import torch

        reduced: dict[str, float] = {}
        for reduction in ("mean", "sum"):  # one collective call (and one device sync) per kind, not one per value
            names = [name for name in self._values if (name in self.summed) == (reduction == "sum")]
            if names:
                local = torch.stack([torch.stack(self._values[name]).sum() if reduction == "sum" else
                                     torch.stack(self._values[name]).mean() for name in names])  # (len(names),)
                reduced.update(zip(names, accelerator.reduce(local, reduction).tolist()))
        logs = {name: reduced[name] for name in self._values}  # in the order they were added
        self._values = {}
        return logs


def stopped_message(output_dir: Path, step: int) -> str:
    """What a run stopped by `StopRequest` prints: where its state is and how to go on."""
    return (f"stopped at step {step}; saved {Path(output_dir) / f'{CHECKPOINT_PREFIX}{step}'}. Go on with the same "
            f"command plus --resume_from_checkpoint latest")


def tracker_init_kwargs(checkpoint: Optional[Path]) -> dict[str, dict[str, Any]]:
    """``init_kwargs`` for ``accelerator.init_trackers``: a run resumed from the checkpoint at step N has
    TensorBoard drop the events of steps after N that the stopped run wrote (``SummaryWriter``'s ``purge_step``),
    so that its curves do not show two values for those steps. A new run: none."""
    return {} if checkpoint is None else {"tensorboard": {"purge_step": checkpoint_step(checkpoint) + 1}}


@contextmanager
def final_model_save() -> Iterator[None]:
    """Around a training script's save of its final model: a full disk there (``OutputError`` with the errno)
    also says how to finish the run, as a checkpoint's failed save does (it said only that the folder was left as
    it was, and the same command was then refused: the folder holds a run)."""
    from .errors import OutputError

    try:
        yield
    except OutputError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        raise write_failed(f"{error}: free some space, then run it again with --resume_from_checkpoint latest (it "
                           f"goes on from the newest checkpoint, if any)", error) from None


def record_final_step(output_dir: Path, step: int) -> None:
    """Note, after a run wrote its final model to ``output_dir``, the step it was written at (``finished_from``)."""
    write_text_atomic(Path(output_dir) / FINAL_STEP_FILE, f"{step}\n")


def finished_from(checkpoint: Path) -> bool:
    """Whether the run folder of ``checkpoint`` holds the final model written at its step (``FINAL_STEP_FILE``),
    whole: a finished run, which resuming from that checkpoint would only write again. A model of another step (an
    earlier end of a run that went on and was stopped, or a later one), or one with a part missing or damaged (a
    component folder deleted: "nothing to train" left it so), is not that."""
    from .model_folder import check_pipeline_folder

    folder = Path(checkpoint).parent
    try:
        step = int((folder / FINAL_STEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none (stopped before the model, or a run of an earlier version)
        return False
    if step != checkpoint_step(checkpoint):
        return False
    try:
        check_pipeline_folder(folder, "trained", "")
    except (StarVSRError, OSError):  # (a part that cannot be read: not finished either)
        return False
    return True


def resuming_message(checkpoint: Path, output_dir: Path) -> str:
    """What a resumed run prints: the checkpoint it goes on from and, when ``output_dir`` holds it and later ones
    (a resume from an earlier checkpoint), that those belong to the branch it leaves: ``latest`` still finds them
    until this run's first save replaces them (``save_checkpoint``). Another folder's checkpoints stay as they are."""
    checkpoint = Path(checkpoint)
    later = [folder.name for folder in checkpoint_folders(checkpoint.parent)
             if not from_elsewhere(checkpoint, output_dir) and checkpoint_step(folder) > checkpoint_step(checkpoint)]
    if not later:
        return f"resuming from {checkpoint}"
    verb = "is" if len(later) == 1 else "are"
    return (f"resuming from {checkpoint}; the later {', '.join(later)} of this folder {verb} left behind: deleted "
            f"at this run's first checkpoint, and until then what `latest` would resume (their logged steps are "
            f"dropped now)")


def finishing_message(checkpoint: Path, max_train_steps: int) -> str:
    """What a run resumed from a checkpoint at its last step prints: a run stopped (killed, out of disk) after
    saving that checkpoint but before writing its final model only writes the model from it."""
    return (f"{checkpoint} is at the last step (--max_train_steps {max_train_steps}): no steps left to train; "
            f"writing the final model from it")


def check_number(args: argparse.Namespace, name: str, low: float, high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False, optional: bool = False) -> None:
    """``InputError`` naming ``--name`` unless that setting is a finite number in the range from ``low`` to
    ``high`` (ends included unless ``low_open`` / ``high_open``); None passes when ``optional``. NaN fails every
    comparison, so a bare ``value < 0`` check let it through (a NaN loss weight trained on a NaN loss)."""
    value = getattr(args, name)
    if value is None and optional:
        return
    fits = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (low < value if low_open else low <= value) and (value < high if high_open else value <= high))
    if not fits:
        def shown(bound: float) -> str:  # 4294967295, not 4.29497e+09
            return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

        if high == math.inf:
            wanted = f"a finite number {'>' if low_open else '>='} {shown(low)}"
        else:
            wanted = f"in {'(' if low_open else '['}{shown(low)}, {shown(high)}{')' if high_open else ']'}"
        raise InputError(f"--{name} must be {wanted}{' or null' if optional else ''}, got {value!r}")


#: The folder in which each training script's checkpoints hold its model (its save hook writes it there): a
#: checkpoint without the running script's folder was saved by another script, or is incomplete.
CHECKPOINT_MODEL_FOLDERS = {"controlnet": "training/train_star.py", "student": "training/distill_student.py"}


def check_overwritten_run_is_this_scripts(output_dir: Path, model_folder: str) -> None:
    """``InputError`` when ``output_dir`` holds a run of the other training script (its checkpoints' or final
    model's ``CHECKPOINT_MODEL_FOLDERS`` folder), which this script cannot go on from (it was told to) and
    ``--overwrite_output_dir`` would replace only in part: it
    deletes what this script's runs write, and the other's step log, validation images and TensorBoard events
    stayed among this run's."""
    def holds(place: Path, folder: str) -> bool:  # a checkpoint's model folder, or a saved model's (an empty
        # controlnet/ of the user's is no run: ``check_output_dir`` says what it is)
        return (place / folder).is_dir() if place != output_dir else (place / folder / "config.json").is_file()

    places = [output_dir, *checkpoint_folders(output_dir)] if output_dir.is_dir() else []
    others = {script for folder, script in CHECKPOINT_MODEL_FOLDERS.items()
              if folder != model_folder and any(holds(place, folder) for place in places)}
    if others:
        raise InputError(f"{output_dir} holds a run of {sorted(others)[0]}, which "
                         f"{CHECKPOINT_MODEL_FOLDERS[model_folder]} cannot go on from; --overwrite_output_dir replaces "
                         f"runs of {CHECKPOINT_MODEL_FOLDERS[model_folder]} only (the other script's logs and "
                         f"validation images would stay among this run's): choose another --output_dir, or delete "
                         f"that one")


def check_run_settings(args: argparse.Namespace, parser: argparse.ArgumentParser,
                       model_folder: Optional[str] = None, checkpoint_shape: Optional[ShapeOf] = None) -> None:
    """``InputError`` for settings both training scripts share that cannot work: the learning rate and
    warm-up, how often to save and validate, fp16 without a GPU, a ``--logging_dir`` where a file is, an output
    folder holding another run (``check_output_dir``) or inputs that ``--overwrite_output_dir`` would delete
    (``check_overwrite_keeps_inputs``), a checkpoint to resume that is past ``max_train_steps`` (one at it only
    writes the final model: ``finishing_message``), one another script saved (without the script's
    ``model_folder``, a key of ``CHECKPOINT_MODEL_FOLDERS``), or one trained with settings that change what is
    trained (``check_resumed_settings``; ``parser`` as ``changed_settings`` needs it; ``checkpoint_shape``: what of
    the settings shapes a checkpoint, which no flag lets change). Fills in ``--mixed_precision`` from the launcher
    when it is not given (``launcher_precision``)."""
    import torch

    check_number(args, "learning_rate", 0, low_open=True)
    check_number(args, "lr_warmup_steps", 0)
    if args.lr_scheduler == "constant" and args.lr_warmup_steps:  # get_scheduler ignores it without a word
        raise InputError(f"--lr_scheduler constant has no warm-up, so --lr_warmup_steps {args.lr_warmup_steps} "
                         f"would be ignored: use --lr_scheduler constant_with_warmup, or --lr_warmup_steps 0")
    if args.lr_warmup_steps and args.lr_warmup_steps >= args.max_train_steps and is_first_process():  # (without a
        # word; a note, not an error: a smoke test of a full config, --max_train_steps 4, is one)
        print(f"note: --lr_warmup_steps {args.lr_warmup_steps} is not less than --max_train_steps "
              f"{args.max_train_steps}: the learning rate never leaves its warm-up (lower --lr_warmup_steps for a "
              f"real run; a few percent of it is usual)", file=sys.stderr)
    check_number(args, "adam_beta1", 0, 1, high_open=True)
    check_number(args, "adam_beta2", 0, 1, high_open=True)
    check_number(args, "adam_weight_decay", 0)
    check_number(args, "adam_epsilon", 0, low_open=True)
    check_number(args, "max_grad_norm", 0)  # 0: no clipping
    check_number(args, "dataloader_num_workers", 0)
    check_number(args, "checkpoints_total_limit", 1, optional=True)  # 0 deleted every checkpoint, the last one too
    # 0 failed after the first step (modulo by zero), losing the run; none: no scheduled checkpoints
    check_number(args, "checkpointing_steps", 1, optional=True)
    check_number(args, "validation_steps", 0)  # 0: never
    check_number(args, "seed", 0, 2 ** 32 - 1)  # what torch and NumPy seed with (Accelerate's set_seed refused it)
    args.mixed_precision = launcher_precision(args.mixed_precision)
    if getattr(args, "report_to", "none") != "none" and getattr(args, "logging_dir", None) is not None:  # a file
        # where the TensorBoard folder goes: a traceback from every process once training had set up (black-box hunt)
        logs = Path(args.output_dir, args.logging_dir)
        blocker = next((p for p in (logs, *logs.parents) if p.exists() or p.is_symlink()), None)
        if blocker is not None and not blocker.is_dir():
            what = "a link to nothing" if blocker.is_symlink() and not blocker.exists() else "a file"
            raise InputError(f"--logging_dir {args.logging_dir}: {blocker} is {what}, where the TensorBoard folder "
                             f"would go; choose another --logging_dir")
    note_one_process_of_several("the training")
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available() or (
        hasattr(torch, "xpu") and torch.xpu.is_available())
    if args.mixed_precision == "fp16" and not has_gpu:
        raise InputError("--mixed_precision fp16 needs a GPU; on the CPU use bf16 or no")
    if model_folder is not None and (args.overwrite_output_dir or args.resume_from_checkpoint is None):
        # (before the generic "holds a run; go on with --resume_from_checkpoint latest", which was then refused)
        check_overwritten_run_is_this_scripts(Path(args.output_dir), model_folder)
    check_output_dir(args.output_dir, args.resume_from_checkpoint, args.overwrite_output_dir)
    if is_first_process() and Path(args.output_dir).is_dir():  # another run writing it: refused now, before this
        # one reads its checkpoints (as they are pruned); the run locks the folder once it is made
        with folder_lock(Path(args.output_dir), Path(args.output_dir)):
            pass
    resume = resume_checkpoint(args.output_dir, args.resume_from_checkpoint)
    if resume is not None:
        if model_folder is not None and not (resume / model_folder).is_dir():
            # (was a list of every setting as "changed", or a missing-file error from the loading hook)
            saved_by = [script for folder, script in CHECKPOINT_MODEL_FOLDERS.items() if (resume / folder).is_dir()]
            if not saved_by:  # this script's checkpoint, copied in part
                raise damaged_checkpoint(resume, f"its {model_folder}/ folder is missing")
            raise InputError(f"{resume} is no checkpoint of {CHECKPOINT_MODEL_FOLDERS[model_folder]}: {saved_by[0]} "
                             f"saved it; resume a checkpoint of this script, or start a new run")
        if checkpoint_step(resume) > args.max_train_steps:
            raise InputError(f"{resume} is at step {checkpoint_step(resume)}, past --max_train_steps "
                             f"{args.max_train_steps}: nothing to train (raise --max_train_steps to train on)")
        if checkpoint_step(resume) == args.max_train_steps and finished_from(resume):
            raise InputError(f"{resume} is at the last step (--max_train_steps {args.max_train_steps}) and the run "
                             f"wrote its final model after it: nothing to train (raise --max_train_steps to train on)")
        check_resumed_settings(args, parser, resume, checkpoint_shape)
        # damaged (a kill during an append): refused now, on every process and before any model is loaded, not
        # appended to and then left out of every checkpoint this run saves (``save_checkpoint`` reads it); a run
        # that replaces the one there (another folder's checkpoint, --overwrite_output_dir) deletes it
        if not (from_elsewhere(resume, Path(args.output_dir)) and args.overwrite_output_dir):
            _read_settings(Path(args.output_dir) / RESUMES_FILE)
    check_overwrite_keeps_inputs(args, parser)
