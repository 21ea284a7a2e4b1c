"""EVL as an ovar model: frozen CLIP blocks + temporal decoder + a closed-set linear head.

Input layout is ovar's usual (B, T, 3, S, S) normalised clips (the original code takes
(B, 3, T, S, S); permute with ``video.transpose(1, 2)``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...errors import ModelError
from ..backbone import ClipBackbone
from ..zero_shot import VideoTextModel
from .backbone import BlockFeatures, FrozenClipBlocks
from .decoder import EVLDecoder


class EVLVideoEncoder(nn.Module):
    """(B, T, 3, S, S) clips -> (B, width) final decoder query (the head's input)."""

    def __init__(self, visual: nn.Module, *, num_layers: int, num_frames: int, num_heads: int,
                 qkv_dim: int | None = None, mlp_factor: float = 4.0, mlp_dropout: float = 0.5,
                 temporal_conv: bool = True, temporal_pos_embed: bool = True,
                 temporal_cross_attention: bool = True) -> None:
        super().__init__()
        # Named `backbone` so ovar's model file stores these (shared) weights only once.
        self.backbone = FrozenClipBlocks(visual, num_layers)
        self.decoder = EVLDecoder(
            num_layers=num_layers, width=self.backbone.width, num_frames=num_frames,
            spatial_size=self.backbone.grid_size, qkv_dim=qkv_dim, num_heads=num_heads, mlp_factor=mlp_factor,
            mlp_dropout=mlp_dropout, temporal_conv=temporal_conv, temporal_pos_embed=temporal_pos_embed,
            temporal_cross_attention=temporal_cross_attention)

    def block_features(self, clips: torch.Tensor) -> list[BlockFeatures]:
        """Last-N block features, each tensor reshaped to (B, T, L, ...)."""
        if clips.dim() != 5:
            raise ValueError(f"expected clips shaped (B, T, 3, S, S), got {tuple(clips.shape)}")
        batch, frames = clips.shape[:2]
        blocks = self.backbone(clips.flatten(0, 1))
        return [BlockFeatures(*(t.float().unflatten(0, (batch, frames)) for t in block)) for block in blocks]

    def forward_intermediates(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """``block_out`` (N, B, T, L, width), ``queries`` (N, B, width), ``embedding`` (B, width)."""
        blocks = self.block_features(clips)
        queries = self.decoder(blocks)
        return {"block_out": torch.stack([b.out for b in blocks]), "queries": torch.stack(queries),
                "embedding": queries[-1]}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.block_features(clips))[-1]


class EVLModel(VideoTextModel):
    """EVL: a closed-set video classifier over ``class_names`` on a frozen CLIP image tower.

    ``forward(clips)`` gives (B, num_classes) logits. For :func:`ovar.predict`,
    :meth:`classifier` maps requested label names to head rows (they must be among
    ``class_names``) and :meth:`probabilities` is the softmax over those rows. EVL's own
    multi-view rule (softmax per view, then the mean) is :attr:`view_fusion`.
    The CLIP weights are stored in saved model files; they train only with the recipe's
    ``finetune_backbone``.
    """

    kind = "evl"
    class_dependent = ("head.2.weight", "head.2.bias")  # one row per class (init_from remaps them by name)
    view_fusion = "mean_softmax"  # EVL: softmax per view, then the mean over views

    def __init__(self, backbone: ClipBackbone, *, class_names: Sequence[str], num_frames: int = 8,
                 num_layers: int = 4, num_heads: int | None = None, qkv_dim: int | None = None,
                 mlp_factor: float = 4.0, mlp_dropout: float = 0.5, cls_dropout: float = 0.5,
                 temporal_conv: bool = True, temporal_pos_embed: bool = True,
                 temporal_cross_attention: bool = True) -> None:
        width = int(backbone.clip.visual.class_embedding.shape[-1])
        depth = len(backbone.clip.visual.transformer.resblocks)
        if not 1 <= num_layers <= depth:  # one decoder block reads each of the last num_layers blocks
            raise ModelError(f"recipe.num_layers={num_layers}: EVL's decoder reads the last num_layers blocks of "
                             f"the image tower, and backbone '{backbone.name}' has {depth} "
                             f"(set recipe.num_layers to 1..{depth})")
        num_heads = num_heads or max(1, width // 64)  # EVL's presets: 64-wide heads
        encoder = EVLVideoEncoder(
            backbone.clip.visual, num_layers=num_layers, num_frames=num_frames, num_heads=num_heads,
            qkv_dim=qkv_dim, mlp_factor=mlp_factor, mlp_dropout=mlp_dropout, temporal_conv=temporal_conv,
            temporal_pos_embed=temporal_pos_embed, temporal_cross_attention=temporal_cross_attention)
        super().__init__(backbone, encoder, frames=num_frames, templates=[])
        for param in backbone.parameters():  # text tower too: EVL uses no text
            param.requires_grad_(False)
        self.class_names = list(class_names)
        if not self.class_names:
            raise ValueError("EVL needs at least one class name")
        self.head = nn.Sequential()
        self.head.add_module("0", nn.LayerNorm(width))
        self.head.add_module("1", nn.Dropout(cls_dropout))
        self.head.add_module("2", nn.Linear(width, len(self.class_names)))
        self.build_args = {
            "class_names": self.class_names, "num_frames": num_frames, "num_layers": num_layers,
            "num_heads": num_heads, "qkv_dim": qkv_dim or width, "mlp_factor": mlp_factor,
            "mlp_dropout": mlp_dropout, "cls_dropout": cls_dropout, "temporal_conv": temporal_conv,
            "temporal_pos_embed": temporal_pos_embed, "temporal_cross_attention": temporal_cross_attention,
        }

    def train(self, mode: bool = True) -> "EVLModel":
        super().train(mode)
        self.backbone.eval()  # frozen: no mode switches (FrozenClipBlocks also guards itself)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Decoder and head parameters (what EVL's optimiser trains)."""
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised clips -> (B, num_classes) logits."""
        return self.head(self.encode_video(clips))

    def forward_from_features(self, blocks: Sequence[BlockFeatures]) -> torch.Tensor:
        """Logits from precomputed last-N block features (each (B, T, L, ...), float32).

        ``forward(clips)`` equals ``forward_from_features(video_encoder.block_features(clips))``;
        the split lets a training run reuse cached frozen-backbone features.
        """
        return self.head(self.video_encoder.decoder(list(blocks))[-1])

    def classifier(self, names: Sequence[str], templates=None, *, descriptions=None, cache=True) -> torch.Tensor:
        """Indices of ``names`` in :attr:`class_names` (case-insensitive); texts are not used."""
        lookup = {name.casefold(): i for i, name in enumerate(self.class_names)}
        unknown = [name for name in names if name.casefold() not in lookup]
        if unknown:
            raise ModelError(f"EVL is a closed-set classifier: '{unknown[0]}' is not one of its "
                             f"{len(self.class_names)} classes")
        return torch.tensor([lookup[name.casefold()] for name in names], dtype=torch.long, device=self.device)

    def logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, width) embeddings, (C',) class indices -> (B, C') head logits."""
        return self.head(video_embeddings.float())[:, classifier.to(video_embeddings.device)]

    def view_fused_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(V, C) logits of V views of one video -> (C,) EVL's test score (mean of per-view softmax)."""
        from ..view_fusion import fuse_scores

        return fuse_scores(logits.softmax(dim=-1)[None], self.view_fusion)[0]
