"""'meanP' fusion: the average of the frame features."""

from __future__ import annotations

import torch
from torch import nn


class MeanFusion(nn.Module):
    """(B, T, E) raw frame features -> (B, E) by averaging over time; no parameters."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=1)
