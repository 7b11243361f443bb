"""Exceptions raised by star-vsr for problems the user can fix, and how their messages are worded.

Every message says what was wrong and what to do about it. The CLI prints these without a
traceback; anything else that escapes is a bug. A message names a setting as the caller spells it
(``option``, ``named``: ``--tile-size 512`` inside the ``star-vsr`` command, ``tile_size=512`` in Python),
and an out-of-memory error is turned into one that says what to lower (``explain_out_of_memory``).
"""

from __future__ import annotations

import errno
import functools
import inspect
import numbers
import os
import pickle
import re
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

from .units import byte_amount

Method = TypeVar("Method", bound=Callable[..., Any])


class StarVSRError(Exception):
    """Base class for errors whose message is meant for the user."""


class InputError(StarVSRError, ValueError):
    """A bad argument or input: wrong shape, unsupported scale, invalid option."""


class SavedRunError(InputError):
    """An output's saved progress (its ``.NAME.partial`` folder) cannot be used by this run: it was saved with
    other settings, or its files are damaged. The message says how to go on or start over."""


class InputChangedError(InputError):
    """The input file was replaced, cut or removed while it was being upscaled: the audio read from it at the end
    would not be the audio of the frames upscaled (`star_vsr.resume`). A batch skips that input."""


class VideoNotFoundError(StarVSRError, FileNotFoundError):
    """An input video, image folder or file does not exist."""


class CorruptVideoError(StarVSRError, ValueError):
    """A file exists but cannot be decoded (truncated, not a video, broken stream)."""


class UnsupportedVideoError(StarVSRError, ValueError):
    """A video uses a codec, container or pixel format that star-vsr cannot handle (or is a frame folder whose
    frames differ in size)."""


class MissingWeightsError(StarVSRError, FileNotFoundError):
    """Model weights are not on disk. The message says what to download and where to put it."""


class DeviceError(StarVSRError, RuntimeError):
    """A GPU-only option was requested where no GPU is available, or the device ran out of memory."""


class RanOutOfMemoryError(DeviceError):
    """Memory ran out (`explain_out_of_memory`), said with what to lower: a batch skips the input it happened on."""


class TrainingDivergedError(StarVSRError):
    """A training step's loss or gradient is not finite (a learning rate too high): the run stops before the step
    is applied or saved, with exit status 1 (a failure of the run, not of its settings)."""


class OutputBusyError(StarVSRError):
    """Another star-vsr run is writing the same output."""


class OutputError(StarVSRError, OSError):
    """An output cannot be written: a read-only or full disk, no permission, a file where a folder must be."""


#: The ``errno`` values of a write that failed for want of space (a full disk, a quota, a file-size limit): a
#: failure of the run, exit status 1, where other output errors (no permission, a file in the way) are the
#: user's settings, exit status 2.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


#: How PyTorch's file writer (``torch.save``: an optimizer's state in a checkpoint) reports a write that came up
#: short, a full disk or a file-size limit: a ``RuntimeError`` without an errno ("[enforce fail at
#: inline_container.cc:672] . unexpected pos 704 vs 598").
TORCH_SHORT_WRITE = re.compile(r"inline_container\.cc.*(unexpected pos|failed writing|file write failed)", re.DOTALL)


