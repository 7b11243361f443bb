"""LIEM: the Local Information Enhancement Module of STAR (Xie et al. 2025, Sec. 3.2).

The paper writes the module as

    L(F) = sigmoid(Conv(concat(AvgPool_c(F), MaxPool_c(F))))          (Eq. 3)
    F_out = G(L(F) * F) + F                                            (Eq. 4)

where the pools run over channels and ``G`` is the global (spatial or temporal) attention
block that follows. The released code concatenates ``[max, mean]`` in that order; we keep
that order so released weights mean the same thing here.

Where the gate sits relative to the block's LayerNorm matters. The released checkpoints gate
*before* the LayerNorm: the gate is one positive scalar per token, and a LayerNorm over
channels divides that scalar out again (up to its epsilon), so the module barely acts.
``liem_placement="after_norm"`` (the models' default) gates the normalised tokens instead, so the
gate reaches the attention. ``liem_placement="before_norm"`` reproduces the released behaviour
(``convert-star`` sets it for released checkpoints).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

LIEM_PLACEMENTS: tuple[str, ...] = ("after_norm", "before_norm")

#: Kernel of the spatial gate's convolution (STAR uses a 7x7 window, as CBAM does).
SPATIAL_GATE_KERNEL = 7


def _channel_max_mean(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Stack the channel-wise max and mean along ``dim`` (STAR's order: max first)."""
    return torch.cat([x.amax(dim=dim, keepdim=True), x.mean(dim=dim, keepdim=True)], dim=dim)


class SpatialLIEM(nn.Module):
    """Spatial gate: channel max & mean -> 7x7 conv (2 -> 1, no bias) -> sigmoid, times ``x``.

    Acts on tokens of one frame laid out as an image, so it needs the frame's height and width.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, SPATIAL_GATE_KERNEL, padding=SPATIAL_GATE_KERNEL // 2, bias=False)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        # tokens: (b*n, h*w, c)
        bn, hw, c = tokens.shape
        if hw != height * width:  # was reshape's "shape '[...]' is invalid"
            raise InputError(f"SpatialLIEM: {hw} tokens per frame are not a {height}x{width} grid")
        image = tokens.transpose(1, 2).reshape(bn, c, height, width)  # (b*n, c, h, w)
        gate = torch.sigmoid(self.conv(_channel_max_mean(image, dim=1)))  # (b*n, 1, h, w)
        return tokens * gate.reshape(bn, hw, 1)


class TemporalLIEM(nn.Module):
    """Temporal gate on (b*h*w, n, c) frame tokens: channel max & mean -> Linear(2 -> 1) -> sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 1, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # tokens: (b*h*w, n, c)
        gate = torch.sigmoid(self.proj(_channel_max_mean(tokens, dim=-1)))  # (b*h*w, n, 1)
        return tokens * gate
