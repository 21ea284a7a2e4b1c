"""EVL's decoder: one query token attending to frozen CLIP block features over time.

Per decoder layer the block features are enriched with three local temporal modules
(depthwise temporal conv, temporal position embedding, temporal cross-attention) and
then attended to by the query. Parameter names follow the original checkpoints
(``decoder_layers.i``, ``temporal_conv.i``, ``temporal_pos_embed.i``, ``cross_attention.i``)
so that conversion is a plain prefix strip.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import BlockFeatures


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation of EVL's decoder MLP (as in CLIP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class CrossAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (queries attend to memory)."""

    def __init__(self, query_dim: int, memory_dim: int, qkv_dim: int, num_heads: int) -> None:
        super().__init__()
        if qkv_dim % num_heads:
            raise ValueError(f"qkv_dim {qkv_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(query_dim, qkv_dim)
        self.k_proj = nn.Linear(memory_dim, qkv_dim)
        self.v_proj = nn.Linear(memory_dim, qkv_dim)
        self.out_proj = nn.Linear(qkv_dim, query_dim)
        for linear in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """(B, Lq, Dq), (B, Lk, Dm), (B, Lk, Dm) -> (B, Lq, Dq)."""
        if query.shape[1] * self.num_heads < key.shape[-1]:
            return self.out_proj(self._folded(query, key, value))

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, D/heads)
            return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(heads(self.q_proj(query)), heads(self.k_proj(key)),
                                               heads(self.v_proj(value)))
        return self.out_proj(mixed.transpose(1, 2).flatten(2))

    def _folded(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The same attention with the key and value projections moved onto the few queries.

        ``q·(W_k m + b_k) = (W_kᵀ q)·m + q·b_k`` (the last term is the same for every memory
        token, so it does not change the softmax) and ``Σ a (W_v m + b_v) = W_v (Σ a m) + b_v``
        (the weights sum to 1).  EVL's one query over T x L memory tokens then costs
        O(T·L·D·heads) instead of O(T·L·D²): the memory is never projected.
        """
        heads = self.num_heads
        q = self.q_proj(query).unflatten(-1, (heads, -1))  # (B, Lq, H, d)
        w_k = self.k_proj.weight.unflatten(0, (heads, -1))  # (H, d, Dm)
        w_v = self.v_proj.weight.unflatten(0, (heads, -1))
        scale = 1.0 / math.sqrt(q.shape[-1])
        folded = torch.einsum("blhd,hdm->bhlm", q, w_k) * scale  # (B, H, Lq, Dm)
        # q·b_k shifts every score of a query alike; kept so that the graph is the original's.
        shift = torch.einsum("blhd,hd->bhl", q, self.k_proj.bias.unflatten(0, (heads, -1))) * scale
        scores = folded.flatten(1, 2) @ key.transpose(1, 2) + shift.flatten(1, 2).unsqueeze(-1)
        attn = scores.softmax(dim=-1)  # (B, H*Lq, Lk)
        context = (attn @ value).unflatten(1, (heads, -1))  # (B, H, Lq, Dm)
        mixed = torch.einsum("bhlm,hdm->blhd", context, w_v) + self.v_proj.bias.unflatten(0, (heads, -1))
        return mixed.flatten(2)


class DecoderLayer(nn.Module):
    """Pre-LN: ``x += attn(norm1(x), norm3(mem), norm3(mem)); x += mlp(norm2(x))``."""

    def __init__(self, width: int, qkv_dim: int, num_heads: int, mlp_factor: float = 4.0,
                 mlp_dropout: float = 0.5) -> None:
        super().__init__()
        hidden = round(mlp_factor * width)
        self.attn = CrossAttention(width, width, qkv_dim, num_heads)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(width, hidden))
        self.mlp.add_module("act", QuickGELU())
        self.mlp.add_module("dropout", nn.Dropout(mlp_dropout))
        self.mlp.add_module("fc2", nn.Linear(hidden, width))
        for linear in (self.mlp.fc1, self.mlp.fc2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """(B, 1, width) query, (B, T*L, width) memory -> updated query."""
        memory = self.norm3(memory)
        x = x + self.attn(self.norm1(x), memory, memory)
        return x + self.mlp(self.norm2(x))


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(HW, HW) table row for each (query patch, key patch): relative offset in raster order.

    ``idx = (qi - ki + H - 1) * (2W - 1) + (qj - kj + W - 1)`` with (i, j) = (row, column).
    """
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    d_row = rows[:, None] - rows[None, :] + height - 1
    d_col = cols[:, None] - cols[None, :] + width - 1
    return d_row * (2 * width - 1) + d_col


class TemporalCrossAttention(nn.Module):
    """Motion cue from attention maps between neighbouring frames (EVL's TCA).

    For each frame t the head-averaged attention of its patch queries to frame t-1's patch
    keys weights a learned per-relative-offset table ``w1``; likewise frame t+1 with ``w2``.
    Both tables start at zero, so the module starts as a no-op. Class tokens receive 0.
    """

    def __init__(self, spatial_size: tuple[int, int], feature_dim: int) -> None:
        super().__init__()
        height, width = spatial_size
        self.spatial_size = (height, width)
        rows = (2 * height - 1) * (2 * width - 1)
        self.w1 = nn.Parameter(torch.zeros(rows, feature_dim))
        self.w2 = nn.Parameter(torch.zeros(rows, feature_dim))
        # Rebuilt from the sizes, so not part of the state dict.
        self.register_buffer("index", relative_position_index(height, width), persistent=False)

    def _term(self, q: torch.Tensor, k: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """q (B, T', P, heads, d) attends to k (B, T', P, heads, d) -> (B, T', P, C)."""
        scores = torch.einsum("btqhd,btkhd->bthqk", q / math.sqrt(q.shape[-1]), k)
        attn = scores.softmax(dim=-1).mean(dim=2)  # (B, T', P, P), averaged over heads
        # Each key patch has a distinct offset from a given query patch, so the map can be
        # scattered into offset bins and multiplied by the table, instead of gathering a
        # (P, P, C) table per query (P*P*C floats, large for ViT-L).
        index = self.index.expand(*attn.shape)
        binned = attn.new_zeros(*attn.shape[:-1], table.shape[0]).scatter_(-1, index, attn)
        return binned @ table

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q, k (B, T, L, heads, d), class token first -> (B, T, L, C) feature to add."""
        batch, frames, length = q.shape[:3]
        q, k = q[:, :, 1:], k[:, :, 1:]
        if q.shape[2] != self.index.shape[0]:
            raise ValueError(f"TCA built for a {self.spatial_size} grid, got {q.shape[2]} patch tokens")
        out = q.new_zeros(batch, frames, length, self.w1.shape[1])
        if frames > 1:
            out[:, 1:, 1:] += self._term(q[:, 1:], k[:, :-1], self.w1)  # previous frame
            out[:, :-1, 1:] += self._term(q[:, :-1], k[:, 1:], self.w2)  # next frame
        return out


class EVLDecoder(nn.Module):
    """Query token + N decoder layers over the last N frozen blocks, with local temporal modules."""

    def __init__(self, *, num_layers: int, width: int, num_frames: int, spatial_size: tuple[int, int],
                 qkv_dim: int | None = None, num_heads: int = 12, mlp_factor: float = 4.0,
                 mlp_dropout: float = 0.5, temporal_conv: bool = True, temporal_pos_embed: bool = True,
                 temporal_cross_attention: bool = True) -> None:
        super().__init__()
        qkv_dim = qkv_dim or width
        self.num_frames = num_frames
        # The original declares a normal(0.02) init for the query but never calls it: zeros.
        self.cls_token = nn.Parameter(torch.zeros(width))
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(width, qkv_dim, num_heads, mlp_factor, mlp_dropout) for _ in range(num_layers))
        self.temporal_conv = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size=3, padding=1, groups=width) for _ in range(num_layers)
        ) if temporal_conv else None
        self.temporal_pos_embed = nn.ParameterList(
            nn.Parameter(torch.zeros(num_frames, width)) for _ in range(num_layers)
        ) if temporal_pos_embed else None
        self.cross_attention = nn.ModuleList(
            TemporalCrossAttention(spatial_size, width) for _ in range(num_layers)
        ) if temporal_cross_attention else None

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    def memory(self, index: int, block: BlockFeatures) -> torch.Tensor:
        """Layer ``index``'s memory from block features shaped (B, T, L, ...) -> (B, T*L, width)."""
        features = block.out
        batch, frames, length, width = features.shape
        if self.temporal_conv is not None:
            # Depthwise over time, independently for every token position (class tokens too).
            seq = features.permute(0, 2, 3, 1).reshape(batch * length, width, frames)
            seq = self.temporal_conv[index](seq)
            features = features + seq.reshape(batch, length, width, frames).permute(0, 3, 1, 2)
        if self.temporal_pos_embed is not None:
            features = features + self.temporal_pos_embed[index][:, None, :]
        if self.cross_attention is not None:
            features = features + self.cross_attention[index](block.q, block.k)
        return features.flatten(1, 2)

    def forward(self, blocks: Sequence[BlockFeatures]) -> list[torch.Tensor]:
        """Features of the last N blocks, each shaped (B, T, L, ...) -> the (B, width) query after each layer."""
        if len(blocks) != self.num_layers:
            raise ValueError(f"the decoder has {self.num_layers} layers but got {len(blocks)} blocks")
        frames = blocks[0].out.shape[1]
        if self.temporal_pos_embed is not None and frames != self.num_frames:
            raise ValueError(f"this EVL decoder was built for {self.num_frames} frames, got {frames}")
        batch = blocks[0].out.shape[0]
        x = self.cls_token.to(blocks[0].out.dtype).expand(batch, 1, -1)
        queries = []
        for index, layer in enumerate(self.decoder_layers):
            x = layer(x, self.memory(index, blocks[index]))
            queries.append(x[:, 0])
        return queries
