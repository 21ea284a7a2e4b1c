"""Importing this module registers every recipe that ships with ovar."""

from __future__ import annotations

import importlib

# Each module registers itself with @register_recipe; a missing one is simply not offered.
for _module in ("actionclip", "text4vis", "text4vis_nce", "evl", "open_vclip", "froster"):
    try:
        importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{_module}":
            raise
