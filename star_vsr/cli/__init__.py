"""The ``star-vsr`` command line.

Each sub-command lives in its own module with ``register(subparsers)`` (adds its parser and sets
``func``) and imports heavy libraries only inside its ``run`` function, so ``--help`` stays fast.
Errors meant for the user (``StarVSRError``) print one clear line and exit with status 2; a disk that fills up
mid-way (named with the file where star-vsr knows it) and an operating-system error that escapes print one line
and exit with status 1. Warnings print as one line each, without Python's source line.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterable, NoReturn, Optional, Sequence, TextIO

from .. import __version__
from ..errors import (StarVSRError, cli_wording, exit_status, explain_out_of_memory, os_error_line,
                      working_directory_gone)
from ..interrupts import (clear_interrupt, interrupt_requested, interrupted_exit_status, raise_if_interrupted,
                          request_interrupt)
from ..progress import warning_lines

#: Seconds the other processes of a refused ``accelerate launch`` wait before they exit, so that the first one's
#: message is printed before the launcher ends it.
OTHER_PROCESS_EXIT_DELAY_S = 2.0
#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = ("upscale", "degrade", "evaluate", "info", "convert", "benchmark", "export", "distill", "demo")


class CommandParser(argparse.ArgumentParser):
    """The command line's parser (sub-commands get the same class): a bad flag is one line, as star-vsr's own
    errors are, not argparse's usage block of every flag above it (``upscale``'s is 15 lines)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="star-vsr",
        description="Real-world video super-resolution: a STAR diffusion model and a fast distilled student.",
    )
    parser.add_argument("--version", action="version", version=f"star-vsr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    _plain_text(parser)
    return parser


def _plain_text(parser: argparse.ArgumentParser) -> None:
    """Drop the reStructuredText literal marks (````star-vsr upscale````) of the module docstrings that serve
    as command descriptions, here and in every sub-command, so ``--help`` reads as plain text."""
    if parser.description:
        parser.description = parser.description.replace("``", "")
    for action in parser._actions:
        if action.help:
            action.help = action.help.replace("``", "")
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _plain_text(sub)


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the sub-command ``args`` runs (``distill cache-teacher``'s for it; ``parser`` for none)."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub is not None else None
        if name is None:
            return parser
        parser = sub.choices[name]


def _command_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The flags of the sub-command ``args`` runs, which its messages may advise (``star_vsr.errors.option``)."""
    return list(_command_parser(parser, args)._option_string_actions)


def main(argv: Optional[Sequence[str]] = None) -> int:
    stand_ins = _stand_in_for_closed_streams()
    try:
        return _main(argv)
    finally:
        for name, stand_in in stand_ins.items():  # (an in-process caller gets its streams back as they were)
            setattr(sys, name, None)
            stand_in.close()


def _main(argv: Optional[Sequence[str]]) -> int:
    if sys.flags.optimize >= 2:  # transformers failed to import (a traceback), and every --help lost its text
        print("star-vsr: error: Python runs with docstrings stripped (python -OO or PYTHONOPTIMIZE=2), which "
              "transformers and diffusers need, as do the commands' help texts; run it without -OO (PYTHONOPTIMIZE=1 "
              "works)", file=sys.stderr)
        return 2
    parser = build_parser()  # imports no torch, transformers or diffusers: the settings below still apply
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the sub-command's parser: it was "star-vsr: error: ... (see star-vsr --help)"
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "func", None) is None:  # no command: a usage error, status 2 as argparse's own
        parser.print_help(sys.stderr)
        return 2
    gone = working_directory_gone() if args.command != "info" else None  # (info loads no torch: absolute paths
    if gone is not None:  # work there)
        print(f"star-vsr {args.command}: error: {gone}", file=sys.stderr)
        return 1
    from ..training_run import is_first_process, launched_processes, note_one_process_of_several, process_prefix

    processes = launched_processes()  # (training_run loads no torch)
    if args.command == "upscale-batch":
        note_one_process_of_several("upscale-batch")
    if processes > 1 and args.command != "upscale-batch":  # each process would do the whole job, on one output
        if is_first_process():  # said once, not once per process
            print(f"star-vsr {args.command}: error: this command runs as one process, and accelerate launch started "
                  f"{processes} (each would do the whole job, writing the same output); run it without accelerate "
                  f"launch (upscale-batch is the command that splits its videos across processes)", file=sys.stderr)
        else:  # the launcher ends every process once one fails: one that failed first ended the first process before
            time.sleep(OTHER_PROCESS_EXIT_DELAY_S)  # it said why (a CI run lost the message)
        return 2
    # OpenMP threads (PyTorch, ncnn) spin while waiting by default; on a shared or busy CPU that
    # tripled the student's step time in our measurements. Must be set before torch loads.
    # `benchmark` sets it from its own --omp-wait-policy.
    # OpenCV prints its own "[ERROR:0@3.3] global grfmt_png.cpp ..." line for a damaged frame image before the
    # one-line error that names the file (read when cv2 loads).
    # Those the caller has not set, set for the command and removed after it (in-process callers: notebooks, tests).
    set_here = {name: value for name, value in (("OMP_WAIT_POLICY", "PASSIVE"), ("OPENCV_LOG_LEVEL", "SILENT"))
                if name not in os.environ and (name != "OMP_WAIT_POLICY" or args.command != "benchmark")}
    os.environ.update(set_here)
    # Ctrl-C, and SIGTERM from `kill`, `docker stop` and job schedulers: stop with one line (temporary files
    # removed, a resumable upscale says what it saved), also when the KeyboardInterrupt is lost (interrupts.py)
    handlers = _catch_interrupts()
    result = None
    command = " ".join(filter(None, (args.command, getattr(args, "distill_command", None))))  # "distill cache-teacher"
    me = f"{process_prefix()}star-vsr {command}"  # upscale-batch's processes each say what stopped them
    show_warning = warnings.showwarning
    warnings.showwarning = warning_lines(me)
    stopped: list[bool] = []  # the command stopped by an interrupt (one `interrupts_held` raised again sets no flag)
    unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_after_interrupt(unraisable_hook, stopped)
    stdout = sys.stdout = _ReaderSafeStream(sys.stdout)
    stderr = sys.stderr = _ReaderSafeStream(sys.stderr)  # (progress bars and notes: `2>&1 | tee log`)
    try:
        with cli_wording(_command_flags(parser, args)), \
                explain_out_of_memory(f"running star-vsr {command}",  # pipelines: their own
                                      "try a shorter or smaller input, or a machine with more memory"):
            result = args.func(args)  # its messages name flags (--restart), not Python arguments (restart=True)
        stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        raise_if_interrupted()  # an interrupt whose KeyboardInterrupt was lost after the command's last check
        if stdout.reader_gone:  # what it printed is lost: not a success, as before, but the work was all done
            return int(result or 0) or 1
    except StarVSRError as error:
        print(f"{me}: error: {error}", file=sys.stderr)
        return exit_status(error)
    except KeyboardInterrupt:
        stopped.append(True)
        done = " after the command had finished its work" if result is not None else ""
        print(f"{me}: interrupted{done}", file=sys.stderr)
        return interrupted_exit_status()  # 130 for Ctrl-C, 143 for SIGTERM
    except BrokenPipeError:  # stdout piped into a program that stopped reading (`| head`), as print() says it
        _point_at_devnull(stdout.stream)  # past the wrapper (a library's own stream)
        return 1
    except OSError as error:
        print(f"{me}: error: {os_error_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # FFmpeg (PyAV) failing where star-vsr did not expect it: one line too
        if interrupt_requested():  # a library torn by the interrupt (diffusers' lazy imports wrap it)
            stopped.append(True)
            print(f"{me}: interrupted", file=sys.stderr)
            return interrupted_exit_status()
        if isinstance(error, Warning):  # made an error by a warnings filter (PYTHONWARNINGS=error, -W error): a
            print(f"{me}: error: {error} (a warning, which the warnings filter makes an error)",  # traceback
                  file=sys.stderr)
            return 1
        if not type(error).__module__.startswith("av."):
            raise
        print(f"{me}: error: FFmpeg failed: {error}", file=sys.stderr)
        return 2
    finally:
        sys.stdout, sys.stderr = stdout.stream, stderr.stream
        warnings.showwarning = show_warning
        for name, value in set_here.items():
            if os.environ.get(name) == value:  # (not one the caller changed meanwhile)
                del os.environ[name]
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if stopped or interrupt_requested():
            try:
                gc.collect()  # what the interrupt tore, destroyed while its noise is still kept quiet
            except KeyboardInterrupt:  # a second Ctrl-C meanwhile: the command has stopped already
                pass
        sys.unraisablehook = unraisable_hook
        clear_interrupt()  # in-process callers (tests, notebooks) start the next call afresh
        _restore_model_loading_bars()  # (last: the libraries' own switches, which the rest must not wait on)
    return int(result or 0)


def console_main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``star-vsr`` program (and ``python -m star_vsr``): ``main``, then SIGINT and SIGTERM ignored while Python
    shuts down, a second or two with torch loaded. The command has finished by then, and a signal in that time
    ended the process with status 130 / 143 and no word, its output complete: a job manager recorded a failure,
    and the retry was refused because the output existed (black-box test)."""
    status = main(argv)
    if threading.current_thread() is threading.main_thread():  # ignored, not handled: Python resets its own
        for sig in (signal.SIGINT, signal.SIGTERM):  # handlers early in its finalization (a handler calling
            signal.signal(sig, signal.SIG_IGN)  # os._exit let SIGTERM through again in 6 of 10 tries); SIGKILL
    return status  # still stops a shutdown that hangs


def _catch_interrupts() -> dict[int, object]:
    """Route SIGINT and SIGTERM to ``interrupts.request_interrupt``; returns the handlers to put back. Outside
    the main thread signals cannot be handled; a signal ignored (SIG_IGN, as for a shell's background job) or
    handled outside Python stays so."""
    clear_interrupt()
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) not in (signal.SIG_IGN, None):
            handlers[sig] = signal.signal(sig, request_interrupt)
    return handlers


def _quiet_after_interrupt(hook: Callable[[Any], object], stopped: list[bool]) -> Callable[[Any], object]:
    """``sys.unraisablehook`` that passes what ``hook`` would print, except, after Ctrl-C or SIGTERM (the flag of
    ``interrupts``, or ``stopped`` not empty), the exceptions raised where Python can only print them (a
    destructor): the interrupt's own KeyboardInterrupt, lost there (the flag keeps it), and what it tore (tqdm's
    "'tqdm_asyncio' object has no attribute 'pos'" from a bar cut off in its constructor). They printed a traceback
    under "star-vsr degrade: interrupted"."""
    def quiet(unraisable: Any) -> None:
        if not (interrupt_requested() or stopped):
            hook(unraisable)

    return quiet


#: The libraries whose progress bars ``quiet_model_loading`` turned off, each with whether they were on (None: none).
_bars_were_on: Optional[dict[str, bool]] = None


def quiet_model_loading() -> None:
    """No "Loading pipeline components" (diffusers) or "Loading weights" (transformers) bar on every model load,
    noise next to our commands' own progress, until the command ends. Through the libraries' switches, which
    ``_restore_model_loading_bars`` turns back: HF_HUB_DISABLE_PROGRESS_BARS, set for that before, stays in
    huggingface_hub for good once read (a notebook that called ``main`` lost those bars; review)."""
    global _bars_were_on
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import utils as hub_utils

    transformers_logging = _transformers_logging()  # None until loaded; it then reads huggingface_hub's switch
    if _bars_were_on is None:
        _bars_were_on = {"diffusers": diffusers_logging.is_progress_bar_enabled(),
                         "huggingface_hub": not hub_utils.are_progress_bars_disabled()}
        if transformers_logging is not None:
            _bars_were_on["transformers"] = transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()


def _transformers_logging() -> Any:
    """``transformers.utils.logging`` where transformers is loaded, else None (not loaded for it: seconds)."""
    return sys.modules["transformers.utils.logging"] if "transformers.utils.logging" in sys.modules else None


def _restore_model_loading_bars() -> None:
    """The progress bars ``quiet_model_loading`` turned off, back as they were (diffusers' lost for good in a
    notebook that called ``main``: black-box hunt). transformers, loaded since, is given huggingface_hub's."""
    global _bars_were_on
    if _bars_were_on is None:
        return
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import utils as hub_utils

    transformers_logging = _transformers_logging()
    if transformers_logging is not None and _bars_were_on.get("transformers", _bars_were_on["huggingface_hub"]):
        transformers_logging.enable_progress_bar()  # (which turns huggingface_hub's on too: set below)
    if _bars_were_on["huggingface_hub"]:
        hub_utils.enable_progress_bars()
    else:
        hub_utils.disable_progress_bars()
    if _bars_were_on["diffusers"]:
        diffusers_logging.enable_progress_bar()
    _bars_were_on = None


def _stand_in_for_closed_streams() -> dict[str, TextIO]:
    """/dev/null as ``sys.stdout`` / ``sys.stderr`` where Python has None (``>&-``, ``2>&-``; every command failed on
    its first line or progress bar: black-box hunt), on the stream's own file descriptor when that is closed (else
    the next file opened, an input or an output, took descriptor 1 or 2, which FFmpeg and torch write their own
    messages to: review). Returns the stand-ins by name."""
    stand_ins = {}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)  # open (a caller's None over a live descriptor): left alone
            stand_in = open(os.devnull, "w")
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            stand_in = open(fd, "w", closefd=False)
        stand_ins[name] = stand_in
        setattr(sys, name, stand_in)
    return stand_ins


