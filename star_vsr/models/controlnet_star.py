"""StarVSRControlNetModel: STAR's video ControlNet over the degraded input.

A trainable copy of the UNet encoder and middle block (temporal layers and LIEM included). The
hint is the LR video, bilinearly upsampled to the output size and VAE-encoded; a zero-initialised
3x3 conv adds it after ``conv_in``. Zero-initialised 1x1 convs turn every skip feature and the
middle output into residuals for the UNet (12 + 1 for the released model), so a fresh
ControlNet leaves the UNet's prediction unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .loading import LocalModelMixin
from .resnet import check_latent_size
from .unet_blocks import FrameTimestepEmbedding, StarEncoder
from .unet_star import StarVSRUNetModel


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


@dataclass
class StarVSRControlNetOutput(BaseOutput):
    """Output of ``StarVSRControlNetModel``.

    Args:
        down_block_res_samples: one residual per UNet skip feature, each (b*n, c_i, h_i, w_i),
            already multiplied by the conditioning scale.
        mid_block_res_sample: residual for the UNet's middle-block output.
    """

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


class StarVSRControlNetModel(LocalModelMixin, ModelMixin, ConfigMixin):
    r"""Video ControlNet of STAR: UNet-encoder copy + zero-initialised hint conv and 1x1 outputs.

    Parameters:
        in_channels, block_out_channels, layers_per_block, attention_levels, attention_head_dim,
        temporal_in_heads, cross_attention_dim, norm_num_groups, dropout, liem_placement:
            as in ``StarVSRUNetModel``; they must match the UNet this ControlNet drives.
        conditioning_channels (`int`, defaults to 4): channels of the hint (the VAE latent of the
            upsampled LR video).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        attention_levels: Sequence[bool] = (True, True, True, False),
        attention_head_dim: int = 64,
        temporal_in_heads: int = 8,
        cross_attention_dim: int = 1024,
        norm_num_groups: int = 32,
        dropout: float = 0.1,
        liem_placement: str = "after_norm",
        conditioning_channels: int = 4,
    ) -> None:
        super().__init__()
        c0 = block_out_channels[0]
        self.time_embedding = FrameTimestepEmbedding(c0)
        self.encoder = StarEncoder(in_channels, block_out_channels, layers_per_block, attention_levels,
                                   attention_head_dim, temporal_in_heads, cross_attention_dim, norm_num_groups,
                                   liem_placement, dropout)
        self.hint_conv = zero_module(nn.Conv2d(conditioning_channels, c0, 3, padding=1))
        self.zero_convs = nn.ModuleList([
            zero_module(nn.Conv2d(ch, ch, 1)) for ch in StarEncoder.skip_channels(block_out_channels, layers_per_block)
        ])
        mid_ch = block_out_channels[-1]
        self.mid_zero_conv = zero_module(nn.Conv2d(mid_ch, mid_ch, 1))

    @classmethod
    def from_unet(cls, unet: StarVSRUNetModel, conditioning_channels: int = 4,
                  load_weights_from_unet: bool = True) -> "StarVSRControlNetModel":
        """Build a ControlNet matching ``unet``'s config; copy its encoder and time embedding.

        The hint conv and the 1x1 output convs stay at zero, so the pair predicts exactly what the
        UNet alone predicts until the ControlNet is trained.
        """
        cfg = unet.config
        controlnet = cls(
            in_channels=cfg.in_channels, block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block, attention_levels=tuple(cfg.attention_levels),
            attention_head_dim=cfg.attention_head_dim, temporal_in_heads=cfg.temporal_in_heads,
            cross_attention_dim=cfg.cross_attention_dim, norm_num_groups=cfg.norm_num_groups,
            dropout=cfg.dropout, liem_placement=cfg.liem_placement, conditioning_channels=conditioning_channels,
        )
        if load_weights_from_unet:
            controlnet.time_embedding.load_state_dict(unet.time_embedding.state_dict())
            controlnet.encoder.load_state_dict(unet.encoder.state_dict())
        controlnet.to(unet.device)
        if controlnet.dtype != unet.dtype:
            controlnet.to(unet.dtype)
        return controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Union[torch.Tensor, float, int],
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        return_dict: bool = True,
    ) -> Union[StarVSRControlNetOutput, tuple]:
        r"""Residuals for the UNet from the noisy latents and the hint.

        Args:
            sample: noisy latents (b, n, c, h, w).
            timestep: diffusion step(s), a scalar or (b,).
            encoder_hidden_states: text embeddings (b, tokens, cross_attention_dim).
            controlnet_cond: hint latents (b, n, conditioning_channels, h, w).
            conditioning_scale: multiplies every residual (0 disables the ControlNet).
            return_dict: return a ``StarVSRControlNetOutput`` instead of a tuple.
        """
        if controlnet_cond.shape[:2] != sample.shape[:2] or controlnet_cond.shape[-2:] != sample.shape[-2:]:
            raise ValueError(f"controlnet_cond {tuple(controlnet_cond.shape)} must match sample "
                             f"{tuple(sample.shape)} in batch, frames, height and width")
        b, n, c, h, w = sample.shape
        check_latent_size(h, w, len(self.config.block_out_channels) - 1)
        temb = self.time_embedding(timestep, b, n, sample.dtype, sample.device)  # (b*n, 4*c0)
        context = encoder_hidden_states.repeat_interleave(n, dim=0)  # (b*n, tokens, d)
        hint = self.hint_conv(controlnet_cond.reshape(b * n, -1, h, w))  # (b*n, c0, h, w)

        x, skips = self.encoder(sample.reshape(b * n, c, h, w), temb, context, n, conv_in_residual=hint)
        down = tuple(conv(s) * conditioning_scale for conv, s in zip(self.zero_convs, skips))
        mid = self.mid_zero_conv(x) * conditioning_scale
        if not return_dict:
            return (down, mid)
        return StarVSRControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid)
