"""ActionCLIP's 'LSTM' fusion: a one-layer LSTM over the frames, residual, mean."""

from __future__ import annotations

import torch
from torch import nn


class LSTMFusion(nn.Module):
    """Unidirectional batch-first LSTM with hidden size E, plus the input, averaged over T."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=1, batch_first=True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, E) -> (B, E)."""
        # The original runs the LSTM in fp32 even when the rest is half precision.
        hidden, _ = self.lstm(frames.float())
        return (hidden.to(frames.dtype) + frames).mean(dim=1)
