"""Convolutional layers of the STAR UNet: residual blocks with temporal convolutions, resampling.

Features are (b*n, c, h, w) with the n frames folded into the batch; the temporal convolution
unfolds them to (b, c, n, h, w) and mixes neighbouring frames with (3, 1, 1) kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

#: Number of (GroupNorm, SiLU, Conv3d) stages in a temporal convolution block.
TEMPORAL_CONV_STAGES = 4
#: Dropout of the temporal convolution stages 2..4 during training (released model: 0.1).
TEMPORAL_CONV_DROPOUT = 0.1


class TemporalConvBlock(nn.Module):
    """Four (GroupNorm, SiLU, [Dropout], Conv3d (3,1,1)) stages with an identity shortcut.

    The last convolution starts at zero so a fresh block is the identity. GroupNorm statistics
    span all frames the block sees. Frames outside the clip are zero-padded.
    """

    def __init__(self, channels: int, norm_num_groups: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        for i in range(TEMPORAL_CONV_STAGES):
            layers: list[nn.Module] = [nn.GroupNorm(norm_num_groups, channels), nn.SiLU()]
            if i > 0:
                layers.append(nn.Dropout(TEMPORAL_CONV_DROPOUT))
            layers.append(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))
            self.stages.append(nn.Sequential(*layers))
        nn.init.zeros_(self.stages[-1][-1].weight)
        nn.init.zeros_(self.stages[-1][-1].bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: (b*n, c, h, w)
        bn, c, h, w = x.shape
        video = x.reshape(bn // num_frames, num_frames, c, h, w).transpose(1, 2)  # (b, c, n, h, w)
        out = video
        for stage in self.stages:
            out = stage(out)
        return (video + out).transpose(1, 2).reshape(bn, c, h, w)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, followed by a temporal convolution.

    h = conv1(SiLU(GN(x))) + Linear(SiLU(emb)); h = conv2(Dropout(SiLU(GN(h)))); y = skip(x) + h;
    then ``TemporalConvBlock``. ``conv2`` (the second conv) starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, norm_num_groups: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.temporal_conv = TemporalConvBlock(out_channels, norm_num_groups)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: (b*n, c_in, h, w); temb: (b*n, temb_channels)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None].to(h.dtype)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return self.temporal_conv(shortcut + h, num_frames)


class Downsample(nn.Module):
    """3x3 stride-2 convolution padded by 2 rows and 1 column, as in the released model.

    A latent of height h (even) comes out at h/2 + 1 rows and width w at ceil(w/2) columns.
    ``Upsample`` undoes exactly this, so latent heights must satisfy ``valid_latent_size``.
    """

    PADDING = (2, 1)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=self.PADDING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling, drop the first and last row, then a 3x3 convolution.

    The row crop undoes the two extra rows that ``Downsample`` adds (h -> h/2 + 1 -> h).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")[..., 1:-1, :]
        return self.conv(x)


def valid_latent_size(height: int, width: int, num_downsamples: int) -> tuple[int, int]:
    """Smallest latent size >= (height, width) that survives the encoder's resampling.

    Each ``Downsample`` maps an even height h to h/2 + 1 and ``Upsample`` maps it back with
    2h - 2, so every height before a downsample must be even; widths must be divisible by
    2**num_downsamples. For the released 4-level UNet that means height = 2 (mod 8) and
    width = 0 (mod 8), e.g. 90 x 160 for a 720 x 1280 frame.
    """
    if isinstance(num_downsamples, bool) or not isinstance(num_downsamples, int) or num_downsamples < 0:
        raise InputError(f"num_downsamples must be a whole number >= 0, got {num_downsamples!r}")

    def height_ok(h: int) -> bool:
        for _ in range(num_downsamples):
            if h % 2:
                return False
            h = h // 2 + 1
        return True

    valid_h = max(height, 2 if num_downsamples else 1)
    while not height_ok(valid_h):
        valid_h += 1
    multiple = 2 ** num_downsamples
    valid_w = -(-max(width, 1) // multiple) * multiple
    return valid_h, valid_w


def check_latent_size(height: int, width: int, num_downsamples: int) -> None:
    """Raise ``ValueError`` if a latent of this size would not survive the resampling."""
    valid = valid_latent_size(height, width, num_downsamples)
    if (height, width) != valid:
        raise ValueError(f"latent size {height}x{width} does not survive the UNet's resampling; pad it to "
                         f"{valid[0]}x{valid[1]} (see star_vsr.models.valid_latent_size)")
