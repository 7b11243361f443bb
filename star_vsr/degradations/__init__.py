"""Temporally coherent real-world degradations for video super-resolution training.

Real-ESRGAN's second-order chain (blur, resize, noise, JPEG, twice; final resize + sinc) applied
to a whole clip with one draw of parameters per clip, then whole-clip video-codec compression::

    from star_vsr.degradations import DegradationConfig, degrade_clip

    lr = degrade_clip(hr, scale=4, config=DegradationConfig.preset("heavy"), seed=0)
"""

from star_vsr.degradations.config import (
    DEGRADATION_CODECS,
    KERNEL_TYPES,
    PRESETS,
    RESIZE_MODES,
    SUPPORTED_SCALES,
    CodecConfig,
    DegradationConfig,
    OrderConfig,
)
from star_vsr.degradations.kernels import KernelSpec
from star_vsr.degradations.params import CodecParams, DegradationParams, NoiseParams, OrderParams
from star_vsr.degradations.chain import RealWorldDegradation, degrade_clip, degrade_frames

__all__ = [
    "DEGRADATION_CODECS",
    "KERNEL_TYPES",
    "PRESETS",
    "RESIZE_MODES",
    "SUPPORTED_SCALES",
    "CodecConfig",
    "CodecParams",
    "DegradationConfig",
    "DegradationParams",
    "KernelSpec",
    "NoiseParams",
    "OrderConfig",
    "OrderParams",
    "RealWorldDegradation",
    "degrade_clip",
    "degrade_frames",
]
