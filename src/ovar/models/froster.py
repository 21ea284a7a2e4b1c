"""FROSTER's model file kind (the network is Open-VCLIP's)."""

from .open_vclip import FrosterModel

__all__ = ["FrosterModel"]
