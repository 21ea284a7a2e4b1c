"""Fine-tuning from a trained model: ``model.init_from`` (ActionCLIP UCF/HMDB from K400,
Text4Vis fine-tuning).

The file is a training checkpoint (``final.pt``/``epoch_*.pt``, or a run folder) or an ovar
model file (``model.pt``).  Its weights are copied into the freshly built model wherever a
tensor of the same name and shape exists.  Class texts are always encoded from the new
``data.classes`` (Text4Vis's classifier and ActionCLIP's evaluation prompts are not weights).

Tensors with one row per class (a model's ``class_dependent`` keys: EVL's head) are
remapped by class name when the source's class list is known (a model file records it; a
checkpoint or run folder records its configuration, whose ``data.classes`` is read again):
a new class found in the old list (case-insensitive) takes its row, the others keep their
initialisation.  Without the source's names, same-shape rows are copied as they are and
other shapes keep their initialisation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import OvarError
from ..models.weights_io import load_file

logger = logging.getLogger(__name__)


def _state_of(path: Path) -> tuple[dict[str, torch.Tensor], str, list[str] | None]:
    """The weights in ``path``, the key prefix that maps them onto a training wrapper, and
    the source's class names (None when it does not record them)."""
    run_config = None
    if path.is_dir():
        run_config = path / "config.yaml"
        path = path / "final.pt"
    payload = load_file(path, "model.init_from checkpoint")
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        # A training checkpoint (the wrapper's own keys); epoch checkpoints carry the config.
        config = payload.get("config") if isinstance(payload.get("config"), str) else None
        if config is None and run_config is not None and run_config.is_file():
            config = run_config.read_text(encoding="utf-8")
        return payload["model"], "", _classes_of_config(config)
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        names = (payload.get("args") or {}).get("class_names")  # a model file: the model inside the wrapper
        return payload["state_dict"], "model.", list(names) if isinstance(names, (list, tuple)) else None
    raise OvarError(f"{path}: model.init_from takes a training checkpoint or an ovar model file")


def _classes_of_config(text: str | None) -> list[str] | None:
    """``data.classes`` of a saved run configuration, read again; None if it cannot be."""
    if not text:
        return None
    import yaml

    from ..data.splits import read_classes

    try:
        source = ((yaml.safe_load(text) or {}).get("data") or {}).get("classes")
        return read_classes(source) if source else None
    except Exception as exc:  # a moved or deleted class file: fall back to shape matching
        logger.info("init_from: the source's class list cannot be read again (%s)", exc)
        return None


def _class_rows(model: nn.Module) -> tuple[set[str], list[str]]:
    """Full state-dict names of ``model``'s per-class tensors, and its class names."""
    for prefix, module in model.named_modules():
        keys = getattr(module, "class_dependent", None)
        if keys and getattr(module, "class_names", None):
            return {(prefix + "." if prefix else "") + k for k in keys}, list(module.class_names)
    return set(), []


def _remap_rows(new: torch.Tensor, old: torch.Tensor, new_names: list[str],
                old_names: list[str]) -> tuple[torch.Tensor, int]:
    """``new`` with each row whose class is in ``old_names`` replaced by that class's ``old`` row."""
    lookup = {name.casefold(): i for i, name in enumerate(old_names)}
    out = new.clone()
    matched = 0
    for row, name in enumerate(new_names):
        if (j := lookup.get(name.casefold())) is not None:
            out[row] = old[j].to(out.dtype)
            matched += 1
    return out, matched


def init_from(model: nn.Module, path: str | Path) -> list[str]:
    """Copy matching weights of ``path`` into ``model``; returns the names left as initialised."""
    state, prefix, source_names = _state_of(Path(path))
    own = model.state_dict()
    class_keys, names = _class_rows(model)
    loaded, skipped = {}, []
    for key, value in state.items():
        name = key if key in own else prefix + key
        if name in class_keys and source_names and len(source_names) == value.shape[0] \
                and own[name].shape[1:] == value.shape[1:]:
            loaded[name], matched = _remap_rows(own[name], value, names, source_names)
            logger.info("init_from %s: %s: %d of %d classes taken from the source by name", path, name,
                        matched, len(names))
        elif name in own and own[name].shape == value.shape:
            loaded[name] = value
        elif name in own:
            skipped.append(name)
    if not loaded:
        raise OvarError(f"{path}: no weights match this recipe's model (another recipe or backbone?)")
    model.load_state_dict(loaded, strict=False)
    kept = sorted(set(own) - set(loaded))
    if skipped:
        logger.info("init_from %s: %d tensor(s) of another shape keep their initialisation: %s",
                    path, len(skipped), ", ".join(skipped[:5]))
    return kept
