"""star-vsr: real-world video super-resolution.

Heavy modules (torch, diffusers) are imported lazily so that `star-vsr --help` and
`import star_vsr` stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "StarVSRPipeline": "star_vsr.pipelines.pipeline_star_vsr",
    "StarVSRPipelineOutput": "star_vsr.pipelines.pipeline_star_vsr",
    "StarStudentPipeline": "star_vsr.pipelines.pipeline_star_student",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'star_vsr' has no attribute {name!r}")
