"""Training losses of star-vsr.

- ``DynamicFrequencyLoss`` (``frequency.py``): STAR's timestep-aware loss on the low and high
  spatial-frequency bands of decoded frames, ``b(t) * L_DF``.
- ``StarDiffusionLoss`` (``objective.py``): the whole STAR objective, v-prediction MSE plus the
  frequency term on VAE-decoded clean estimates (decoded with gradient).
- the distillation terms of the student (``distillation.py``, below).
"""

from star_vsr.losses.frequency import (
    DEFAULT_CUTOFF,
    DynamicFrequencyLoss,
    DynamicFrequencyTerms,
    radial_frequency,
    radial_low_pass_mask,
)
from star_vsr.losses.objective import StarDiffusionLoss, StarLossOutput

__all__ = [
    "DEFAULT_CUTOFF",
    "DynamicFrequencyLoss",
    "DynamicFrequencyTerms",
    "StarDiffusionLoss",
    "StarLossOutput",
    "radial_frequency",
    "radial_low_pass_mask",
]

# Distillation losses (``distillation.py``): Charbonnier, log-MSE (mean PSNR), Space-Time Distillation
# (attention maps, shared ConvLSTM), feature L1 through 1x1 adapters, VGG perceptual from a local file.
from star_vsr.losses.distillation import (  # noqa: E402
    DistillationCriterion,
    DistillationLossConfig,
    FeatureDistillationLoss,
    TimeDistillationLoss,
    VGGPerceptualLoss,
    attention_map,
    charbonnier_loss,
    log_mse_loss,
    space_distillation_loss,
)

__all__ += [
    "DistillationCriterion",
    "DistillationLossConfig",
    "FeatureDistillationLoss",
    "TimeDistillationLoss",
    "VGGPerceptualLoss",
    "attention_map",
    "charbonnier_loss",
    "log_mse_loss",
    "space_distillation_loss",
]