#: How the libraries written in Rust (safetensors, tokenizers) name the system's error of a failed write: "File too
#: large (os error 27)", in an error of their own (tokenizers': a bare ``Exception``).
RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def is_failed_write(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed: an ``OSError``, a safetensors error, a Rust library's error naming
    an OS error (`RUST_OS_ERROR`), or PyTorch's short write (`TORCH_SHORT_WRITE`)."""
    if isinstance(error, StarVSRError):  # already said (an InputError quoting a library's message)
        return isinstance(error, OSError)
    return isinstance(error, OSError) or type(error).__name__ == "SafetensorError" or (
        isinstance(error, Exception) and RUST_OS_ERROR.search(str(error)) is not None) or (
        isinstance(error, RuntimeError) and TORCH_SHORT_WRITE.search(str(error)) is not None)


def write_reason(error: Exception) -> str:
    """Why a write failed, in a few words: an ``OSError``'s own ("No space left on device"), PyTorch's short write
    said as such, else the first line of the error (a safetensors error: "Error while serializing: I/O error: ...
    (os error 28)")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, RuntimeError) and TORCH_SHORT_WRITE.search(str(error)):
        return "PyTorch wrote less than it had to: a full disk or a file-size limit"
    return first_line(error)


def write_errno(error: BaseException) -> Optional[int]:
    """The ``errno`` of a failed write: an ``OSError``'s, the one in the text of a Rust library's error ("(os error
    28)"), ENOSPC for PyTorch's short write; None when there is none."""
    found = RUST_OS_ERROR.search(str(error))
    return error.errno if isinstance(error, OSError) else int(found.group(1)) if found else \
        errno.ENOSPC if TORCH_SHORT_WRITE.search(str(error)) else None


def write_failed(message: str, error: Exception) -> OutputError:
    """``message``, about a write that failed with ``error``, as an ``OutputError`` that keeps its `write_errno`, so
    that a full disk exits with status 1 (`exit_status`)."""
    output = OutputError(message)
    output.errno = write_errno(error)
    return output


def cannot_write(path: str | os.PathLike[str], error: Exception) -> Exception:
    """``error``, from writing ``path``, as a one-line `write_failed` error. One of star-vsr's own passes
    unchanged (an ``OutputExistsError`` of a file that appeared meanwhile: already said with the file), and so does
    memory running out (`is_out_of_memory`: FFmpeg's "Resource temporarily unavailable" when its encoder could not
    start its threads), for `explain_out_of_memory` to say with what to lower."""
    if isinstance(error, StarVSRError) or is_out_of_memory(error):
        return error
    return write_failed(f"cannot write {path}: {write_reason(error)}", error)


def exit_status(error: StarVSRError) -> int:
    """The exit status of a command or training script that stops on ``error``: 1 for a full disk (the run
    failed: `DISK_FULL_ERRNOS`) and a training run that diverged, 2 for the rest (the user's settings or inputs, as
    argparse's errors)."""
    failed = isinstance(error, TrainingDivergedError) or getattr(error, "errno", None) in DISK_FULL_ERRNOS
    return 1 if failed else 2


def os_error_line(error: OSError, again: str = "run the same command again") -> str:
    """An ``OSError`` that escaped a command (not one of star-vsr's own) as one line after "error: ": the file it
    names, and for a bare "File too large" or "No space left on device" what it means and what to do, ending with
    ``again`` (a training script's: with ``--resume_from_checkpoint latest``, as the same command is refused)."""
    where = f"{error.filename}: " if error.filename else ""
    full = error.errno in DISK_FULL_ERRNOS and not error.filename  # (a bare "File too large": of what?)
    # Python's tempfile, in a library, when none of its folders takes a small file: a full disk or a file-size
    # limit as well, not a missing folder
    no_temp = "No usable temporary directory" in str(error.strerror)
    return (f"{where}{'a write failed: ' * full}{error.strerror or error}"
            + f" (a full disk or a file-size limit: free some space, then {again})" * full
            + (" (none of them could be written: a full disk or a file-size limit? Free some space or set TMPDIR "
               f"to a folder that can be written, then {again})") * no_temp)


class OutputExistsError(StarVSRError, FileExistsError):
    """An output a run was told not to replace (no ``--overwrite``) is there: before the run, or it appeared
    while the run was writing it (another run or program made it)."""


_cli_flags: Optional[frozenset[str]] = None  # the running ``star-vsr`` command's flags, inside ``cli_wording``


@contextmanager
def cli_wording(flags: Iterable[str]) -> Iterator[None]:
    """Messages made inside name command-line flags (``--restart``) where those of the Python API name its
    arguments (``restart=True``), for a command whose flags are ``flags``: the ``star-vsr`` command runs its work
    inside (see ``option``)."""
    global _cli_flags
    previous, _cli_flags = _cli_flags, frozenset(flags)
    try:
        yield
    finally:
        _cli_flags = previous


def cli_running() -> bool:
    """Whether a message is made inside ``cli_wording``: for a ``star-vsr`` command, not a Python caller."""
    return _cli_flags is not None


def option(argument: str, flag: str) -> str:
    """How a message names a setting the user can change: ``flag`` (``"--restart"``, ``"--tile-size 512"``) when
    it is made inside ``cli_wording`` and the running command has every flag it names, else the Python
    ``argument`` (``"restart=True"``), so that a command without that flag (``demo`` has no ``--restart``) does
    not advise it as a flag (``can_set`` tells whether to advise it at all)."""
    if _cli_flags is None:
        return argument
    return flag if all(word in _cli_flags for word in flag.split() if word.startswith("-")) else argument


def has_flag(flag: str) -> bool:
    """Whether the running ``star-vsr`` command has ``flag`` (``"--model"``); False in Python."""
    return _cli_flags is not None and flag in _cli_flags


def cli_advice(argument: str, flag: str) -> str:
    """``option`` for a setting only some commands have: ``flag`` in a command that has it, ``argument`` in Python,
    "" in a command without it (advice to pass ``--no-audio`` to ``degrade``, which keeps the audio, was wrong)."""
    return flag if has_flag(flag) else "" if cli_running() else argument


def again(capital: bool = False) -> str:
    """"run the same command again" on the command line, "call again" in Python: how a message says to go on."""
    words = option("call again", "run the same command again")
    return words[:1].upper() + words[1:] if capital else words


def can_set(argument: str) -> bool:
    """Whether the user can change pipeline argument ``argument`` here: always in Python, and on the command line
    where the running command has its flag (``demo`` has ``--steps`` but no ``--noise-level``)."""
    return not cli_running() or has_flag(ARGUMENT_FLAGS.get(argument, ""))


ARGUMENT_FLAGS = {"upscale": "--upscale", "seed": "--seed", "prompt": "--prompt",
                  "negative_prompt": "--negative-prompt", "num_inference_steps": "--steps",
                  "guidance_scale": "--guidance-scale",
                  "noise_level": "--noise-level", "chunk_frames": "--chunk-frames",
                  "chunk_overlap": "--chunk-overlap", "tile_size": "--tile-size", "tile_overlap": "--tile-overlap",
                  "color_fix": "--color-fix"}
"""The ``star-vsr upscale`` flag of each argument of a pipeline call that has one (``named``)."""


def restart_note() -> str:
    """"a run that saved progress then needs --restart" (``restart=True`` in Python), for advice to change a
    setting; "" in a command without ``--restart`` (benchmark and demo save no progress, and were told
    ``restart=True``)."""
    restart = cli_advice("restart=True", "--restart")
    return f"a run that saved progress then needs {restart}" if restart else ""


def named(argument: str, value: Any = None) -> str:
    """``option`` for a pipeline call's ``argument`` (``ARGUMENT_FLAGS``), with ``value`` when given:
    ``"tile_size=512"`` in Python, ``"--tile-size 512"`` on the command line; an argument without a flag is
    named as in Python everywhere."""
    python = argument if value is None else f"{argument}={value}"
    flag = ARGUMENT_FLAGS.get(argument)
    if flag is None:
        return python
    return option(python, flag if value is None else f"{flag} {value}")


def is_link_loop(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (or lies under) a link that points back to itself: ``os.stat``'s ELOOP (which
    ``Path.exists()`` reads as "does not exist", and ``Path.resolve()`` raised as a RuntimeError before Python
    3.13)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def working_directory_gone() -> Optional[str]:
    """None while the working directory exists; else what to say of it. torch cannot load there (oneMKL: "FATAL
    ERROR: Cannot load libtorch_cpu.so"), and relative paths cannot be found: ``star-vsr upscale`` said "error: No
    such file or directory" of nothing named. The shell's name for the folder (``$PWD``) is given where nothing is
    there now (a ``$PWD`` passed on by a program that changed folder since names another, existing one)."""
    try:
        os.getcwd()
        return None
    except FileNotFoundError:
        shell_name = os.environ.get("PWD")
        named = f" ({shell_name})" if shell_name and not os.path.exists(shell_name) else ""
        return (f"the current directory{named} no longer exists (deleted, moved or unmounted); cd to an existing "
                f"directory and run the command again")


def why_missing(path: str | os.PathLike[str]) -> str:
    """How a message says that nothing is at ``path`` (when ``Path.exists()`` says so): "does not exist", or, for
    a link, "is a link to TARGET, which does not exist" (a moved file, an unmounted disk) or "is (inside) a link that
    points back to itself" (it said "does not exist" of a path the user can see with ``ls``)."""
    if is_link_loop(path):
        return "is a link that points back to itself" if os.path.islink(path) else \
            "is inside a link that points back to itself"
    if os.path.islink(path):
        return f"is a link to {os.readlink(path)}, which does not exist"
    return "does not exist"


def check_whole_number(name: str, value: Any, low: int) -> None:
    """``InputError`` unless ``value`` is a whole number >= ``low``: an integer (NumPy's too) or a float without a
    fraction (``4.0``, as YAML and JSON may give it); ``1.9`` is refused, not truncated, and True is no number."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < low:
        raise InputError(f"{name} must be a whole number >= {low}, got {value!r}")


def check_real_number(name: str, value: Any, low: float, high: float = float("inf")) -> float:
    """``value`` as a float, or ``InputError`` unless it is a finite real number (NumPy's too) in [``low``,
    ``high``]: a string ("0.5", as a hand-written config may give it) was a ``TypeError`` at a comparison, True is
    no number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high \
            or value != value or value in (float("inf"), float("-inf")):
        bounds = f"from {low:g} to {high:g}" if high != float("inf") else f">= {low:g}"
        raise InputError(f"{name} must be a finite number {bounds}, got {value!r}")
    return float(value)


def check_true_or_false(name: str, value: Any) -> bool:
    """``value`` as a bool, or ``InputError`` unless it is True or False (NumPy's too): any other value was taken by
    its truth, "no" as True."""
    if not (isinstance(value, bool) or type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_generator(generator: Any) -> Any:
    """``generator`` as one ``torch.Generator`` or None: diffusers' one-per-video list of one is unpacked; anything
    else is an ``InputError`` (both pipelines take the same values, so code can call either with them)."""
    import torch

    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        generator = generator[0]  # diffusers' one-generator-per-video list, for our one video
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be a torch.Generator (torch.Generator().manual_seed(0)) or a list of "
                         f"one, got {generator!r}")
    return generator


#: An ``OSError`` with ENOMEM is memory running out; one of FFmpeg's (PyAV's ``av.error``) with EAGAIN too: its codec
#: threads could not start (e.g. under ``ulimit -v``: their stacks did not fit). Not a failed write. (Python's own
#: EAGAIN is other things: a full non-blocking pipe, a process limit.)
MEMORY_ERRNOS = frozenset({errno.ENOMEM, errno.EAGAIN})


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is running out of memory: ``torch.OutOfMemoryError`` (CUDA, XPU), the CPU
    allocator's "can't allocate memory" and the "out of memory" ``RuntimeError`` of other backends, C++'s
    ``std::bad_alloc`` (a model built under ``ulimit -v``), Python's ``MemoryError`` (also raised by PyAV and
    safetensors), the ``OSError`` errors of `MEMORY_ERRNOS`, OpenCV's "Insufficient memory" ``cv2.error`` (a resize
    of a huge frame), and a ``RuntimeError`` raised from one of these
    (diffusers' lazy import wraps a ``MemoryError`` in "Failed to import ..."): `memory_error`."""
    return memory_error(error) is not None


def memory_error(error: BaseException) -> Optional[BaseException]:
    """The error that says memory ran out: ``error`` itself, or the one a ``RuntimeError`` was raised from (its
    ``__cause__`` chain, each error once), whose message has the details (`memory_amount`); None when none does.
    A library's ``ImportError`` "failed to map segment from shared object" is memory too (under ``ulimit -v``,
    diffusers' lazy import of scipy wrapped it in a RuntimeError: a traceback)."""
    seen = set()
    while error is not None and id(error) not in seen and not isinstance(error, StarVSRError):  # (explained)
        seen.add(id(error))
        if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
            return error
        if isinstance(error, OSError):
            ran_out = error.errno == errno.ENOMEM or (error.errno in MEMORY_ERRNOS
                                                      and type(error).__module__ == "av.error")
            return error if ran_out else None
        if isinstance(error, ImportError):  # the loader could not map a library into memory (its ENOMEM)
            return error if "failed to map segment from shared object" in str(error) else None
        if type(error).__module__ == "cv2" and type(error).__name__ == "error":  # OpenCV's, code -4 "Insufficient
            return error if getattr(error, "code", None) == -4 else None  # memory" (a traceback: black-box hunt)
        if not isinstance(error, RuntimeError):
            return None
        message = str(error).lower()
        if ("can't allocate memory" in message or "out of memory" in message or "std::bad_alloc" in message
                or _is_onednn_refusal(message)):
            return error
        error = error.__cause__
    return None


#: Messages of torch.load / load_state_dict failures that mean a weight file is not what it should be.
DAMAGED_WEIGHTS_MESSAGES = ("PytorchStreamReader", "Error(s) in loading state_dict", "size mismatch",
                            "invalid load key", "Invalid magic number", "Weights only load failed", "Ran out of input")


def _is_unpickler_memo_error(error: BaseException) -> bool:
    """``KeyError(101)`` out of ``torch.load``: what it raises, unwrapped, for bytes that are neither its zip format
    nor a pickle (a text file "hello": "h" is the pickle opcode that reads memo entry "e", 101, never stored)."""
    return (isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], int)
            and _raised_in_torch_load(error))


