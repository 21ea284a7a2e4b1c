"""Fine-tuning from a trained model: ``model.init_from`` (ActionCLIP UCF/HMDB from K400,
Text4Vis fine-tuning).

The file is a training checkpoint (``final.pt``/``epoch_*.pt``, or a run folder) or an ovar
model file (``model.pt``).  Its weights are copied into the freshly built model wherever a
tensor of the same name and shape exists.  Tensors that depend on the class list (EVL's
head rows) have another shape for a new dataset and keep their initialisation; class
texts are always encoded from the new ``data.classes`` (Text4Vis's classifier and
ActionCLIP's evaluation prompts are not weights).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import OvarError
from ..models.weights_io import load_file

logger = logging.getLogger(__name__)


def _state_of(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The weights in ``path`` and the key prefix that maps them onto a training wrapper."""
    if path.is_dir():
        path = path / "final.pt"
    payload = load_file(path, "model.init_from checkpoint")
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        return payload["model"], ""  # a training checkpoint: the wrapper's own keys
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        return payload["state_dict"], "model."  # a model file: the VideoTextModel inside the wrapper
    raise OvarError(f"{path}: model.init_from takes a training checkpoint or an ovar model file")


def init_from(model: nn.Module, path: str | Path) -> list[str]:
    """Copy matching weights of ``path`` into ``model``; returns the names left as initialised."""
    state, prefix = _state_of(Path(path))
    own = model.state_dict()
    loaded, skipped = {}, []
    for key, value in state.items():
        name = key if key in own else prefix + key
        if name in own and own[name].shape == value.shape:
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
