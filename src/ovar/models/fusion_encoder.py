"""A video encoder that fuses raw per-frame CLIP features with a temporal module."""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ClipBackbone


class FusionVideoEncoder(nn.Module):
    """Frames through ``backbone.encode_image`` -> (B, T, E) raw features -> ``fusion`` -> (B, E).

    Unlike the zero-shot mean pool, the frame features are *not* normalised before fusion
    (ActionCLIP and Text4Vis fuse the projected features as they come).
    """

    def __init__(self, backbone: ClipBackbone, fusion: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised frames -> (B, T, E) image embeddings."""
        batch, frames = video.shape[:2]
        return self.backbone.encode_image(video.flatten(0, 1)).view(batch, frames, -1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, E) video embeddings (not normalised)."""
        return self.fusion(self.frame_features(video))
