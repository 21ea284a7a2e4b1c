"""ActionCLIP: both CLIP towers fine-tuned with a symmetric KL video-text loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import rule
from ..losses import symmetric_kl_loss
from ..losses.symmetric_kl import global_symmetric_kl_loss
from ..models.actionclip import ActionCLIPModel
from ..models.temporal import FUSION_TYPES
from ..text.templates import resolve_templates
from ..train.recipe import Trainable
from .clip_recipe import ClipVideoRecipe, EvalModel
from .video_data import Augment


@dataclass
class ActionCLIPOptions:
    """``recipe.*`` keys of ActionCLIP."""

    fusion: str = field(default="Transf", metadata=rule(choices=FUSION_TYPES))
    templates: str = "actionclip"
    visual_lr_ratio: float = field(default=1.0, metadata=rule(low=0))  # image tower lr = base lr x this
    fusion_lr_ratio: float = field(default=10.0, metadata=rule(low=0))  # fusion module lr = base lr x this
    global_batch_loss: bool = True  # the KL over every process's videos and texts (the original's whole batch)
    # RandAugment (N, M); null: off (the UCF/HMDB fine-tune configs).
    rand_augment: tuple[int, int] | None = field(default=(2, 9), metadata=rule(low=0))


class ActionCLIPTrainer(nn.Module):
    """DDP-friendly wrapper: one forward gives both towers' embeddings and the scale."""

    def __init__(self, model: ActionCLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        clip = self.model.backbone.clip
        return self.model.encode_video(video), self.model.backbone.encode_text(tokens), clip.logit_scale.exp()


class ActionCLIPRecipe(ClipVideoRecipe):
    model_class = ActionCLIPModel  # its view_fusion is the recipe's rule
    original = "actionclip"
    options_class: type = ActionCLIPOptions
    loss_mode = "nce"  # symmetric KL (see ovar.losses.symmetric_kl)
    def __init__(self, config) -> None:
        super().__init__(config)
        self.opts = self.options(self.options_class)
        self.templates = resolve_templates(self.opts.templates)

    def augment(self, image_size: int) -> Augment:
        # As released: RandAugment N=2 M=9, TSN multi-scale crop (13 fixed positions), flip,
        # colour jitter p=0.8, grayscale p=0.2.  Frames are assumed extracted with a short
        # side of 256; here the short side is resized to 256/224 of the input first.  One
        # random draw per clip (the original draws RandAugment and jitter per frame).
        ra = tuple(self.opts.rand_augment) if self.opts.rand_augment else None
        return Augment(short_side_ratio=256 / 224, flip=0.5, grayscale=0.2, rand_augment=ra,
                       multi_scale_crop=(1.0, 0.875, 0.75, 0.66), color_jitter=(0.8, 0.4, 0.4, 0.2, 0.1))

    def build_model(self) -> nn.Module:
        model = ActionCLIPModel(self.backbone(), fusion=self.opts.fusion, frames=self.config.data.frames,
                                templates=self.opts.templates, view_fusion=self.view_fusion)
        return self.with_trainable(ActionCLIPTrainer(model))

    def trainable(self) -> list[Trainable]:
        # Both towers train, the image tower and the fusion module at their own rates; the
        # original's AdamW decays every parameter (no bias/norm exemption).
        return [Trainable("text", ("",), decay_rule="all"),  # text tower, token/position embeddings, logit_scale
                Trainable("visual", ("model.backbone.clip.visual.",), self.opts.visual_lr_ratio, decay_rule="all"),
                Trainable("fusion", ("model.video_encoder.fusion.",), self.opts.fusion_lr_ratio, decay_rule="all")]

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        labels = batch["label"]
        # One random template per video; the engine seeds the global generator per step.
        picks = torch.randint(len(self.templates), (labels.shape[0],)).tolist()
        prompts = [self.templates[k].format(self.class_names[int(c)]) for k, c in zip(picks, labels.tolist())]
        tokens = self.inner_backbone(model).tokenize(prompts).to(labels.device)
        video, text, scale = model(batch["video"], tokens)
        # The original (DataParallel) scores its whole batch at once: every process's embeddings.
        loss = global_symmetric_kl_loss if self.opts.global_batch_loss else symmetric_kl_loss
        return {"loss": loss(video, text, labels, scale, mode=self.loss_mode)}

    @staticmethod
    def inner_backbone(model: nn.Module):
        return (model.module if hasattr(model, "module") else model).model.backbone

    def eval_model(self, model: nn.Module) -> nn.Module:
        # The text tower trains, so its classifier is re-encoded once per evaluation.
        with torch.no_grad():
            return EvalModel(model, model.model.classifier(self.class_names, self.templates, cache=False))

    @torch.no_grad()
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # Views: the template-averaged probabilities are averaged too (mean_softmax).
        return self.score_batch(eval_model, batch["video"], eval_model.classifier), batch["label"]
