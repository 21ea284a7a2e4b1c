"""Multi-view test-time fusion, as evaluation uses it: the rules live in
:mod:`ovar.models.view_fusion` (one definition for predict, serve and eval)."""

from __future__ import annotations

from ..models.view_fusion import (FUSION_RULES, PROBABILITY_RULES, check_rule, fuse_scores, fuse_views,
                                  score_views, to_probabilities)

__all__ = ["FUSION_RULES", "PROBABILITY_RULES", "check_rule", "fuse_scores", "fuse_views", "score_views",
           "to_probabilities"]
