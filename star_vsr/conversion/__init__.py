"""Converters from published checkpoints (STAR, OpenCLIP) to star-vsr's diffusers components."""

from .openclip import convert_openclip_text_encoder, load_openclip_text_encoder, openclip_text_encoder
from .star_checkpoint import convert_star_checkpoint, released_unet_config, star_key_mapping

__all__ = [
    "convert_openclip_text_encoder",
    "convert_star_checkpoint",
    "load_openclip_text_encoder",
    "openclip_text_encoder",
    "released_unet_config",
    "star_key_mapping",
]