def is_damaged_weights_error(error: BaseException) -> bool:
    """Whether ``error``, raised while weights were read or loaded, says a weight file is damaged or is another
    file (an unpickling error, a truncated file, tensors that do not fit, anything out of ``torch.load``), not
    that memory or the device failed."""
    if is_out_of_memory(error):
        return False
    return (isinstance(error, (pickle.UnpicklingError, EOFError))
            or any(message in str(error) for message in DAMAGED_WEIGHTS_MESSAGES)
            or _raised_in_torch_load(error))


def _raised_in_torch_load(error: BaseException) -> bool:
    """Whether ``error`` came out of ``torch.load`` reading a file: a text file where a checkpoint should be
    unpickles as garbage opcodes, e.g. ``ValueError: invalid literal for int()`` for a file starting "garbage"."""
    frames = traceback.extract_tb(error.__traceback__)
    return any(Path(frame.filename).parts[-2:] == ("torch", "serialization.py") for frame in frames)


def listed(names: Sequence[str], most: int = 3, total: Optional[int] = None) -> str:
    """``a, b, c and 2 more``: the first ``most`` of ``names`` in a message; ``total``: how many there are in all,
    when ``names`` holds only the first of them (too many to list)."""
    total = len(names) if total is None else total
    return ", ".join(names[:most]) + (f" and {total - most} more" if total > most else "")


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none), for a one-line error; a line
    ending in a colon with (the start of) the one after it ("Error(s) in loading state_dict for LPIPS:" said
    nothing of why)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
    if not lines[0].endswith(":") or len(lines) == 1:
        return lines[0]
    reason = lines[1] if len(lines[1]) <= FIRST_LINE_REASON else lines[1][:FIRST_LINE_REASON - 3] + "..."
    return f"{lines[0]} {reason}"  # (a state dict's missing keys ran to thousands of characters)


