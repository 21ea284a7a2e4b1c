"""Temporal fusion modules: (B, T, E) frame features -> (B, E) video feature.

Names follow ActionCLIP/Text4Vis's ``sim_header`` values; :func:`build_fusion` is the one
place that turns a name plus typed arguments into a module.
"""

from __future__ import annotations

from torch import nn

from ...hub import FUSION_TYPES
from .conv1d import Conv1DFusion
from .lstm import LSTMFusion
from .mean import MeanFusion
from .transformer import TFLayerNorm, TransformerFusion
from .transformer_cls import TransformerClsFusion


def build_fusion(kind: str, dim: int, *, heads: int = 8, layers: int = 6, frames: int = 8,
                 max_frames: int = 77, layer_norm_eps: float = 1e-12) -> nn.Module:
    """A fusion module by its original name (``None``/``"None"`` means ``meanP``)."""
    if kind in (None, "None", "meanP", "mean"):
        return MeanFusion()
    if kind == "Conv_1D":
        return Conv1DFusion(dim)
    if kind == "LSTM":
        return LSTMFusion(dim)
    if kind == "Transf":
        return TransformerFusion(dim, heads, layers=layers, max_frames=max_frames, layer_norm_eps=layer_norm_eps)
    if kind == "Transf_cls":
        return TransformerClsFusion(dim, frames=frames, layers=layers)
    raise ValueError(f"unknown fusion '{kind}' (choose from {', '.join(FUSION_TYPES)})")


__all__ = ["FUSION_TYPES", "Conv1DFusion", "LSTMFusion", "MeanFusion", "TFLayerNorm", "TransformerClsFusion",
           "TransformerFusion", "build_fusion"]
