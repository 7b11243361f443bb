"""Warnings attributed to the line of the caller's code that called into star-vsr.

``warnings.warn(..., stacklevel=N)`` needs N counted by hand for each call path, and the count goes stale when a
decorator or a helper comes between (a black-box hunt found the pipeline's prompt warnings reported at the
out-of-memory wrapper in ``star_vsr/errors.py``, and the RGBA warning inside ``star_vsr/frames.py``). Python's
default filter shows a warning once per location, so a wrong location also hid a second video's warning.
`warn_user` walks up the stack past star-vsr's own modules (and the wrappers of the libraries that call into it)
to the first frame of the caller's code.
"""

from __future__ import annotations

import sys
import warnings

#: Modules whose frames are passed over: star-vsr's own (its pipelines are ``star_vsr.pipelines``), and those of
#: the libraries whose wrappers come between a caller and star-vsr (``torch.no_grad``, a DataLoader, diffusers'
#: ``from_pretrained`` and huggingface_hub's argument checks around it, Accelerate's hooks,
#: ``contextlib.contextmanager``). Others (a thread's or a process's start) are the caller's code as far as this
#: goes: the warning is theirs.
PASSED_OVER = ("star_vsr", "torch", "diffusers", "huggingface_hub", "accelerate", "contextlib")


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` at the first frame up the stack outside `PASSED_OVER` (the outermost
    frame when all are inside; the ``star-vsr`` command's are its entry script or ``star_vsr/__main__.py``, run as
    ``__main__``)."""
    frame, level = sys._getframe(1), 1  # level: warnings.warn's stacklevel - 1 of `frame`
    while frame.f_back is not None and _passed_over(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


def _passed_over(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in PASSED_OVER)
