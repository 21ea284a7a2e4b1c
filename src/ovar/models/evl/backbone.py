"""EVL's frozen image tower: open_clip's ViT run block by block, exposing q, k and outputs.

EVL's decoder reads, for each of the last N blocks, the block output tokens and the
attention queries/keys (for temporal cross-attention). open_clip's blocks do not return
q and k, so each block is evaluated here from its own weights (``ln_1``, ``attn``'s
packed ``in_proj``, ``out_proj``, ``ln_2``, ``mlp``), which are not copied.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Names (in an open_clip image tower) of the parameters that reach the block features the
# decoder reads: everything but ln_post and proj.
USED_PREFIXES = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "transformer.")

class BlockFeatures(NamedTuple):
    """One backbone block's outputs for ``N`` images of ``L`` tokens (class token first)."""

    out: torch.Tensor  # (N, L, width): block output after both residuals
    q: torch.Tensor  # (N, L, heads, head_dim): projected queries incl. bias, before scaling
    k: torch.Tensor  # (N, L, heads, head_dim): projected keys incl. bias


class FrozenClipBlocks(nn.Module):
    """A frozen open_clip ``VisionTransformer`` that returns the last ``num_blocks`` blocks' features.

    ``visual`` is registered (so ``.to()`` moves it) but by default never trained: its
    parameters have ``requires_grad=False``, it always runs in eval mode and without
    autograd.  ``trainable = True`` (EVL's ``--finetune_backbone``) lets gradients through;
    it still runs in eval mode (CLIP's image tower has no dropout or batch statistics).
    ``ln_post``/``proj`` are not used (EVL reads block features, not the image embedding).
    """

    def __init__(self, visual: nn.Module, num_blocks: int) -> None:
        super().__init__()
        blocks = visual.transformer.resblocks
        if not 1 <= num_blocks <= len(blocks):
            raise ValueError(f"num_blocks must be in 1..{len(blocks)}, got {num_blocks}")
        self.visual = visual
        self.num_blocks = num_blocks
        self.trainable = False
        for param in visual.parameters():
            param.requires_grad_(False)
        self.visual.eval()

    @property
    def width(self) -> int:
        return int(self.visual.class_embedding.shape[-1])

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.visual.grid_size)

    @property
    def tokens(self) -> int:
        """Tokens per frame, L = 1 + grid height * grid width."""
        return int(self.visual.positional_embedding.shape[0])

    def train(self, mode: bool = True) -> "FrozenClipBlocks":
        # Frozen: switching the owner to training mode must not affect the backbone.
        super().train(False)
        return self

    def used_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The image tower's parameters that reach the block features (all but ``ln_post``/``proj``)."""
        return [(name, param) for name, param in self.visual.named_parameters() if name.startswith(USED_PREFIXES)]

    def forward(self, images: torch.Tensor) -> list[BlockFeatures]:
        """(N, 3, S, S) normalised images -> features of the last ``num_blocks`` blocks, in order."""
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            return self._forward(images)

    def _forward(self, images: torch.Tensor) -> list[BlockFeatures]:
        visual = self.visual
        dtype = visual.conv1.weight.dtype
        x = _patch_embed(images.to(dtype), visual.conv1.weight)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.ln_pre(x)
        blocks = visual.transformer.resblocks
        kept: list[BlockFeatures] = []
        for index, block in enumerate(blocks):
            x, q, k = _run_block(block, x)
            if index >= len(blocks) - self.num_blocks:
                kept.append(BlockFeatures(x, q, k))
        return kept


def _patch_embed(images: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) -> (N, grid^2, width): CLIP's bias-free patch conv as a linear over flattened patches.

    Mathematically the conv; the linear form sums in the original's order, which keeps
    float32 results closest to the released code.
    """
    size = weight.shape[-1]
    patches = images.unfold(2, size, size).unfold(3, size, size)  # (N, 3, gh, gw, p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)  # (N, gh*gw, 3*p*p)
    return F.linear(patches, weight.flatten(1))


def _run_block(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pre-LN residual block of open_clip; also returns its per-head q and k."""
    attn: nn.MultiheadAttention = block.attn
    heads = attn.num_heads
    n, length, width = x.shape
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (t.reshape(n, length, heads, width // heads) for t in qkv.chunk(3, dim=-1))
    mixed = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    mixed = mixed.transpose(1, 2).reshape(n, length, width)
    x = x + block.ls_1(attn.out_proj(mixed))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, q, k
