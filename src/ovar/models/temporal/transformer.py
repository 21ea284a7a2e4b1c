"""'Transf' fusion (ActionCLIP, Text4Vis, MMAction2's ActionCLIP adapter).

Frame features plus a learned frame-position embedding go through CLIP-style residual
attention blocks; the *un-embedded* input is added back and the result averaged over time.
"""

from __future__ import annotations

from functools import partial

import torch
from open_clip.transformer import QuickGELU, ResidualAttentionBlock
from torch import nn


class TFLayerNorm(nn.Module):
    """LayerNorm written the TensorFlow way (eps inside the square root), computed in fp32.

    ActionCLIP/Text4Vis use eps 1e-12 (MMAction2's port a standard 1e-5).
    """

    def __init__(self, dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return (self.weight * x + self.bias).to(dtype)


class TransformerFusion(nn.Module):
    """(B, T, E) -> (B, E): position embedding, ``layers`` blocks, residual, mean over T.

    ``heads`` is CLIP's *text* width // 64 in the originals (not E // 64); ``max_frames``
    is the position table size (77 in ActionCLIP/Text4Vis, num_segs in MMAction2).
    """

    def __init__(self, dim: int, heads: int, *, layers: int = 6, max_frames: int = 77,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.frame_position_embeddings = nn.Embedding(max_frames, dim)
        norm = partial(TFLayerNorm, eps=layer_norm_eps)
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(dim, heads, act_layer=QuickGELU, norm_layer=norm, batch_first=True)
            for _ in range(layers))
        self.apply(_init_weights)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        length = frames.shape[1]
        if length > self.max_frames:
            raise ValueError(f"{length} frames but the position table has {self.max_frames} rows")
        positions = torch.arange(length, device=frames.device)
        x = frames + self.frame_position_embeddings(positions).to(frames.dtype)
        for block in self.resblocks:
            x = block(x)
        # The residual deliberately skips the position embedding, as in the originals.
        return (x + frames).mean(dim=1)


def _init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for Linear/Embedding, zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, TFLayerNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.normal_(module.in_proj_weight, std=0.02)
        nn.init.zeros_(module.in_proj_bias)
