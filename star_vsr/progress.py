"""Progress bars that suit where they are drawn.

On a terminal, tqdm redraws its bar in place up to ten times a second. Into a log file (stderr redirected:
``nohup``, a job scheduler, ``2> log.txt``) every redraw is a carriage return and a line of Unicode blocks, so a
two-hour upscale wrote one "line" of megabytes. `bar_options` gives tqdm's keyword arguments for the current
stderr: nothing to change on a terminal; elsewhere one plain ASCII line every `LOG_INTERVAL_S` seconds, each
ending in a newline, and the bar's last state when it closes.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, TextIO

LOG_INTERVAL_S = 30.0
"""Seconds between progress lines written to a file or pipe."""


_TERMINAL_CODES = re.compile(r"\r|\x1b\[[0-9;]*[A-Za-z]")
"""Carriage returns and ANSI escapes: tqdm moves the cursor up to redraw a second bar (a nested one)."""


class _LineStream:
    """Turns tqdm's in-place redraws (``"\\rdesc: 40%|####  | 4/10 ..."``) into whole lines on ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = _TERMINAL_CODES.sub("", text).rstrip()
        if line:  # the redraw itself; tqdm's clearing writes (spaces, a bare newline) are dropped
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def bar_options(stream: TextIO | None = None) -> dict[str, Any]:
    """Keyword arguments for ``tqdm(...)`` (or diffusers' ``set_progress_bar_config``) drawing on ``stream``
    (default: ``sys.stderr`` as it is now): {} on a terminal, else a line every `LOG_INTERVAL_S` seconds."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or "ipykernel" in sys.modules:  # a notebook draws its own widget
        return {}
    # miniters=1: tqdm's monitor thread otherwise forces a line every 10 s (its maxinterval) on top
    return {"file": _LineStream(stream), "mininterval": LOG_INTERVAL_S, "miniters": 1, "ascii": True}


def print_above_bars(line: str) -> None:
    """One line on stderr, above any progress bar that is being drawn (not into it)."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def warning_lines(prefix: str) -> Callable[..., None]:
    """A ``warnings.showwarning`` that shows each warning as one line, ``"{prefix}: warning: message"``, above the
    progress bars: how ``star-vsr`` and the training scripts show them, not Python's "file.py:52: Category:
    message" and that file's source line."""
    return lambda message, *_, **__: print_above_bars(f"{prefix}: warning: {message}")
