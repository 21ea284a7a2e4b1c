"""Multi-view test-time fusion: T temporal clips x S spatial crops of a video -> one score row.

This module is the one definition of the rules. A model class names its rule in
``VideoTextModel.view_fusion`` (the original method's own); ``ovar predict``, ``ovar eval``,
``ovar serve`` and a recipe's evaluation all fuse through :func:`fuse_views`, so they give the
same scores for the same views. ``eval.fusion`` / ``ovar eval --fusion`` may pick another rule.

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
PROBABILITY_RULES = ("features", "mean_softmax")  # their fused scores are class probabilities


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
    raise ValueError("'features' fuses embeddings, not scores: use fuse_views")


def fuse_views(model: Any, embeddings: torch.Tensor, classifier: torch.Tensor, rule: str) -> torch.Tensor:
    """(B, C) scores from the (B, V, E) video embeddings of each video's views, by ``rule``.

    ``model`` has ``class_logits`` and ``probabilities`` (a :class:`~ovar.models.zero_shot.VideoTextModel`);
    the scores are probabilities for :data:`PROBABILITY_RULES`, logits otherwise.
    """
    check_rule(rule)
    # Scoring stays in fp32 under a caller's autocast, so eval (which fuses inside it) and
    # predict (which fuses after it) agree in reduced precision too.
    with torch.autocast(embeddings.device.type, enabled=False):
        return _fuse(model, embeddings.float(), classifier, rule)


def _fuse(model: Any, embeddings: torch.Tensor, classifier: torch.Tensor, rule: str) -> torch.Tensor:
    batch, views = embeddings.shape[:2]
    if rule == "features":
        return model.probabilities(embeddings.mean(dim=1), classifier)
    flat = embeddings.flatten(0, 1)
    if rule == "mean_softmax":
        per_view = model.probabilities(flat, classifier)
    else:  # one logit per class (ActionCLIP: the mean of its per-template logits)
        per_view = model.class_logits(flat, classifier)
    return fuse_scores(per_view.view(batch, views, -1), rule)


def to_probabilities(scores: torch.Tensor, rule: str, views: int) -> torch.Tensor:
    """Class probabilities from the fused ``scores`` of ``views`` views (what ``predict`` reports).

    Logit sums are divided by the view count first, so the probabilities do not sharpen as
    views are added (and equal the softmax of the mean logits).
    """
    check_rule(rule)
    if rule in PROBABILITY_RULES:
        return scores
    if rule == "sum_logits":
        scores = scores / views
    return scores.float().softmax(dim=-1)


def score_views(model: Any, video: torch.Tensor, classifier: torch.Tensor, rule: str) -> torch.Tensor:
    """Scores (B, C) of evaluation clips ``video`` (B, V, T, 3, S, S) by ``rule``.

    ``model`` is a :class:`~ovar.models.zero_shot.VideoTextModel` (``encode_video``,
    ``class_logits``, ``probabilities``); ``classifier`` comes from its ``classifier()``.
    """
    check_rule(rule)
    batch, views = video.shape[:2]
    embeddings = model.encode_video(video.flatten(0, 1))
    return fuse_views(model, embeddings.view(batch, views, *embeddings.shape[1:]), classifier, rule)


def view_probabilities(model: Any, views: torch.Tensor, classifier: torch.Tensor,
                       rule: str | None = None) -> torch.Tensor:
    """(C,) class probabilities of one video from its (V, E) view embeddings, fused by
    ``rule`` (default: the model's own ``view_fusion``)."""
    rule = rule or model.view_fusion
    scores = fuse_views(model, views[None], classifier, rule)
    return to_probabilities(scores, rule, views.shape[0])[0].cpu()
