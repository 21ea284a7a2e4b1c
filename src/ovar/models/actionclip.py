"""ActionCLIP at test time: a fused video embedding scored against every template separately."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..text.classifier import default_cache, encode_prompts
from ..text.descriptions import fill_prompts
from ..text.templates import resolve_templates
from .backbone import ClipBackbone
from .fusion_encoder import FusedVideoTextModel

# ActionCLIP (and Text4Vis) score with a fixed 100 at test time, not the learned scale.
TEST_SCALE = 100.0


class ActionCLIPModel(FusedVideoTextModel):
    """CLIP + a fusion module (``meanP``, ``Conv_1D``, ``LSTM``, ``Transf``, ``Transf_cls``).

    Test rule: ``100 * cos`` per template -> softmax over classes -> mean over templates,
    so :meth:`classifier` keeps the templates apart: it returns (K, C, E) unit embeddings.
    ``fusion_args`` are the typed arguments of :func:`~ovar.models.temporal.build_fusion`.
    """

    kind = "actionclip"
    view_fusion = "mean_softmax"  # per view the template-averaged softmax, then the mean

    def __init__(self, backbone: ClipBackbone, *, fusion: str = "Transf", frames: int = 8,
                 templates: str | Sequence[str] = "actionclip", fusion_args: dict[str, Any] | None = None,
                 view_fusion: str | None = None) -> None:
        super().__init__(backbone, fusion=fusion, frames=frames, templates=templates, fusion_args=fusion_args)
        if view_fusion is not None and view_fusion != type(self).view_fusion:
            # A recipe training this network with another test rule (Text4Vis's NCE baseline
            # averages features): the model file keeps the rule, so predict uses it too.
            self.view_fusion = view_fusion
            self.build_args["view_fusion"] = view_fusion

    def classifier(self, names: Sequence[str], templates: str | Sequence[str] | None = None, *,
                   descriptions: Sequence[str] | None = None, cache=True) -> torch.Tensor:
        """(K, C, E) unit text embeddings, one slice per template (cached)."""
        templates = resolve_templates(templates if templates is not None else self.templates)
        store = default_cache() if cache is True else (cache or None)
        # A distinct key: the base classifier caches the template *mean* for the same texts.
        key = store.key(self.backbone.fingerprint + ":per-template", names, templates, descriptions) if store else ""
        found = store.get(key) if store else None
        if found is not None:
            return found.to(self.device)
        prompts = [p for template in templates for p in fill_prompts(names, template, descriptions)]
        embeddings = encode_prompts(self.backbone, prompts).view(len(templates), len(names), -1)
        if store:
            store.put(key, embeddings)
        return embeddings

    def logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, E) x (K, C, E) -> (B, K, C) = 100 * cos per template."""
        video = F.normalize(video_embeddings.float(), dim=-1)
        return TEST_SCALE * torch.einsum("be,kce->bkc", video, classifier.float())

    def class_logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C): the mean over templates of the per-template logits (``classifier`` is this
        model's (K, C, E) one)."""
        return self.logits(video_embeddings, classifier).mean(dim=1)

    def per_template_probabilities(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, K, C) softmax over classes for each template."""
        return self.logits(video_embeddings, classifier).softmax(dim=-1)

    def probabilities(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, C) mean over templates of the per-template softmax."""
        return self.per_template_probabilities(video_embeddings, classifier).mean(dim=1)