class _ReaderSafeStream:
    """``sys.stdout`` or ``sys.stderr`` while a command runs: once its reader has stopped reading (``| head``, a
    ``tee`` that ended, ``EIO`` from a terminal that hung up), what is written is dropped (``reader_gone``) and the
    command goes on. A ``BrokenPipeError`` out of the first "wrote ..." line (or progress bar, ``2>&1 | tee``)
    ended upscale-batch and degrade FOLDER after one video, without a word (black-box hunt, review). Text the
    stream cannot encode (a file name that is no UTF-8) is written with backslash escapes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.reader_gone = stream, False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                try:
                    return self.stream.write(text)
                except UnicodeEncodeError:  # a file name that is no UTF-8 (its bytes kept as surrogates), on a
                    encoding = getattr(self.stream, "encoding", None) or "utf-8"  # stdout that refuses them
                    return self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            except OSError as error:
                self._gone_or_raise(error)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except OSError as error:
                self._gone_or_raise(error)

    def _gone_or_raise(self, error: OSError) -> None:
        if not isinstance(error, BrokenPipeError) and error.errno != errno.EIO:  # (a full disk: the error)
            raise error
        self.reader_gone = True
        _point_at_devnull(self.stream)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's
        return getattr(self.stream, name)


def _point_at_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that Python's flush at exit does not raise again
    (Python's docs on SIGPIPE)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured by a test)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
