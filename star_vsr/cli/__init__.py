"""The ``star-vsr`` command line.

Each sub-command lives in its own module with ``register(subparsers)`` (adds its parser and sets
``func``) and imports heavy libraries only inside its ``run`` function, so ``--help`` stays fast.
Errors meant for the user (``StarVSRError``) print one clear line and exit with status 2; an
operating-system error that escapes (a disk that fills up mid-way, ...) prints one line and exits
with status 1. Warnings print as one line each, without Python's source line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Optional, Sequence

from .. import __version__
from ..errors import StarVSRError, explain_out_of_memory

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = ("upscale", "degrade", "evaluate", "info", "convert", "benchmark", "export", "distill", "demo")
#: Commands that load model folders: diffusers' "Loading pipeline components" bar is switched off for
#: them (``benchmark`` does it itself, after setting the OpenMP policy: importing diffusers loads torch).
MODEL_COMMANDS = ("upscale", "upscale-batch", "export", "distill", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star-vsr",
        description="Real-world video super-resolution: a STAR diffusion model and a fast distilled student.",
    )
    parser.add_argument("--version", action="version", version=f"star-vsr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()  # imports no torch, transformers or diffusers: the settings below still apply
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    # OpenMP threads (PyTorch, ncnn) spin while waiting by default; on a shared or busy CPU that
    # tripled the student's step time in our measurements. Must be set before torch loads.
    # `benchmark` sets it from its own --omp-wait-policy.
    if args.command != "benchmark":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # transformers' "Loading weights" bar on every model load is noise next to our own progress bars
    # (read when transformers loads, so before any command imports it)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.command in MODEL_COMMANDS:
        quiet_model_loading()
    # `kill`, `docker stop` and job schedulers send SIGTERM: stop as after Ctrl-C (temporary files removed,
    # a resumable upscale says what it saved)
    terminate = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    show_warning = warnings.showwarning
    warnings.showwarning = lambda message, *_, **__: _print_above_bars(f"star-vsr {args.command}: warning: {message}")
    try:
        with explain_out_of_memory(f"running star-vsr {args.command}", "try a shorter or smaller input, or a "
                                   "machine with more memory"):  # the pipelines give advice of their own
            result = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
    except StarVSRError as error:
        print(f"star-vsr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"star-vsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout piped into a program that stopped reading (`| head`)
        _silence_stdout()
        return 1
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"star-vsr {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:  # FFmpeg (PyAV) failing where star-vsr did not expect it: one line too
        if not type(error).__module__.startswith("av."):
            raise
        print(f"star-vsr {args.command}: error: FFmpeg failed: {error}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show_warning
        if terminate is not None:
            signal.signal(signal.SIGTERM, terminate)
    return int(result or 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def quiet_model_loading() -> None:
    """No diffusers "Loading pipeline components" bar (our commands draw their own progress)."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()


def _print_above_bars(line: str) -> None:
    """One line on stderr, above any progress bar that is being drawn (not into it)."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's flush at exit does not raise again (Python's docs on SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. captured by a test)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
