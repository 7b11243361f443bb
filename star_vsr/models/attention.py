"""Transformer layers of the STAR UNet: spatial and temporal transformers with LIEM gates.

Layout: the UNet keeps features as (b*n, c, h, w) (frames folded into the batch). A
``SpatialTransformer`` attends over the h*w tokens of each frame (self-attention, then
cross-attention to the text), a ``TemporalTransformer`` over the n frames at each pixel (two
self-attentions). Both put a LIEM gate (``liem.py``) in front of their global attentions.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DeviceError
from .liem import LIEM_PLACEMENTS, SpatialLIEM, TemporalLIEM

#: Epsilon of the GroupNorm in front of each transformer (as in the released model).
TRANSFORMER_GROUP_NORM_EPS = 1e-6
#: Hidden width of the feed-forward network relative to the model width.
FEED_FORWARD_MULT = 4
#: Most attention sequences passed to one kernel call. A temporal transformer attends over the frames of
#: every latent pixel, so a 480p x4 window holds 2 x 240 x 432 = 207,360 sequences; CUDA kernels put the
#: batch on a grid axis limited to 65,535 blocks and fail with "invalid configuration argument" beyond it
#: (xformers issue 845, PyTorch issues 142228 and 146704). STAR's own attention slices at 16,384 too.
MAX_ATTENTION_BATCH = 16384


def _xformers_available() -> bool:
    try:
        import xformers.ops  # noqa: F401
    except ImportError:
        return False
    return True


class Attention(nn.Module):
    """Multi-head attention: bias-free q/k/v projections, biased output projection.

    Uses ``torch.nn.functional.scaled_dot_product_attention`` (scale 1/sqrt(head_dim)) unless
    xformers' memory-efficient kernel was switched on for CUDA inputs.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: Optional[int] = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))
        self.use_xformers = False
        self.xformers_op: Any = None

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op: Any = None) -> None:
        """Hook called by diffusers' ``enable_xformers_memory_efficient_attention``."""
        if valid:
            if not _xformers_available():
                raise DeviceError("xformers is not installed: on a CUDA machine `pip install xformers` (in a clone of "
                                  "star-vsr, `pip install -e \".[xformers]\"`), or keep the default PyTorch SDPA "
                                  "attention.")
            if not torch.cuda.is_available():
                raise DeviceError("xformers memory-efficient attention needs a CUDA GPU; on the CPU the default "
                                  "PyTorch SDPA attention is used.")
        self.use_xformers = valid
        self.xformers_op = attention_op

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x: (batch, tokens, query_dim); context: (batch, context_tokens, context_dim)
        context = x if context is None else context
        b = x.shape[0]
        q = self.to_q(x).view(b, -1, self.heads, self.head_dim)  # (b, t, heads, d)
        k = self.to_k(context).view(b, -1, self.heads, self.head_dim)
        v = self.to_v(context).view(b, -1, self.heads, self.head_dim)
        if b > MAX_ATTENTION_BATCH:  # slices of the batch: sequences are independent
            out = torch.cat([self._attend(q[i:i + MAX_ATTENTION_BATCH], k[i:i + MAX_ATTENTION_BATCH],
                                          v[i:i + MAX_ATTENTION_BATCH]) for i in range(0, b, MAX_ATTENTION_BATCH)])
        else:
            out = self._attend(q, k, v)
        return self.to_out(out.reshape(b, -1, self.heads * self.head_dim))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v per sequence and head: (b, t, heads, d) each -> (b, t, heads, d)."""
        if self.use_xformers and q.is_cuda:
            import xformers.ops

            return xformers.ops.memory_efficient_attention(q, k, v, op=self.xformers_op)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)


class GEGLU(nn.Module):
    """GELU-gated linear unit: ``a * gelu(g)`` with ``[a, g] = W x + b``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward network with a 4x hidden width."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = dim * FEED_FORWARD_MULT
        self.net = nn.Sequential(GEGLU(dim, hidden), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block with LIEM gates in front of its global attentions.

    ``kind="spatial"``: LIEM -> self-attention, cross-attention to ``context``, feed-forward.
    ``kind="temporal"``: LIEM -> self-attention, LIEM -> self-attention, feed-forward.
    ``liem_placement`` puts each gate before or after the attention's LayerNorm (see ``liem.py``).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, kind: str, context_dim: Optional[int] = None,
                 liem_placement: str = "after_norm", dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in ("spatial", "temporal"):
            raise ValueError(f"kind must be 'spatial' or 'temporal', got {kind!r}")
        if liem_placement not in LIEM_PLACEMENTS:
            raise ValueError(f"liem_placement must be one of {LIEM_PLACEMENTS}, got {liem_placement!r}")
        self.kind = kind
        self.liem_placement = liem_placement
        self.attn1 = Attention(dim, heads, head_dim, dropout=dropout)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=context_dim if kind == "spatial" else None,
                               dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        if kind == "spatial":
            self.liem1: nn.Module = SpatialLIEM()
            self.liem2: Optional[nn.Module] = None
        else:
            self.liem1 = TemporalLIEM()
            self.liem2 = TemporalLIEM()

    def _gate(self, liem: nn.Module, norm: nn.LayerNorm, x: torch.Tensor, hw: Optional[tuple[int, int]]) -> torch.Tensor:
        """norm(LIEM(x)) for the released placement, LIEM(norm(x)) otherwise."""

        def apply_liem(t: torch.Tensor) -> torch.Tensor:
            return liem(t, *hw) if hw is not None else liem(t)

        if self.liem_placement == "before_norm":
            return norm(apply_liem(x))
        return apply_liem(norm(x))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
        # spatial: x (b*n, h*w, c), hw = (h, w); temporal: x (b*h*w, n, c), hw = None
        x = self.attn1(self._gate(self.liem1, self.norm1, x, hw)) + x
        if self.liem2 is not None:
            x = self.attn2(self._gate(self.liem2, self.norm2, x, None)) + x
        else:
            x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class _TokenTransformer(nn.Module):
    """What the spatial and the temporal transformer share: GroupNorm, a linear in, ``depth`` transformer blocks
    of one ``kind`` ("spatial" or "temporal"), a linear out that starts at zero (a fresh transformer adds 0).
    The subclasses differ in which tokens attend to which (their ``forward``)."""

    def __init__(self, channels: int, heads: int, head_dim: int, kind: str, context_dim: Optional[int],
                 norm_num_groups: int, liem_placement: str, depth: int, dropout: float) -> None:
        super().__init__()
        inner_dim = heads * head_dim
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=TRANSFORMER_GROUP_NORM_EPS)
        self.proj_in = nn.Linear(channels, inner_dim)
        self.transformer_blocks = nn.ModuleList([
            TransformerBlock(inner_dim, heads, head_dim, kind, context_dim, liem_placement, dropout)
            for _ in range(depth)
        ])
        self.proj_out = nn.Linear(inner_dim, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)


