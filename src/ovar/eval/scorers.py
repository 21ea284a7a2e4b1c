"""What the evaluation runner scores with: a model, or a recipe's trained model, behind one
interface (``classifier`` once per class list, ``score`` per batch of multi-view clips)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import OvarError
from .views import check_rule, score_views


class _Scorer:
    """Keeps one classifier per class list (class texts are encoded once per list and run)."""

    model: nn.Module

    def __init__(self) -> None:
        self._classifiers: dict[tuple, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def classifier(self, names: Sequence[str], descriptions: Sequence[str] | None = None) -> torch.Tensor:
        key = (tuple(names), tuple(descriptions) if descriptions else None)
        if key not in self._classifiers:
            self._classifiers[key] = self._build_classifier(list(names), descriptions)
        return self._classifiers[key]

    def _build_classifier(self, names: list[str], descriptions: Sequence[str] | None) -> torch.Tensor:
        raise NotImplementedError


class ModelScorer(_Scorer):
    """A :class:`~ovar.models.zero_shot.VideoTextModel` (bare CLIP, model file, converted
    original) scored against any class list with its own templates and test-time rule."""

    def __init__(self, model: nn.Module, fusion: str | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.fusion = check_rule(fusion or getattr(model, "view_fusion", "features"))

    def _build_classifier(self, names: list[str], descriptions: Sequence[str] | None) -> torch.Tensor:
        return self.model.classifier(names, descriptions=descriptions)

    @torch.no_grad()
    def score(self, video: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        return score_views(self.model, video, classifier, self.fusion)


class RecipeScorer(_Scorer):
    """A recipe's trained model, evaluated the recipe's way: its evaluation model (e.g.
    weight-patched), its templates and descriptions, its view fusion (``fusion`` overrides).

    Recipes built on :class:`~ovar.recipes.clip_recipe.ClipVideoRecipe` score any class
    list; another recipe only its own classes, through its ``evaluate_batch``.
    """

    def __init__(self, recipe: Any, model: nn.Module, fusion: str | None = None) -> None:
        super().__init__()
        self.recipe = recipe
        self.model = recipe.eval_model(model).eval()
        self.fusion = check_rule(fusion) if fusion else None
        self.general = hasattr(recipe, "classifier_for")

    def _build_classifier(self, names: list[str], descriptions: Sequence[str] | None) -> torch.Tensor:
        if self.general:
            return self.recipe.classifier_for(self.model, names, descriptions)
        own = list(getattr(self.recipe, "class_names", []))
        if [n.casefold() for n in names] != [n.casefold() for n in own]:
            raise OvarError(f"recipe {type(self.recipe).__name__} scores only its own {len(own)} classes; "
                            f"this list has {len(names)} other ones")
        return torch.arange(len(names))

    @torch.no_grad()
    def score(self, video: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        if self.general:
            return self.recipe.score_batch(self.model, video, classifier, self.fusion)
        labels = torch.zeros(video.shape[0], dtype=torch.long, device=video.device)
        return self.recipe.evaluate_batch(self.model, {"video": video, "label": labels})[0]