#: What `load_failure` says of a file whose bytes the unpickler cannot read at all (text, an image, another format).
NO_PICKLE = "not a PyTorch file: neither its zip format nor a pickle"


def load_failure(error: BaseException) -> str:
    """What ``torch.load(..., weights_only=True)`` failing with ``error`` found, in a line: for the safe unpickler's
    refusal what it found ("Unsupported global: GLOBAL posix.system"), not torch's advice to load the file with
    ``weights_only=False``, which runs whatever code a pickle holds; for a file the unpickler cannot read at all
    (a text file: torch.load's bare ``KeyError(101)``), that it is neither ("101" said nothing: black-box hunt);
    else ``first_line``."""
    if _is_unpickler_memo_error(error):
        return NO_PICKLE
    text = first_line(error)
    if not text.startswith("Weights only load failed"):
        return text
    message = str(error)
    if "WeightsUnpickler error:" in message:
        return message.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0].strip() or "unpickling failed"
    first = message.split("\n", 1)[0].removeprefix("Weights only load failed.").strip()
    if not first.startswith("In PyTorch"):  # "Weights only load failed. <why> ..." (a module that failed to import)
        return first.split(" Re-running `torch.load`", 1)[0] or "unpickling failed"
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", message) if part.strip()][1:]  # (after the advice)
    found = [part.splitlines()[0] for part in paragraphs if not part.startswith("Check the documentation")]
    return found[0] if found else "unpickling failed"  # ("unsupported GLOBAL posix.system whose module ...")