class SpatialTransformer(_TokenTransformer):
    """GroupNorm -> linear in -> transformer block(s) over the h*w tokens of a frame -> linear out (+x).

    ``proj_out`` starts at zero, so a fresh transformer is the identity.
    """

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int, norm_num_groups: int,
                 liem_placement: str, depth: int = 1, dropout: float = 0.0) -> None:
        super().__init__(channels, heads, head_dim, "spatial", context_dim, norm_num_groups, liem_placement, depth,
                         dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # x: (b*n, c, h, w); context: (b*n, tokens, context_dim)
        bn, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (b*n, h*w, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, context=context, hw=(h, w))
        tokens = self.proj_out(tokens)
        return tokens.transpose(1, 2).reshape(bn, c, h, w) + x


class TemporalTransformer(_TokenTransformer):
    """GroupNorm over (c, n, h, w) -> linear in -> self-attention over the n frames of each pixel -> out (+x).

    The GroupNorm statistics span every frame of the clip (or chunk) it sees, as in the released
    model. ``proj_out`` starts at zero.
    """

    def __init__(self, channels: int, heads: int, head_dim: int, norm_num_groups: int, liem_placement: str,
                 depth: int = 1, dropout: float = 0.0) -> None:
        super().__init__(channels, heads, head_dim, "temporal", None, norm_num_groups, liem_placement, depth,
                         dropout)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        # x: (b*n, c, h, w)
        bn, c, h, w = x.shape
        b = bn // num_frames
        video = x.reshape(b, num_frames, c, h, w).transpose(1, 2)  # (b, c, n, h, w)
        tokens = self.norm(video).permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)  # (b*h*w, n, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = self.proj_out(tokens)  # (b*h*w, n, c)
        out = tokens.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bn, c, h, w)
        return out + x


def set_liem_placement(model: nn.Module, placement: str) -> None:
    """Move every LIEM gate of ``model`` (a UNet or ControlNet) before or after its LayerNorm (see ``liem.py``),
    and record it in the model's config so ``save_pretrained`` keeps it. The gates' weights stay as they are:
    gates trained before the norm (STAR's release), which the norm cancelled, start to act after it."""
    if placement not in LIEM_PLACEMENTS:
        raise ValueError(f"liem_placement must be one of {LIEM_PLACEMENTS}, got {placement!r}")
    while not hasattr(model, "register_to_config") and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module  # DistributedDataParallel and the like: the config is the wrapped model's
    if not hasattr(model, "register_to_config"):
        raise ValueError(f"set_liem_placement takes a StarVSR UNet or ControlNet, got {type(model).__name__}")
    for block in model.modules():
        if isinstance(block, TransformerBlock):
            block.liem_placement = placement
    model.register_to_config(liem_placement=placement)
