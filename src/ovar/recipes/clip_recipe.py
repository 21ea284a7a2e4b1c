"""What the CLIP-based video recipes share: options parsing, the backbone, datasets, export."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import Config, parse_section
from ..hub import MODEL_FILE  # the run's model, readable by `ovar predict --checkpoint RUN_DIR`
from ..models.backbone import ClipBackbone, load_backbone
from ..models.model_file import save_model_file
from ..models.zero_shot import VideoTextModel
from . import video_data
from ..train.distributed import unwrap
from ..train.recipe import Recipe

T = TypeVar("T")


class EvalModel(nn.Module):
    """A trainer ready to evaluate, holding the class embeddings it is scored against.

    Recipes whose text tower trains encode the classes once per evaluation
    (:meth:`Recipe.eval_model`); the embeddings travel with the model to
    :meth:`Recipe.evaluate_batch` instead of being kept on the recipe between the calls.
    """

    def __init__(self, trainer: nn.Module, classifier: torch.Tensor) -> None:
        super().__init__()
        self.trainer = trainer
        self.register_buffer("classifier", classifier, persistent=False)

    @property
    def model(self) -> VideoTextModel:
        """The trainer's video-text model (what :meth:`ClipVideoRecipe.inner` returns)."""
        return self.trainer.model


class ClipVideoRecipe(Recipe):
    """Base of recipes whose model is a :class:`VideoTextModel` held by a training wrapper
    (attribute ``model``) and trained on ``data.*`` lists of labelled videos.

    ``model_class`` is the class of that model; its ``view_fusion`` is the recipe's rule.
    """

    model_class: type[VideoTextModel] = VideoTextModel

    @property
    def view_fusion(self) -> str:  # declared once, by the model the recipe trains
        return self.model_class.view_fusion

    original: str | None = None
    """The original system whose test scale this recipe follows (:mod:`ovar.video.eval_scale`)."""
    few_shot_epoch: str = "subset"
    options_class: type | None = None
    """The dataclass of the recipe's ``recipe.*`` keys (:meth:`options`)."""
    """``data.shot_epoch`` default: ``"full"`` repeats a K-shot list to the full list's size."""

    @property
    def drop_last(self) -> bool:
        """Whether training skips the last partial batch: ``data.drop_last``, else True (all
        five originals' training loaders drop it)."""
        return True if self.config.data.drop_last is None else self.config.data.drop_last

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.class_names = video_data.class_names(config)

    def options(self, cls: type[T]) -> T:
        """The ``recipe`` section (less its ``name``) parsed into the recipe's dataclass."""
        section = {k: v for k, v in self.config.recipe.items() if k != "name"}
        return parse_section(cls, section, "recipe")

    def backbone(self) -> ClipBackbone:
        return load_backbone(self.config.model.backbone, self.config.model.pretrained)

    def model_backbone(self, model: nn.Module) -> ClipBackbone:
        """The backbone of ``model`` (as :meth:`build_model` returned it, DDP-wrapped or not):
        its image size and normalisation are the datasets'."""
        return self.inner(unwrap(model)).backbone

    def train_dataset(self, model: nn.Module) -> Dataset:
        backbone = self.model_backbone(model)
        return video_data.train_dataset(self.config, backbone.image_size, backbone.mean, backbone.std,
                                        self.augment(backbone.image_size), few_shot_epoch=self.few_shot_epoch,
                                        sampling=self.train_sampling())

    def train_sampling(self) -> str | None:
        """Training frame sampling when it differs from ``data.sampling`` (used for testing)."""
        return None

    def eval_dataset(self, model: nn.Module) -> Dataset | None:
        backbone = self.model_backbone(model)
        return video_data.eval_dataset(self.config, backbone.image_size, backbone.mean, backbone.std,
                                       kind=self.original)

    def augment(self, image_size: int) -> video_data.Augment:
        """Training augmentation of clips cropped to ``image_size``."""
        return video_data.Augment()

    def classifier_for(self, eval_model: nn.Module, names: Sequence[str],
                       descriptions: Sequence[str] | None = None) -> torch.Tensor:
        """Class embeddings of any class list, built the recipe's way (its templates), from
        ``eval_model`` as :meth:`eval_model` returned it.  Protocols evaluate with these."""
        return self.inner(eval_model).classifier(list(names), descriptions=descriptions, cache=False)

    def score_batch(self, eval_model: nn.Module, video: torch.Tensor, classifier: torch.Tensor,
                    fusion: str | None = None) -> torch.Tensor:
        """(B, C) scores of evaluation clips (B, V, T, 3, S, S): the views fused by
        ``fusion`` or :meth:`fusion_rule`."""
        from ..eval.views import score_views

        return score_views(self.inner(eval_model), video, classifier, fusion or self.fusion_rule())

    def finalize(self, model: nn.Module, run_dir: Path) -> None:
        save_model_file(Path(run_dir) / MODEL_FILE, self.inner(model))

    @staticmethod
    def inner(model: nn.Module) -> VideoTextModel:
        return model.model
