"""ActionCLIP's 'Conv_1D' fusion: a depthwise temporal convolution initialised as a shift."""

from __future__ import annotations

import torch
from torch import nn


class Conv1DFusion(nn.Module):
    """Depthwise Conv1d (kernel 3, no bias) + residual + mean over time.

    Initialised as a fixed temporal shift: the first quarter of the channels takes frame
    t-1, the middle half is the identity, the last quarter takes frame t+1 (trainable).

    ``reshape_bug=True`` reproduces the released code, which *reshapes* (B, T, E) to
    (B, E, T) instead of transposing it, so the convolution mixes a scrambled layout;
    released checkpoints were trained that way, so parity needs it.
    """

    def __init__(self, dim: int, *, reshape_bug: bool = True) -> None:
        super().__init__()
        self.reshape_bug = reshape_bug
        self.shift = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=False)
        self.reset_shift()

    @torch.no_grad()
    def reset_shift(self) -> None:
        """Set the kernel to the temporal-shift pattern."""
        dim = self.shift.weight.shape[0]
        quarter = dim // 4
        weight = torch.zeros_like(self.shift.weight)
        weight[:quarter, 0, 0] = 1.0  # kernel tap 0 reads t-1 (padding 1)
        weight[quarter:dim - quarter, 0, 1] = 1.0
        weight[dim - quarter:, 0, 2] = 1.0  # tap 2 reads t+1
        self.shift.weight.copy_(weight)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, E) -> (B, E)."""
        batch, length, dim = frames.shape
        if self.reshape_bug:
            channels_first = frames.reshape(batch, dim, length)
        else:
            channels_first = frames.transpose(1, 2)
        shifted = self.shift(channels_first.float()).permute(0, 2, 1)
        return (shifted.to(frames.dtype) + frames).mean(dim=1)