#: The most characters `first_line` takes of the line after one ending in a colon.
FIRST_LINE_REASON = 200


def _is_onednn_refusal(message: str) -> bool:
    """oneDNN's bare "could not create a primitive" (PyTorch's CPU convolutions): what it raises when memory runs
    out (under ``ulimit -v``) or a tensor is too large for it (pytorch issue 55884), both cured by less work per
    call. Not "could not create a primitive descriptor" (an unsupported operation)."""
    return message.strip() == "could not create a primitive"


def memory_amount(error: BaseException | str) -> str:
    """" (allocating 2.00 GiB failed)": the allocation that failed, from an out-of-memory ``error`` (or its
    message; the CPU allocator gives bytes): one allocation, not all the memory the run would need; "" when it
    says none."""
    if isinstance(error, BaseException):
        error = memory_error(error) or error  # (the "Tried to allocate" of a wrapped one)
    found = re.search(r"allocate ([\d.]+ ?[KMGT]i?B|\d+ bytes)", str(error), re.IGNORECASE)
    if found is None:
        return ""
    amount = re.sub(r"\.(?= ?[KMGT])", "", found.group(1))  # (NumPy's "Unable to allocate 187. MiB")
    if amount.endswith("bytes"):  # in the largest unit it has one of (it said "0.00 GiB" of 4 MiB)
        amount = byte_amount(int(amount.split()[0]))
    return f" (allocating {amount} failed)"


