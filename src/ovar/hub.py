"""Where every model comes from: one explicit table of names to builders, and one loader.

The tables name classes and functions as ``"module:attribute"`` strings, imported when
used, so that reading them (``ovar --help``, ``ovar models``) imports no torch:

- :data:`MODEL_KINDS`: the ``kind`` stored in an ovar model file -> its model class;
- :data:`RECIPES`: a training recipe's name -> its :class:`ovar.recipes.Recipe` class;
- :data:`CHECKPOINT_SOURCES`: an original codebase -> the converter of its checkpoints.

:func:`load_model` (:mod:`ovar.models.loading`) turns anything ovar writes or reads into a
ready model: a backbone tag, an ovar model file, an ``ovar train`` run folder or any
checkpoint in it (``final.pt``, ``best.pt``, ``epoch_NNNN.pt``, averaged weights), an
``ovar export`` folder or ``hf-hub:`` name, or an original codebase's checkpoint.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ModelError

MODEL_KINDS: dict[str, str] = {
    "actionclip": "ovar.models.actionclip:ActionCLIPModel",
    "text4vis": "ovar.models.text4vis:Text4VisModel",
    "evl": "ovar.models.evl.model:EVLModel",
    "open_vclip": "ovar.models.open_vclip:OpenVCLIPModel",
    "froster": "ovar.models.open_vclip:FrosterModel",
}

RECIPES: dict[str, str] = {
    "actionclip": "ovar.recipes.actionclip:ActionCLIPRecipe",
    "text4vis": "ovar.recipes.text4vis:Text4VisRecipe",
    "evl": "ovar.recipes.evl:EVLRecipe",
    "open_vclip": "ovar.recipes.open_vclip:OpenVCLIPRecipe",
    "froster": "ovar.recipes.froster:FrosterRecipe",
    "text4vis_nce": "ovar.recipes.text4vis_nce:Text4VisNCERecipe",
}

# Names the original codebases give their temporal modules, read by the model classes and
# by `ovar convert`'s parser (which must not import torch).
FUSION_TYPES = ("meanP", "Conv_1D", "LSTM", "Transf", "Transf_cls")  # ActionCLIP/Text4Vis fusion
TEMPORAL_TYPES = ("none", "expand_temporal_view", "expand_temporal_view_step2",
                  "expand_temporal_view_step3")  # Open-VCLIP/FROSTER temporal attention

CHECKPOINT_SOURCES: dict[str, str] = {
    "actionclip": "ovar.models.convert.actionclip:convert_actionclip",
    "text4vis": "ovar.models.convert.text4vis:convert_text4vis",
    "mmaction2-actionclip": "ovar.models.convert.actionclip:convert_mmaction2",
    "evl": "ovar.models.convert.evl:convert_evl",
    "open_vclip": "ovar.models.convert.open_vclip:convert_open_vclip",
    "froster": "ovar.models.convert.open_vclip:convert_froster",
}

MODEL_FILE = "model.pt"  # the model `ovar train` writes into its run folder
RUN_CONFIG = "config.yaml"  # the configuration a run folder records
# What a run folder offers when it has no model file, best first.
RUN_CHECKPOINTS = ("final.pt", "checkpoints/best.pt")


def resolve(entry: str) -> Any:
    """The object a table entry ``"module:attribute"`` names (imported now)."""
    module, _, attribute = entry.partition(":")
    return getattr(importlib.import_module(module), attribute)


def model_class(kind: str, where: object = "model file") -> type:
    """The model class of a model file's ``kind``; ModelError naming ``where`` if unknown."""
    if kind not in MODEL_KINDS:
        raise ModelError(f"{where}: unknown model kind '{kind}' (known: {', '.join(sorted(MODEL_KINDS))})")
    return resolve(MODEL_KINDS[kind])


def recipe_class(name: str) -> type | None:
    """The built-in recipe class called ``name``, or None."""
    return resolve(RECIPES[name]) if name in RECIPES else None


def converter(source: str):
    """The function converting ``source``'s checkpoints; ModelError if unknown."""
    if source not in CHECKPOINT_SOURCES:
        raise ModelError(f"unknown checkpoint source '{source}' (choose from {', '.join(CHECKPOINT_SOURCES)})")
    return resolve(CHECKPOINT_SOURCES[source])


def load_model(*args: Any, **kwargs: Any) -> Any:
    """:func:`ovar.models.loading.load_model`: a ready model from any name, file, run folder,
    export or original checkpoint (imported when called, so this table stays light)."""
    return resolve("ovar.models.loading:load_model")(*args, **kwargs)
