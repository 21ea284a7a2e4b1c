"""Text4Vis: the image tower + fusion trained against a frozen text classifier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import rule
from ..models.temporal import FUSION_TYPES
from ..models.text4vis import Text4VisModel
from ..train.recipe import Trainable
from .clip_recipe import ClipVideoRecipe
from .video_data import Augment


@dataclass
class Text4VisOptions:
    """``recipe.*`` keys of Text4Vis."""

    fusion: str = field(default="Transf", metadata=rule(choices=FUSION_TYPES))  # meanP: few-shot
    templates: str = "text4vis"
    # RandAugment (N, M); null: none, as the released train.py.
    rand_augment: tuple[int, int] | None = field(default=(2, 9), metadata=rule(low=0))


class Text4VisTrainer(nn.Module):
    """Holds the model and the class embeddings (a buffer: moved, never trained or saved)."""

    def __init__(self, model: Text4VisModel, classifier: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("classifier", classifier, persistent=False)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.train_logits(self.model.encode_video(video), self.classifier)


class Text4VisRecipe(ClipVideoRecipe):
    model_class = Text4VisModel
    original = "text4vis"
    options_class: type = Text4VisOptions
    few_shot_epoch = "full"  # the K-shot list is repeated so an epoch has the full set's size
    def __init__(self, config) -> None:
        super().__init__(config)
        self.opts = self.options(self.options_class)

    def augment(self, image_size: int) -> Augment:
        # Short side 256 (for 224 crops), RandAugment N=2 M=9 (as the released logs ran; the
        # released train.py has it commented out: recipe.rand_augment=null), random sized
        # crop, flip, grayscale p=0.2: one draw for all frames.
        ra = tuple(self.opts.rand_augment) if self.opts.rand_augment else None
        return Augment(short_side_ratio=256 / 224, flip=0.5, grayscale=0.2, rand_augment=ra)

    def build_model(self) -> nn.Module:
        model = Text4VisModel(self.backbone(), fusion=self.opts.fusion, frames=self.config.data.frames,
                              templates=self.opts.templates)
        with torch.no_grad():  # the pretrained text tower's embeddings, computed once
            classifier = model.classifier(self.class_names, cache=False)
        return self.with_trainable(Text4VisTrainer(model, classifier))

    def trainable(self) -> list[Trainable]:
        # The image tower (and the logit scale) at the backbone rate, the fusion module at the
        # base rate; the classifier's text tower stays as pretrained.  Weight decay on
        # everything, as released (no bias/norm exemption).
        return [Trainable("visual", ("model.backbone.clip.visual.", "model.backbone.clip.logit_scale"),
                          self.config.optim.backbone_lr_ratio, decay_rule="all"),
                Trainable("fusion", ("model.video_encoder.fusion.",), decay_rule="all")]

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        return {"loss": F.cross_entropy(model(batch["video"]), batch["label"])}

    @torch.no_grad()
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_batch(eval_model, batch["video"], eval_model.classifier), batch["label"]