def what_ran_out(error: BaseException) -> str:
    """"out of memory", for an `is_out_of_memory` ``error``, with what else oneDNN's refusal may mean and an
    ``OSError``'s own words ("Resource temporarily unavailable": threads that could not start)."""
    error = memory_error(error) or error  # (a wrapped one's)
    if _is_onednn_refusal(str(error).lower()):
        return "out of memory, or a frame too large for oneDNN (its 'could not create a primitive')"
    return f"out of memory ({error.strerror or error})" if isinstance(error, OSError) else "out of memory"


@contextmanager
def explain_out_of_memory(doing: str, advice: str | Callable[[], str]) -> Iterator[None]:
    """Turn an out-of-memory error raised inside into a one-line ``DeviceError`` that says what ran out
    of memory and what to change (``advice``, or what ``advice()`` says when memory ran out). Works as a
    decorator too."""
    try:
        yield
    except Exception as error:  # (of any type `is_out_of_memory` knows: OpenCV's cv2.error was a traceback)
        if not is_out_of_memory(error):
            raise
        try:
            text = advice() if callable(advice) else advice
            comma = "," if _is_onednn_refusal(str(memory_error(error)).lower()) else ""  # (after its "or ...")
            message = f"{what_ran_out(error)}{comma} while {doing}{memory_amount(error)}; {text}"
        except MemoryError:  # the message's own work did not fit (under `ulimit -v`): a MemoryError traceback
            message = f"out of memory while {doing}"
        raise RanOutOfMemoryError(message) from error


def explain_out_of_memory_of_call(doing: str, advice: Callable[[Any, dict[str, Any]], str]
                                  ) -> Callable[[Method], Method]:
    """``explain_out_of_memory`` as a method decorator whose advice is written when memory runs out, by
    ``advice(self, arguments)`` from the call's arguments (defaults filled in), so that it can name the
    values this call used and smaller ones to try."""
    def decorate(method: Method) -> Method:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            def advice_for_call() -> str:
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                return advice(self, bound.arguments)

            with explain_out_of_memory(doing, advice_for_call):
                return method(self, *args, **kwargs)
        return call  # type: ignore[return-value]
    return decorate
