"""Multi-view test-time fusion: T temporal clips x S spatial crops of a video -> one score row.

The originals fuse views differently, and each recipe keeps its own rule by default
(``Recipe.view_fusion``); ``eval.fusion`` in the config or ``ovar eval --fusion`` overrides it.

* ``features``: mean of the views' video embeddings, scored once (Text4Vis);
* ``mean_softmax``: mean of per-view class probabilities as the model defines them
  (EVL's softmax; ActionCLIP's template-averaged softmax);
* ``sum_logits``: sum of per-view logits (Open-VCLIP, FROSTER);
* ``mean_logits``: mean of per-view logits.
"""

from __future__ import annotations

from typing import Any

import torch

FUSION_RULES = ("features", "mean_softmax", "sum_logits", "mean_logits")


def check_rule(rule: str) -> str:
    """``rule`` if known; ValueError listing the rules otherwise."""
    if rule not in FUSION_RULES:
        raise ValueError(f"unknown view fusion rule '{rule}' (known: {', '.join(FUSION_RULES)})")
    return rule


def fuse_scores(per_view: torch.Tensor, rule: str) -> torch.Tensor:
    """(B, V, C) per-view logits (or probabilities for ``mean_softmax``) -> (B, C)."""
    check_rule(rule)
    if rule == "sum_logits":
        return per_view.sum(dim=1)
    if rule in ("mean_logits", "mean_softmax"):
        return per_view.mean(dim=1)
    raise ValueError("'features' fuses embeddings, not scores: use score_views")


def score_views(model: Any, video: torch.Tensor, classifier: torch.Tensor, rule: str) -> torch.Tensor:
    """Scores (B, C) of evaluation clips ``video`` (B, V, T, 3, S, S) by ``rule``.

    ``model`` is a :class:`~ovar.models.zero_shot.VideoTextModel` (``encode_video``,
    ``logits``, ``probabilities``); ``classifier`` comes from its ``classifier()``.
    """
    check_rule(rule)
    batch, views = video.shape[:2]
    embeddings = model.encode_video(video.flatten(0, 1)).float()
    embeddings = embeddings.view(batch, views, *embeddings.shape[1:])
    if rule == "features":
        return model.probabilities(embeddings.mean(dim=1), classifier)
    flat = embeddings.flatten(0, 1)
    per_view = model.probabilities(flat, classifier) if rule == "mean_softmax" else model.logits(flat, classifier)
    if per_view.dim() == 3:  # per-template logits (ActionCLIP): (B*V, K, C), averaged over templates
        per_view = per_view.mean(dim=1)
    return fuse_scores(per_view.view(batch, views, -1), rule)
