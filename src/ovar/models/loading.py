"""Loading any model ovar writes or reads: a backbone tag, an ovar model file, an ``ovar
train`` run folder or any checkpoint in it, an ``ovar export`` folder or ``hf-hub:`` name,
or an original codebase's checkpoint. Which class builds what comes from :mod:`ovar.hub`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ModelError, OvarError
from ..hub import MODEL_FILE, RUN_CONFIG, RUN_CHECKPOINTS, resolve
from .backbone import load_backbone
from .zero_shot import VideoTextModel




def load_model(name: str = "ViT-B-16", pretrained: str | None = "openai", *, device: str | torch.device = "cpu",
               frames: int | None = None, templates: str | Sequence[str] | None = None,
               quick_gelu: bool | None = None, checkpoint: str | os.PathLike | None = None,
               clip: str | os.PathLike | None = None, source: str | None = None,
               patch_ratio: float | None = None, **convert_options) -> VideoTextModel:
    """A model for :func:`ovar.predict`, ``ovar eval`` and ``ovar serve``.

    With ``checkpoint``: an ovar model file, an ``ovar train`` run folder or any checkpoint
    it writes (``final.pt``, ``best.pt``, ``epoch_NNNN.pt``, averaged weights: rebuilt
    from the run's ``config.yaml``), an ``ovar export`` folder, or a checkpoint written by
    one of the original codebases (ActionCLIP, Text4Vis, EVL, Open-VCLIP, FROSTER: the
    layout is recognised, or named with ``source``), converted on the fly; ``clip`` is the
    original CLIP file some of them need, and ``patch_ratio`` patches Open-VCLIP/FROSTER
    weights towards it; ``convert_options`` go to :func:`ovar.models.convert.convert_checkpoint`.
    ``pretrained`` naming an exported folder, or ``hf-hub:org/name``, loads that whole
    model. Otherwise the frozen-CLIP zero-shot model on backbone ``name`` with weights
    ``pretrained``.
    """
    from .export import is_model_reference

    if checkpoint is not None:
        model = _load_checkpoint(Path(checkpoint), device=device, frames=frames, templates=templates, clip=clip,
                                 source=source, patch_ratio=patch_ratio, options=convert_options)
        return _with_defaults(model, frames, templates)
    if convert_options:
        raise TypeError(f"unexpected arguments without a checkpoint: {', '.join(convert_options)}")
    if is_model_reference(pretrained):  # an exported folder or hf-hub:org/name: the whole model
        from .export import load_exported

        return _with_defaults(load_exported(str(pretrained), device=device), frames, templates)

    backbone = load_backbone(name, pretrained, device=device, quick_gelu=quick_gelu)
    return VideoTextModel(backbone, frames=frames or 8, templates=templates or "open_vclip").eval()


def _load_checkpoint(path: Path, *, device, frames, templates, clip, source, patch_ratio, options) -> VideoTextModel:
    from .export import is_exported_folder, load_exported
    from .model_file import is_model_file, load_model_file
    from .weights_io import load_file

    plain = patch_ratio is None and clip is None and not options and source is None
    if path.is_dir() and is_exported_folder(path):
        if not plain:
            raise ModelError(f"{path}: an exported ovar model takes no CLIP file, patch ratio or source")
        return load_exported(str(path), device=device)
    if path.is_dir():
        path = run_model_path(path)
    if source is None:
        payload = load_file(path, "checkpoint")
        if is_model_file(payload) or is_training_checkpoint(payload):
            if not plain:
                raise ModelError(f"{path}: an ovar model or run checkpoint takes no CLIP file or patch ratio "
                                 f"(use `ovar weights interpolate` to patch it)")
            if is_model_file(payload):
                return load_model_file(path, device=device)
            return model_from_run_checkpoint(path, payload, device=device)
        from .convert import detect_source

        source = detect_source(payload)
        if source is None:
            raise ModelError(f"{path}: not an ovar model file or run checkpoint, and not a checkpoint layout ovar "
                             f"recognises (pass the source, or convert it with `ovar convert --from ...`)")
    from .convert import convert_checkpoint

    options = {"frames": frames, "templates": templates, "patch_ratio": patch_ratio, **options}
    return convert_checkpoint(source, path, clip=clip, **options).to(device).eval()


def run_model_path(run_dir: Path) -> Path:
    """The file a run folder is read from: its model file, else its last checkpoint."""
    for name in (MODEL_FILE, *RUN_CHECKPOINTS):
        if (run_dir / name).is_file():
            return run_dir / name
    # The engine's checkpoint folder, referenced like the hub's tables (imported when used).
    CheckpointDir = resolve("ovar.train.checkpoint:CheckpointDir")
    latest = CheckpointDir(run_dir / "checkpoints", keep_last=0).latest()
    if latest is None:
        raise ModelError(f"{run_dir}: no {MODEL_FILE}, final.pt or checkpoint in this folder "
                         f"(is it an `ovar train` run?)")
    return latest


def is_training_checkpoint(payload: Any) -> bool:
    """True for what ``ovar train`` and ``ovar weights average`` write: ``{"model": state_dict, ...}``."""
    return isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "format" not in payload \
        and all(isinstance(k, str) for k in payload["model"]) and not _looks_like_evl(payload["model"])


def _looks_like_evl(state: dict) -> bool:
    # EVL's own checkpoints are {"model": state_dict} too; theirs hold a "decoder." module
    # under a top-level "backbone."-free layout that no ovar recipe writes.
    return any(k.startswith("decoder.") or ".decoder." in k for k in state) and \
        not any(k.startswith("model.") for k in state)


def find_run_config(path: Path) -> Path:
    """The ``config.yaml`` of the run that wrote checkpoint ``path`` (beside it or one folder up)."""
    for folder in (path.parent, path.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder / RUN_CONFIG
    raise ModelError(f"{path}: no {RUN_CONFIG} of its run beside it or one folder up "
                     f"(give --config FILE, or use the run's {MODEL_FILE})")


def model_from_run_checkpoint(path: Path, payload: dict, *, device: str | torch.device = "cpu",
                              config_path: Path | None = None) -> VideoTextModel:
    """The model of a training checkpoint: the run's recipe builds it (without downloading
    pretrained weights: the checkpoint holds every tensor), then the weights load."""
    from ..config import load_config
    from .weights_io import load_exact

    load_recipe = resolve("ovar.recipes.registry:load_recipe")  # a recipe by its hub name

    config = load_config(config_path or find_run_config(path), ["model.pretrained=none"])
    name = config.recipe.get("name")
    if not name:
        raise ModelError(f"{path}: its run's config names no recipe")
    recipe = load_recipe(name)(config)
    module = recipe.build_model()
    load_exact(module, payload["model"], path, f"recipe '{name}'")
    inner = getattr(recipe, "inner", None)
    if inner is None:
        raise OvarError(f"{path}: recipe '{name}' has no model for prediction")
    return inner(module).to(device).eval()


def _with_defaults(model: VideoTextModel, frames: int | None, templates) -> VideoTextModel:
    """``frames``/``templates`` given by the caller override what the model was saved with."""
    if frames is not None:
        model.frames = frames
    if templates is not None:
        model.templates = templates
    return model.eval()
