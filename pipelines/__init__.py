"""Diffusers pipelines of star-vsr, installed as `star_vsr.pipelines`.

``from star_vsr.pipelines import StarVSRPipeline, StarStudentPipeline`` works; each is imported on
first use, so loading the student does not import the diffusion pipeline's text encoder classes.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "StarVSRPipeline": "pipeline_star_vsr",
    "StarVSRPipelineOutput": "pipeline_star_vsr",
    "StarStudentPipeline": "pipeline_star_student",
    "StarStudentPipelineOutput": "pipeline_star_student",
}

__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)


def __dir__() -> list[str]:
    """The module's names with the lazily imported pipelines (tab completion did not offer them)."""
    return sorted({*globals(), *_MODULES})
