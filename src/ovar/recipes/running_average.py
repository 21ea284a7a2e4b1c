"""Uniform weight averaging across epochs, kept on disk as a running sum.

Open-VCLIP and FROSTER evaluate the mean of their epoch weights (epochs 2..last). Keeping
every epoch checkpoint costs one full model plus optimiser state per epoch; a running sum
costs one model. The sum is saved after every epoch with the epochs it holds, so a
resumed run that replays an epoch does not count it twice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..train.checkpoint import load, save_atomic


class RunningAverage:
    """Sum of floating-point state-dict tensors over epochs ``start..end`` (1-based, inclusive;
    ``end=None`` means the last), stored at ``path``."""

    def __init__(self, path: str | Path, start: int = 2, end: int | None = None) -> None:
        self.path = Path(path)
        self.start, self.end = start, end

    def wants(self, epoch: int) -> bool:
        return epoch >= self.start and (self.end is None or epoch <= self.end)

    def _read(self) -> dict:
        if self.path.is_file():
            return load(self.path)
        return {"sum": {}, "epochs": []}

    def add(self, state: dict[str, torch.Tensor], epoch: int) -> bool:
        """Add ``state`` (the weights after ``epoch``); False when outside the range or already in."""
        if not self.wants(epoch):
            return False
        data = self._read()
        if epoch in data["epochs"]:
            return False
        total = data["sum"]
        for key, value in state.items():
            if not value.is_floating_point():
                continue
            value = value.detach().to("cpu", torch.float64)  # float64: many epochs sum without drift
            total[key] = total[key] + value if key in total else value.clone()
        data["epochs"].append(epoch)
        save_atomic(data, self.path)
        return True

    def epochs(self) -> list[int]:
        return list(self._read()["epochs"])

    def average(self) -> dict[str, torch.Tensor] | None:
        """The mean (float32) of the summed epochs, or None when no epoch was added."""
        data = self._read()
        if not data["epochs"]:
            return None
        count = len(data["epochs"])
        return {k: (v / count).float() for k, v in data["sum"].items()}
