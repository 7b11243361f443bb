"""star-vsr: real-world video super-resolution.

Heavy modules (torch, diffusers) are imported lazily so that `star-vsr --help` and
`import star_vsr` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Pipelines re-exported from ``star_vsr.pipelines`` (which imports each on first use).
_PIPELINES = ("StarVSRPipeline", "StarVSRPipelineOutput", "StarStudentPipeline", "StarStudentPipelineOutput")

__all__ = ["__version__", *_PIPELINES]


def __getattr__(name: str) -> Any:
    if name in _PIPELINES:
        return getattr(importlib.import_module("star_vsr.pipelines"), name)
    raise AttributeError(f"module 'star_vsr' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the lazily imported pipelines (tab completion did not offer them)."""
    return sorted({*globals(), *_PIPELINES})
