"""Levels of the STAR video UNet and the encoder shared by the UNet and its ControlNet.

The released backbone (I2VGen-XL's refinement UNet, "VideoLDM decoder") is a 2-D UNet whose
residual blocks carry temporal convolutions and whose attention levels carry a spatial and a
temporal transformer. Per encoder level: ``layers_per_block`` x (ResBlock [+ spatial + temporal
transformer]), then a ``Downsample`` except at the last level. The middle block is ResBlock,
spatial transformer, temporal transformer, ResBlock. Decoder levels mirror the encoder with one
extra ResBlock that consumes each skip feature.

All features are (b*n, c, h, w); ``num_frames`` (n) lets temporal layers unfold them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .attention import SpatialTransformer, TemporalTransformer
from .resnet import Downsample, ResBlock, Upsample


class FrameTimestepEmbedding(nn.Module):
    """Sinusoidal timestep features [cos, sin] of width c0 -> MLP (c0 -> 4*c0 -> 4*c0), one row per frame."""

    def __init__(self, base_channels: int) -> None:
        super().__init__()
        self.proj = Timesteps(base_channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = TimestepEmbedding(base_channels, 4 * base_channels)

    def forward(self, timestep: Union[torch.Tensor, float, int], batch: int, num_frames: int,
                dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=device)
        t = (t[None] if t.ndim == 0 else t).expand(batch)  # (b,)
        emb = self.mlp(self.proj(t).to(dtype))  # (b, 4*c0)
        return emb.repeat_interleave(num_frames, dim=0)  # (b*n, 4*c0)


class _CheckpointedLevel(nn.Module):
    """Runs sub-layers through diffusers' gradient checkpointing when it is switched on."""

    def __init__(self) -> None:
        super().__init__()
        self.gradient_checkpointing = False

    def _run(self, layer: nn.Module, *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(layer, *args)
        return layer(*args)


class _TransformerPair(nn.Module):
    """Spatial transformer followed by a temporal transformer (one attention stage of a level)."""

    def __init__(self, channels: int, head_dim: int, cross_attention_dim: int, norm_num_groups: int,
                 liem_placement: str, dropout: float) -> None:
        super().__init__()
        heads = channels // head_dim
        self.spatial = SpatialTransformer(channels, heads, head_dim, cross_attention_dim, norm_num_groups,
                                          liem_placement, dropout=dropout)
        self.temporal = TemporalTransformer(channels, heads, head_dim, norm_num_groups, liem_placement,
                                            dropout=dropout)


class DownLevel(_CheckpointedLevel):
    """One encoder level; returns its output and the skip features it produced."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int,
                 has_attention: bool, add_downsample: bool, head_dim: int, cross_attention_dim: int,
                 norm_num_groups: int, liem_placement: str, dropout: float) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([
            ResBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, norm_num_groups, dropout)
            for i in range(num_layers)
        ])
        self.attentions = nn.ModuleList([
            _TransformerPair(out_channels, head_dim, cross_attention_dim, norm_num_groups, liem_placement, 0.0)
            for _ in range(num_layers)
        ]) if has_attention else None
        self.downsampler = Downsample(out_channels) if add_downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = self._run(resnet, x, temb, num_frames)
            if self.attentions is not None:
                x = self._run(self.attentions[i].spatial, x, context)
                x = self._run(self.attentions[i].temporal, x, num_frames)
            skips.append(x)
        if self.downsampler is not None:
            x = self.downsampler(x)
            skips.append(x)
        return x, skips


class MidBlock(_CheckpointedLevel):
    """ResBlock, spatial transformer, temporal transformer, ResBlock."""

    def __init__(self, channels: int, temb_channels: int, head_dim: int, cross_attention_dim: int,
                 norm_num_groups: int, liem_placement: str, dropout: float) -> None:
        super().__init__()
        self.resnet1 = ResBlock(channels, channels, temb_channels, norm_num_groups, dropout)
        self.attention = _TransformerPair(channels, head_dim, cross_attention_dim, norm_num_groups,
                                          liem_placement, 0.0)
        self.resnet2 = ResBlock(channels, channels, temb_channels, norm_num_groups, dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = self._run(self.resnet1, x, temb, num_frames)
        x = self._run(self.attention.spatial, x, context)
        x = self._run(self.attention.temporal, x, num_frames)
        return self._run(self.resnet2, x, temb, num_frames)


class UpLevel(_CheckpointedLevel):
    """One decoder level: ``num_layers`` ResBlocks each eating one skip feature, then an Upsample."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: Sequence[int], temb_channels: int,
                 has_attention: bool, add_upsample: bool, head_dim: int, cross_attention_dim: int,
                 norm_num_groups: int, liem_placement: str, dropout: float) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([
            ResBlock((in_channels if i == 0 else out_channels) + skip, out_channels, temb_channels,
                     norm_num_groups, dropout)
            for i, skip in enumerate(skip_channels)
        ])
        self.attentions = nn.ModuleList([
            _TransformerPair(out_channels, head_dim, cross_attention_dim, norm_num_groups, liem_placement, 0.0)
            for _ in skip_channels
        ]) if has_attention else None
        self.upsampler = Upsample(out_channels) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor, context: torch.Tensor,
                num_frames: int) -> torch.Tensor:
        """``skips`` is consumed from its end (the deepest feature first)."""
        for i, resnet in enumerate(self.resnets):
            x = torch.cat([x, skips.pop()], dim=1)
            x = self._run(resnet, x, temb, num_frames)
            if self.attentions is not None:
                x = self._run(self.attentions[i].spatial, x, context)
                x = self._run(self.attentions[i].temporal, x, num_frames)
        if self.upsampler is not None:
            x = self.upsampler(x)
        return x


