"""Ctrl-C and SIGTERM in long jobs: a flag that survives a lost KeyboardInterrupt, and holding interrupts back.

The CLI installs ``request_interrupt`` for both signals. It raises KeyboardInterrupt as Python's own handler
does, and also sets a flag: a KeyboardInterrupt raised while a destructor runs (garbage collection can run one
anywhere) is printed as "Exception ignored in ... KeyboardInterrupt" and lost, and the job would go on to the
end. Long jobs call ``raise_if_interrupted`` between units of work, and the CLI reads the flag when a command
returns. Light on purpose (no torch): the CLI imports it before any command loads its libraries.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: Whether Ctrl-C or SIGTERM arrived (``request_interrupt``) since the last ``clear_interrupt``.
_interrupt_requested = False

#: The first of those signals (also when ``interrupts_held`` caught it), for the exit status; None if none came.
_last_signal: int | None = None


def request_interrupt(signum: int = signal.SIGINT, frame: object = None) -> None:
    """Signal handler: remember the interrupt and raise KeyboardInterrupt."""
    global _interrupt_requested
    _interrupt_requested = True
    _remember_signal(signum)
    raise KeyboardInterrupt


def _remember_signal(signum: int) -> None:
    """Keep the first signal: it decides the exit status (a Ctrl-C while a SIGTERM's stop saves changes nothing)."""
    global _last_signal
    if _last_signal is None:
        _last_signal = signum


def interrupted_exit_status() -> int:
    """The shell's status for a command stopped by the last signal: 128 + its number (130 for Ctrl-C, 143 for
    SIGTERM, which process managers and schedulers tell apart); 130 when none was recorded."""
    return 128 + (signal.SIGINT if _last_signal is None else _last_signal)


def interrupt_requested() -> bool:
    """Whether ``request_interrupt`` ran since the last ``clear_interrupt``."""
    return _interrupt_requested


def clear_interrupt() -> None:
    """Forget an earlier interrupt (the CLI does at the start and the end of each command)."""
    global _interrupt_requested, _last_signal
    _interrupt_requested, _last_signal = False, None


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if an interrupt arrived whose own KeyboardInterrupt was lost (see above)."""
    if _interrupt_requested:
        raise KeyboardInterrupt


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block ends, then raise KeyboardInterrupt (outside the main
    thread, where signals cannot be handled, nothing is held; an ignored signal stays ignored; under SIG_DFL, a
    held SIGTERM too is a KeyboardInterrupt: a clean stop, not the end of the process). A signal whose handler
    before the block was a caller's own (a Python function other than Python's and the CLI's, which raise
    KeyboardInterrupt) goes to that handler instead, also when the block raised: a scheduler's "finish this video,
    then stop" handler was overridden by a KeyboardInterrupt (black-box hunt). Held inside another hold, a signal
    waits for the outer block's end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) not in (signal.SIG_IGN, None)}  # None: set outside Python; left alone
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raising = [signum for signum in caught if not _callers_own(previous[signum])]
        if raising:
            _remember_signal(raising[0])
        for signum in caught:
            if _callers_own(previous[signum]):  # as Python would have called it, had the signal not been held
                previous[signum](signum, sys._getframe(0))  # type: ignore[operator]
    if raising:
        raise KeyboardInterrupt  # not lost (raised here, not in a handler); the flag stays the CLI's alone


def _callers_own(handler: object) -> bool:
    """Whether signal ``handler`` is a Python function of the caller's, not one that raises KeyboardInterrupt
    (Python's Ctrl-C handler, ``request_interrupt``) nor SIG_DFL."""
    return callable(handler) and handler not in (signal.default_int_handler, request_interrupt)
