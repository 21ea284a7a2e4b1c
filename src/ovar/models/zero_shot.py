"""The model that :func:`ovar.predict` runs: a video encoder scored against class texts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..text.classifier import build_classifier
from .backbone import ClipBackbone, load_backbone
from .video_encoder import MeanPoolVideoEncoder

# Logit scale used for zero-shot scoring: CLIP's learned scale, capped at 100 as CLIP caps it.
_MAX_LOGIT_SCALE = 100.0


class VideoTextModel(nn.Module):
    """Scores videos against free-text classes: ``scale * cos(video_encoder(clip), classifier)``.

    ``video_encoder`` maps (B, T, 3, S, S) normalised clips to (B, E); any temporal module
    (mean pooling, a transformer, expanded attention...) plugs in here. ``frames`` and
    ``templates`` are the defaults this model was built or trained for.
    """

    view_fusion = "features"
    """How :func:`ovar.predict` fuses a video's views: ``"features"`` averages the video
    embeddings before scoring; ``"scores"`` averages the per-view probabilities."""

    eval_fusion = "features"
    """The view fusion rule of :mod:`ovar.eval.views` that ``ovar eval`` applies: the
    original method's own test-time rule."""

    def __init__(self, backbone: ClipBackbone, video_encoder: nn.Module | None = None, *,
                 frames: int = 8, templates: str | Sequence[str] = "open_vclip") -> None:
        super().__init__()
        self.backbone = backbone
        self.video_encoder = video_encoder if video_encoder is not None else MeanPoolVideoEncoder(backbone)
        self.frames = frames
        self.templates = templates

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    def encode_video(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, E) video embeddings (not normalised)."""
        return self.video_encoder(clips)

    def classifier(self, names: Sequence[str], templates: str | Sequence[str] | None = None, *,
                   descriptions: Sequence[str] | None = None, cache=True) -> torch.Tensor:
        """(C, E) unit class embeddings for ``names`` (cached per weights and texts)."""
        return build_classifier(self.backbone, names, templates if templates is not None else self.templates,
                                descriptions=descriptions, cache=cache)

    def logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, E) x (C, E) -> (B, C) scaled cosine similarities."""
        scale = self.backbone.logit_scale.clamp(max=_MAX_LOGIT_SCALE)
        return scale * F.normalize(video_embeddings.float(), dim=-1) @ classifier.float().t()

    def probabilities(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C) class probabilities; models with another test-time rule (e.g. averaging
        per-template softmaxes) override this together with :meth:`classifier`."""
        return self.logits(video_embeddings, classifier).softmax(dim=-1)


def load_model(name: str = "ViT-B-16", pretrained: str | None = "openai", *, device: str | torch.device = "cpu",
               frames: int | None = None, templates: str | Sequence[str] | None = None,
               quick_gelu: bool | None = None, checkpoint: str | os.PathLike | None = None,
               clip: str | os.PathLike | None = None, source: str | None = None,
               patch_ratio: float | None = None, **convert_options) -> VideoTextModel:
    """A model for :func:`ovar.predict`.

    With ``checkpoint``: an ovar model file, a training run's directory holding one
    (``ovar train`` and ``ovar convert`` write them), or a checkpoint written by one of the
    original codebases (ActionCLIP, Text4Vis, EVL, Open-VCLIP, FROSTER: the layout is
    recognised, or named with ``source``), converted on the fly; ``clip`` is the original
    CLIP file some of them need, and ``patch_ratio`` patches Open-VCLIP/FROSTER weights
    towards it; ``convert_options`` go to :func:`ovar.models.convert.convert_checkpoint` (e.g. EVL's
    ``num_heads`` and ``class_names``); a folder written by ``ovar export`` works too.
    ``pretrained`` naming such a folder, or ``hf-hub:org/name`` (a Hub repository holding
    one), loads that whole model. Otherwise the frozen-CLIP zero-shot model on backbone
    ``name`` with weights ``pretrained``.
    """
    if checkpoint is not None:
        return _load_checkpoint(Path(checkpoint), device=device, frames=frames, templates=templates, clip=clip,
                                source=source, patch_ratio=patch_ratio, options=convert_options)
    if convert_options:
        raise TypeError(f"unexpected arguments without a checkpoint: {', '.join(convert_options)}")
    from .export import is_model_reference

    if is_model_reference(pretrained):  # an exported folder or hf-hub:org/name: the whole model
        return _with_defaults(_load_exported(str(pretrained), device), frames, templates)
    backbone = load_backbone(name, pretrained, device=device, quick_gelu=quick_gelu)
    return VideoTextModel(backbone, frames=frames or 8, templates=templates or "open_vclip").eval()


def _load_checkpoint(path: Path, *, device, frames, templates, clip, source, patch_ratio, options) -> VideoTextModel:
    from .convert import convert_checkpoint, detect_source
    from .model_file import is_model_file, load_model_file
    from .weights_io import load_file

    from .export import is_exported_folder

    if path.is_dir() and is_exported_folder(path):
        if patch_ratio is not None or clip is not None or options or source is not None:
            raise ModelError(f"{path}: an exported ovar model takes no CLIP file, patch ratio or source")
        return _with_defaults(_load_exported(str(path), device), frames, templates)
    if path.is_dir():
        path = path / "model.pt"
        if not path.is_file():
            raise ModelError(f"{path.parent}: no model.pt in this folder (is it an `ovar train` run?)")
    if source is None:
        payload = load_file(path, "checkpoint")
        if is_model_file(payload):
            if patch_ratio is not None or clip is not None or options:
                raise ModelError(f"{path}: an ovar model file takes no CLIP file or patch ratio "
                                 f"(use `ovar weights interpolate` to patch it)")
            model = load_model_file(path, device=device)
            if frames is not None:
                model.frames = frames
            if templates is not None:
                model.templates = templates
            return model.eval()
        source = detect_source(payload)
        if source is None:
            raise ModelError(f"{path}: not an ovar model file, and not a checkpoint layout ovar recognises "
                             f"(pass the source, or convert it with `ovar convert --from ...`)")
    options = {"frames": frames, "templates": templates, "patch_ratio": patch_ratio, **options}
    return convert_checkpoint(source, path, clip=clip, **options).to(device).eval()


def _load_exported(spec: str, device) -> VideoTextModel:
    from .export import load_exported

    return load_exported(spec, device=device)


def _with_defaults(model: VideoTextModel, frames: int | None, templates) -> VideoTextModel:
    """``frames``/``templates`` given by the caller override what the model was saved with."""
    if frames is not None:
        model.frames = frames
    if templates is not None:
        model.templates = templates
    return model.eval()
