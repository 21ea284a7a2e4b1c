"""Released checkpoints of other systems -> ovar models (then saved as ovar model files)."""

from __future__ import annotations

from typing import Any

from ...errors import ModelError
from ...hub import CHECKPOINT_SOURCES, converter
from ..zero_shot import VideoTextModel
from .actionclip import PathLike, convert_actionclip, convert_mmaction2
from .evl import convert_evl
from .open_vclip import convert_froster, convert_open_vclip
from .text4vis import convert_text4vis

SOURCES = tuple(CHECKPOINT_SOURCES)  # the original codebases, named in ovar.hub's one table


def convert_checkpoint(source: str, checkpoint: PathLike, clip: PathLike | None = None,
                       **options: Any) -> VideoTextModel:
    """Load ``checkpoint`` written by ``source``'s own code as an ovar model.

    ``options``: ``fusion`` (override the inferred fusion type), ``frames``, ``templates``;
    ActionCLIP also ``fusion_weights`` (a file whose ``fusion_model_state_dict`` is used).
    ``clip`` is the original CLIP file (required for Text4Vis: the frozen text tower; and
    for EVL: the frozen image tower; for Open-VCLIP: the text tower of its classifier, and
    for patching). EVL also takes ``num_heads`` and ``class_names``; Open-VCLIP and FROSTER
    ``temporal`` and ``patch_ratio`` (interpolate every CLIP tensor towards ``clip``).
    """
    options = {k: v for k, v in options.items() if v is not None}
    for key in ("patch_ratio", "temporal"):
        if key in options and source not in ("open_vclip", "froster"):
            raise ModelError(f"'{key}' applies to Open-VCLIP and FROSTER checkpoints only, not '{source}'")
    if source in ("open_vclip", "froster"):
        for key in ("fusion", "fusion_weights", "num_heads", "class_names"):
            if key in options:
                raise ModelError(f"{source} checkpoints take no '{key}' option")
        return converter(source)(checkpoint, clip, **options)
    if source == "actionclip":
        return converter(source)(checkpoint, **options)
    if source != "actionclip" and "fusion_weights" in options:
        raise ModelError(f"fusion_weights applies to ActionCLIP checkpoints only, not '{source}'")
    if source == "evl":
        if "fusion" in options:
            raise ModelError("EVL has no fusion module (--fusion does not apply)")
        return converter(source)(checkpoint, clip, **options)
    if source == "text4vis":
        return converter(source)(checkpoint, clip, **options)
    if source == "mmaction2-actionclip":
        if options.pop("fusion", "Transf") != "Transf":
            raise ModelError("MMAction2's ActionCLIP has a 'Transf' adapter only")
        return converter(source)(checkpoint, **options)
    return converter(source)  # raises: unknown source


__all__ = ["SOURCES", "convert_actionclip", "convert_checkpoint", "convert_evl", "convert_froster",
           "convert_mmaction2", "convert_open_vclip", "convert_text4vis", "detect_source"]


def detect_source(obj: dict[str, Any]) -> str | None:
    """Which original code wrote a loaded checkpoint dict, from its layout; None if unknown."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("model_state"), dict):
        keys = [k[len("module."):] if k.startswith("module.") else k for k in obj["model_state"]]
        if any(k.startswith("model.visual.") for k in keys):
            return "froster" if any(k.startswith("projector_") for k in keys) else "open_vclip"
    if isinstance(obj.get("model"), dict) and any(".decoder." in k or k.startswith("decoder.") for k in obj["model"]):
        return "evl"
    if isinstance(obj.get("fusion_model_state_dict"), dict):
        return "actionclip"
    state = obj.get("model_state_dict")
    if isinstance(state, dict) and any(k.replace("module.", "").startswith("fusion_model.") for k in state):
        return "text4vis"
    if isinstance(obj.get("state_dict"), dict) and any(k.startswith("adapter.") for k in obj["state_dict"]):
        return "mmaction2-actionclip"
    return None
