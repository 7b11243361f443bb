"""Networks of star-vsr. Module paths of these classes are public API (saved pipelines name them)."""

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
]
