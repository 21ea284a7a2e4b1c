"""Text4Vis at test time: a frozen text-tower classifier, fixed scale 100, softmax."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .actionclip import TEST_SCALE  # the papers' fixed test-time scale
from .backbone import ClipBackbone
from .fusion_encoder import FusedVideoTextModel


class Text4VisModel(FusedVideoTextModel):
    """Fine-tuned image tower + fusion; the text tower is the *original* CLIP's, frozen.

    The classifier is the single-template ``"a video of a person {}."`` embedding per class.
    Views are fused by averaging un-normalised video features (what ``ovar.predict``
    does before calling :meth:`probabilities`). The learned ``logit_scale`` is only used
    by :meth:`train_logits`.
    """

    kind = "text4vis"

    def __init__(self, backbone: ClipBackbone, *, fusion: str = "Transf", frames: int = 8,
                 templates: str | Sequence[str] = "text4vis", fusion_args: dict[str, Any] | None = None) -> None:
        super().__init__(backbone, fusion=fusion, frames=frames, templates=templates, fusion_args=fusion_args)
        trainable = {id(p) for p in backbone.clip.visual.parameters()} | {id(backbone.clip.logit_scale)}
        for param in backbone.clip.parameters():  # the classifier's text tower is never trained
            if id(param) not in trainable:
                param.requires_grad_(False)

    def logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, E) x (C, E) -> (B, C) = 100 * cos (the test-time scale)."""
        return TEST_SCALE * F.normalize(video_embeddings.float(), dim=-1) @ classifier.float().t()

    def train_logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C) logits with the learned, unclamped ``exp(logit_scale)`` (training time)."""
        scale = self.backbone.logit_scale.float()
        return scale * F.normalize(video_embeddings.float(), dim=-1) @ classifier.float().t()