class StarEncoder(nn.Module):
    """conv_in -> temporal transformer -> encoder levels -> middle block.

    Shared by ``StarVSRUNetModel`` and ``StarVSRControlNetModel`` (the ControlNet is a trainable
    copy of exactly this part). ``forward`` returns the middle-block output and the skip features
    in encoder order: 1 after the input transformer, ``layers_per_block`` per level, 1 per
    downsample (12 for the released model).
    """

    def __init__(self, in_channels: int, block_out_channels: Sequence[int], layers_per_block: int,
                 attention_levels: Sequence[bool], attention_head_dim: int, temporal_in_heads: int,
                 cross_attention_dim: int, norm_num_groups: int, liem_placement: str, dropout: float) -> None:
        super().__init__()
        if len(attention_levels) != len(block_out_channels):
            raise ValueError(f"attention_levels ({len(attention_levels)}) must have one entry per level of "
                             f"block_out_channels ({len(block_out_channels)})")
        c0 = block_out_channels[0]
        temb_channels = 4 * c0
        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        self.temporal_in = TemporalTransformer(c0, temporal_in_heads, attention_head_dim, norm_num_groups,
                                               liem_placement)
        self.down_blocks = nn.ModuleList()
        in_ch = c0
        for level, out_ch in enumerate(block_out_channels):
            self.down_blocks.append(DownLevel(
                in_ch, out_ch, temb_channels, layers_per_block, attention_levels[level],
                add_downsample=level < len(block_out_channels) - 1, head_dim=attention_head_dim,
                cross_attention_dim=cross_attention_dim, norm_num_groups=norm_num_groups,
                liem_placement=liem_placement, dropout=dropout))
            in_ch = out_ch
        self.mid_block = MidBlock(in_ch, temb_channels, attention_head_dim, cross_attention_dim, norm_num_groups,
                                  liem_placement, dropout)

    @staticmethod
    def skip_channels(block_out_channels: Sequence[int], layers_per_block: int) -> list[int]:
        """Channel count of every skip feature, in encoder order."""
        channels = [block_out_channels[0]]
        for level, out_ch in enumerate(block_out_channels):
            channels += [out_ch] * layers_per_block
            if level < len(block_out_channels) - 1:
                channels.append(out_ch)
        return channels

    def forward(self, sample: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, num_frames: int,
                conv_in_residual: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # sample: (b*n, in_channels, h, w); temb: (b*n, 4*c0); context: (b*n, tokens, cross_attention_dim)
        x = self.conv_in(sample)
        if conv_in_residual is not None:  # the ControlNet's hint enters here
            x = x + conv_in_residual
        x = self.temporal_in(x, num_frames)
        skips = [x]
        for level in self.down_blocks:
            x, level_skips = level(x, temb, context, num_frames)
            skips += level_skips
        x = self.mid_block(x, temb, context, num_frames)
        return x, skips
