"""Mixing two tensors by a ratio: the one rule behind weight patching and interpolation."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ModelError


def check_ratio(ratio: float, what: str = "interpolation ratio", error: type[Exception] = ModelError) -> float:
    """``ratio`` if it lies in [0, 1], else ``error`` naming ``what`` (an option, a file)."""
    if not 0.0 <= ratio <= 1.0:
        raise error(f"{what} must lie in [0, 1], got {ratio}")
    return ratio


def mix(a: Tensor, b: Tensor, ratio: float, key: str) -> Tensor:
    """``ratio * a + (1 - ratio) * b`` in float32, in ``b``'s dtype and device."""
    if a.shape != b.shape:
        raise ModelError(f"key '{key}' has shapes {tuple(a.shape)} and {tuple(b.shape)}, cannot mix them")
    return (ratio * a.to(b.device, torch.float32) + (1.0 - ratio) * b.float()).to(b.dtype)
