"""Evaluation: multi-view fusion, metrics, resumable per-video scores and plots (the papers'
protocols built on them are :mod:`ovar.protocols`).  Not imported by ``import ovar``."""

from .metrics import Metrics, compute_metrics, harmonic_mean, mean_std
from .runner import SetResult, evaluate_set
from .scorers import ModelScorer, RecipeScorer
from .views import FUSION_RULES, fuse_scores, score_views

__all__ = ["FUSION_RULES", "Metrics", "ModelScorer", "RecipeScorer", "SetResult", "compute_metrics",
           "evaluate_set", "fuse_scores", "harmonic_mean", "mean_std", "score_views"]
