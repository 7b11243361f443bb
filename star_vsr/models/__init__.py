"""Networks of star-vsr. Module paths of these classes are public API (saved pipelines name them)."""

import logging


class _NoEmptyFloat32ListWarning(logging.Filter):
    """Drops diffusers 0.42's "There are modules in X that should be kept in float32: []" warning: ``ModelMixin.to``
    gives it on every cast to a dtype, also when no module is to be kept in float32 (its ``fp32_modules is not
    None`` test follows ``or []``), as for every model here, and its advice (``torch_dtype``) is deprecated."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_NoEmptyFloat32ListWarning())

from .attention import set_liem_placement
from .controlnet_star import StarVSRControlNetModel, StarVSRControlNetOutput
from .liem import LIEM_PLACEMENTS, SpatialLIEM, TemporalLIEM
from .resnet import valid_latent_size
from .student import STUDENT_PRESETS, StarStudentModel, StarStudentOutput, StarStudentState
from .unet_star import StarVSRUNetModel, StarVSRUNetOutput

__all__ = [
    "LIEM_PLACEMENTS",
    "SpatialLIEM",
    "StarVSRControlNetModel",
    "StarVSRControlNetOutput",
    "StarVSRUNetModel",
    "StarVSRUNetOutput",
    "TemporalLIEM",
    "valid_latent_size",
    "STUDENT_PRESETS",
    "StarStudentModel",
    "StarStudentOutput",
    "StarStudentState",
    "set_liem_placement",
]
