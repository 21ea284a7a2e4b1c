"""Released checkpoints of other systems -> ovar models (then saved as ovar model files)."""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from ..models.zero_shot import VideoTextModel
from .actionclip import PathLike, convert_actionclip, convert_mmaction2
from .evl import convert_evl
from .text4vis import convert_text4vis

SOURCES = ("actionclip", "text4vis", "mmaction2-actionclip", "evl")


def convert_checkpoint(source: str, checkpoint: PathLike, clip: PathLike | None = None,
                       **options: Any) -> VideoTextModel:
    """Load ``checkpoint`` written by ``source``'s own code as an ovar model.

    ``options``: ``fusion`` (override the inferred fusion type), ``frames``, ``templates``;
    ActionCLIP also ``fusion_weights`` (a file whose ``fusion_model_state_dict`` is used).
    ``clip`` is the original CLIP file (required for Text4Vis: the frozen text tower; and
    for EVL: the frozen image tower). EVL also takes ``num_heads`` and ``class_names``.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if source == "actionclip":
        return convert_actionclip(checkpoint, **options)
    if source != "actionclip" and "fusion_weights" in options:
        raise ModelError(f"fusion_weights applies to ActionCLIP checkpoints only, not '{source}'")
    if source == "evl":
        if "fusion" in options:
            raise ModelError("EVL has no fusion module (--fusion does not apply)")
        return convert_evl(checkpoint, clip, **options)
    if source == "text4vis":
        return convert_text4vis(checkpoint, clip, **options)
    if source == "mmaction2-actionclip":
        if options.pop("fusion", "Transf") != "Transf":
            raise ModelError("MMAction2's ActionCLIP has a 'Transf' adapter only")
        return convert_mmaction2(checkpoint, **options)
    raise ModelError(f"unknown checkpoint source '{source}' (choose from {', '.join(SOURCES)})")


__all__ = ["SOURCES", "convert_actionclip", "convert_checkpoint", "convert_evl", "convert_mmaction2",
           "convert_text4vis"]
