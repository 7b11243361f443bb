"""StarVSRUNetModel: the text-to-video UNet that STAR's released model is built on.

This is I2VGen-XL's refinement UNet ("VideoLDM decoder", ``Vid2VidSDUNet`` in STAR's code):
4 latent channels in and out, widths (320, 640, 1280, 1280), two ResBlocks per level,
spatial + temporal transformers at scales 1, 1/2, 1/4 (64-dim heads), 1024-d OpenCLIP text
context, v-prediction. LIEM gates sit in front of every global attention (``liem.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .loading import LocalModelMixin
from .resnet import check_latent_size, valid_latent_size
from .unet_blocks import FrameTimestepEmbedding, StarEncoder, UpLevel


@dataclass
class StarVSRUNetOutput(BaseOutput):
    """Output of ``StarVSRUNetModel``.

    Args:
        sample: the v-prediction, shaped (b, n, c, h, w) like the input.
    """

    sample: torch.Tensor


class StarVSRUNetModel(LocalModelMixin, ModelMixin, ConfigMixin):
    r"""Video UNet with spatial/temporal transformers, temporal convolutions and LIEM gates.

    Parameters:
        in_channels (`int`, defaults to 4): latent channels of the input.
        out_channels (`int`, defaults to 4): channels of the prediction.
        block_out_channels (`tuple[int]`, defaults to `(320, 640, 1280, 1280)`): width of each level.
        layers_per_block (`int`, defaults to 2): ResBlocks per encoder level (decoder: one more).
        attention_levels (`tuple[bool]`, defaults to `(True, True, True, False)`): levels with a spatial
            and a temporal transformer after each ResBlock.
        attention_head_dim (`int`, defaults to 64): width of one attention head.
        temporal_in_heads (`int`, defaults to 8): heads of the temporal transformer right after `conv_in`
            (the released model uses 8 x 64 = 512 there, wider than its 320 channels).
        cross_attention_dim (`int`, defaults to 1024): width of the text embeddings.
        norm_num_groups (`int`, defaults to 32): groups of every GroupNorm.
        dropout (`float`, defaults to 0.1): dropout inside ResBlocks during training.
        liem_placement (`str`, defaults to `"after_norm"`): `"after_norm"` gates the normalised tokens
            (the module acts; use it for new training), `"before_norm"` reproduces the released
            checkpoints, whose LayerNorm cancels the gate.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        attention_levels: Sequence[bool] = (True, True, True, False),
        attention_head_dim: int = 64,
        temporal_in_heads: int = 8,
        cross_attention_dim: int = 1024,
        norm_num_groups: int = 32,
        dropout: float = 0.1,
        liem_placement: str = "after_norm",
    ) -> None:
        super().__init__()
        c0 = block_out_channels[0]
        temb_channels = 4 * c0
        # 1. timestep embedding: sinusoid [cos, sin] of width c0 -> MLP of width 4*c0
        self.time_embedding = FrameTimestepEmbedding(c0)
        # 2. encoder + middle block
        self.encoder = StarEncoder(in_channels, block_out_channels, layers_per_block, attention_levels,
                                   attention_head_dim, temporal_in_heads, cross_attention_dim, norm_num_groups,
                                   liem_placement, dropout)
        # 3. decoder: each level consumes layers_per_block + 1 skips from the end of the encoder's list
        skip_channels = StarEncoder.skip_channels(block_out_channels, layers_per_block)
        reversed_channels = list(reversed(block_out_channels))
        self.up_blocks = nn.ModuleList()
        in_ch = reversed_channels[0]
        for level, out_ch in enumerate(reversed_channels):
            level_skips = [skip_channels.pop() for _ in range(layers_per_block + 1)]
            self.up_blocks.append(UpLevel(
                in_ch, out_ch, level_skips, temb_channels,
                has_attention=list(reversed(attention_levels))[level],
                add_upsample=level < len(block_out_channels) - 1, head_dim=attention_head_dim,
                cross_attention_dim=cross_attention_dim, norm_num_groups=norm_num_groups,
                liem_placement=liem_placement, dropout=dropout))
            in_ch = out_ch
        # 4. output head (zero-initialised last conv)
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, c0)
        self.conv_out = nn.Conv2d(c0, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def num_downsamples(self) -> int:
        """Resolution halvings from the latent to the coarsest level (one per block but the last)."""
        return len(self.config.block_out_channels) - 1

    def valid_latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Smallest latent (h, w) >= the given one that this UNet accepts (see ``resnet.valid_latent_size``)."""
        return valid_latent_size(height, width, self.num_downsamples)


    def forward(
        self,
        sample: torch.Tensor,
        timestep: Union[torch.Tensor, float, int],
        encoder_hidden_states: torch.Tensor,
        down_block_additional_residuals: Optional[Sequence[torch.Tensor]] = None,
        mid_block_additional_residual: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ) -> Union[StarVSRUNetOutput, tuple[torch.Tensor]]:
        r"""Predict v for a batch of latent clips.

        Args:
            sample: noisy latents (b, n, c, h, w).
            timestep: diffusion step(s), a scalar or (b,).
            encoder_hidden_states: text embeddings (b, tokens, cross_attention_dim).
            down_block_additional_residuals: ControlNet residuals added to the skip features, one per
                skip, each (b*n, c_i, h_i, w_i).
            mid_block_additional_residual: ControlNet residual added to the middle-block output.
            return_dict: return a ``StarVSRUNetOutput`` instead of a tuple.
        """
        if sample.ndim != 5:
            raise ValueError(f"sample must be (batch, frames, channels, height, width), got {tuple(sample.shape)}")
        b, n, c, h, w = sample.shape
        check_latent_size(h, w, self.num_downsamples)
        temb = self.time_embedding(timestep, b, n, sample.dtype, sample.device)  # (b*n, 4*c0)
        context = encoder_hidden_states.repeat_interleave(n, dim=0)  # (b*n, tokens, d)
        x = sample.reshape(b * n, c, h, w)

        x, skips = self.encoder(x, temb, context, n)
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(f"expected {len(skips)} down-block residuals, got {len(down_block_additional_residuals)}")
            skips = [s + r for s, r in zip(skips, down_block_additional_residuals)]
        if mid_block_additional_residual is not None:
            x = x + mid_block_additional_residual

        for level in self.up_blocks:
            x = level(x, skips, temb, context, n)

        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        out = x.reshape(b, n, -1, h, w)
        if not return_dict:
            return (out,)
        return StarVSRUNetOutput(sample=out)
