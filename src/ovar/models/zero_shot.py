"""The model that :func:`ovar.predict` runs: a video encoder scored against class texts."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..text.classifier import build_classifier
from .backbone import ClipBackbone
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
    """How a video's views are fused (a rule of :mod:`ovar.models.view_fusion`): the
    original method's own test-time rule, used alike by predict, serve and eval."""

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

    def class_logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C): one logit per class, what the logit-fusing view rules add up; models whose
        :meth:`logits` keep more apart (ActionCLIP's templates) override this."""
        return self.logits(video_embeddings, classifier)

    def probabilities(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C) class probabilities; models with another test-time rule (e.g. averaging
        per-template softmaxes) override this together with :meth:`classifier`."""
        return self.logits(video_embeddings, classifier).softmax(dim=-1)
