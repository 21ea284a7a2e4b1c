"""Video encoders: a clip of frames -> one embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ClipBackbone


class MeanPoolVideoEncoder(nn.Module):
    """The frozen-CLIP baseline: every frame through the image tower, unit embeddings averaged.

    The mean is not renormalised here: scoring normalises, and view fusion averages
    these raw means first.
    """

    def __init__(self, backbone: ClipBackbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised frames -> (B, E)."""
        batch, frames = video.shape[:2]
        embeddings = self.backbone.encode_image(video.flatten(0, 1))
        return F.normalize(embeddings.float(), dim=-1).view(batch, frames, -1).mean(dim=1)
