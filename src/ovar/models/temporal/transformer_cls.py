"""ActionCLIP's 'Transf_cls' fusion: a CLS token read out of a post-norm encoder."""

from __future__ import annotations

import torch
from torch import nn


class TransformerClsFusion(nn.Module):
    """(B, T, E) -> (B, E): prepend a CLS token, add a learned (T+1)-row position
    embedding, run ``nn.TransformerEncoder`` (post-norm, ReLU, FFN ``ffn_dim``, dropout,
    final LayerNorm) and return the CLS output. ``frames`` fixes the position table."""

    def __init__(self, dim: int, *, frames: int, heads: int = 8, layers: int = 6, ffn_dim: int = 2048,
                 dropout: float = 0.1) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ffn_dim, dropout=dropout,
                                           activation="relu", batch_first=True, norm_first=False)
        # enable_nested_tensor only matters for padded batches; off avoids its warning.
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, frames + 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.encoder.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, length = frames.shape[:2]
        if length + 1 != self.pos_embed.shape[1]:
            raise ValueError(f"built for {self.pos_embed.shape[1] - 1} frames, got {length}")
        x = torch.cat([self.cls_token.expand(batch, -1, -1).to(frames.dtype), frames], dim=1)
        x = self.encoder(x + self.pos_embed.to(frames.dtype))
        return x[:, 0]
