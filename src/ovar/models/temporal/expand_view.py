"""Expanded temporal view attention (Open-VCLIP, FROSTER) on open_clip's image-tower blocks.

Every block's self-attention keeps its queries on frame ``t`` but takes its keys and
values from several frames of the same clip: ``[t+1, t-1, t]`` by default (offsets
``±1..±2`` or ``±1..±3`` as variants). A neighbour outside the clip contributes a block
of all-zero keys and values that is *not* masked: those keys get logit 0, take part in
the softmax and add nothing to the output. This is the original behaviour (an attention
sink at the first and last frame) and is kept exactly.

No parameter is added: :class:`ExpandedViewAttention` is an ``nn.MultiheadAttention``
with the same parameter names, so CLIP weights load unchanged.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...hub import TEMPORAL_TYPES

# Key/value frame offsets of each variant, in the order the original concatenates them.
VARIANTS: dict[str, tuple[int, ...]] = {
    "expand_temporal_view": (1, -1, 0),
    "expand_temporal_view_step2": (1, 2, -1, -2, 0),
    "expand_temporal_view_step3": (1, 2, 3, -1, -2, -3, 0),
}
if ("none", *VARIANTS) != TEMPORAL_TYPES:  # the hub's table names exactly these
    raise ImportError("ovar.hub.TEMPORAL_TYPES and expand_view.VARIANTS disagree")


def _shift(x: torch.Tensor, offset: int) -> torch.Tensor:
    """(B, T, ...) -> frame ``t`` holds frame ``t + offset``; zeros where that is outside."""
    if offset == 0:
        return x
    frames = x.shape[1]
    keep = max(frames - abs(offset), 0)
    pad = x.new_zeros((x.shape[0], frames - keep, *x.shape[2:]))
    if offset > 0:
        return torch.cat([x[:, frames - keep:], pad], dim=1)
    return torch.cat([pad, x[:, :keep]], dim=1)


class ExpandedViewAttention(nn.MultiheadAttention):
    """Self-attention whose keys/values span neighbouring frames of the same clip.

    The input is a batch of frames ordered video-major (``B*T`` rows); :attr:`frames`
    (``T``) must be set before a forward pass (the video encoder does it per call).
    """

    def __init__(self, embed_dim: int, num_heads: int, *, offsets: Sequence[int] = VARIANTS["expand_temporal_view"],
                 batch_first: bool = True, device=None, dtype=None) -> None:
        super().__init__(embed_dim, num_heads, batch_first=batch_first, device=device, dtype=dtype)
        self.offsets = tuple(int(o) for o in offsets)
        self.frames: int | None = None

    @classmethod
    def from_attention(cls, attn: nn.MultiheadAttention, offsets: Sequence[int]) -> "ExpandedViewAttention":
        """A copy of ``attn`` (same weights, names, device and dtype) with expanded keys."""
        if not attn._qkv_same_embed_dim or attn.in_proj_bias is None:
            raise ValueError("expanded view attention needs a packed in-projection with bias (CLIP's layout)")
        weight = attn.in_proj_weight
        new = cls(attn.embed_dim, attn.num_heads, offsets=offsets, batch_first=attn.batch_first,
                  device=weight.device, dtype=weight.dtype)
        new.load_state_dict(attn.state_dict())
        new.dropout = attn.dropout
        new.train(attn.training)
        return new

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise ValueError("expanded view attention takes no attention mask (image towers use none)")
        if self.frames is None:
            raise RuntimeError("ExpandedViewAttention.frames is not set (run it through a video encoder)")
        x = query if self.batch_first else query.transpose(0, 1)  # (B*T, N, D)
        rows, tokens, dim = x.shape
        frames = self.frames
        if rows % frames:
            raise ValueError(f"{rows} frames do not split into clips of {frames}")
        heads, head_dim = self.num_heads, dim // self.num_heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:  # (B*T, N, D) -> (B, T, H, N, d)
            return t.reshape(rows // frames, frames, tokens, heads, head_dim).permute(0, 1, 3, 2, 4)

        q, k, v = split(q), split(k), split(v)
        k = torch.cat([_shift(k, o) for o in self.offsets], dim=3)
        v = torch.cat([_shift(v, o) for o in self.offsets], dim=3)
        out = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1),
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(rows, tokens, dim)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), None


def install_expanded_view(blocks: Iterable[nn.Module], variant: str = "expand_temporal_view") -> list[ExpandedViewAttention]:
    """Replace the ``attn`` of every residual block in ``blocks`` (open_clip's
    ``ResidualAttentionBlock``) by its expanded-view copy; returns the new modules."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown temporal modelling '{variant}' (choose from {', '.join(TEMPORAL_TYPES)})")
    installed = []
    for block in blocks:
        attn = block.attn
        if not isinstance(attn, ExpandedViewAttention):
            attn = ExpandedViewAttention.from_attention(attn, VARIANTS[variant])
            block.attn = attn
        installed.append(attn)
    return installed


def set_frames(modules: Iterable[ExpandedViewAttention], frames: int) -> None:
    """Tell every expanded-view attention how many frames each clip has."""
    for module in modules:
        module.frames = frames
