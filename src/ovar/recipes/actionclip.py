"""ActionCLIP: both CLIP towers fine-tuned with a symmetric KL video-text loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..losses import symmetric_kl_loss
from ..models.actionclip import ActionCLIPModel
from ..text.templates import resolve_templates
from .base import ParamGroup
from .clip_recipe import ClipVideoRecipe
from .video_data import Augment


@dataclass
class ActionCLIPOptions:
    """``recipe.*`` keys of ActionCLIP."""

    fusion: str = "Transf"  # meanP | Conv_1D | LSTM | Transf | Transf_cls
    templates: str = "actionclip"
    visual_lr_ratio: float = 1.0  # image tower lr = base lr x this
    fusion_lr_ratio: float = 10.0  # fusion module lr = base lr x this


class ActionCLIPTrainer(nn.Module):
    """DDP-friendly wrapper: one forward gives both towers' embeddings and the scale."""

    def __init__(self, model: ActionCLIPModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        clip = self.model.backbone.clip
        return self.model.encode_video(video), self.model.backbone.encode_text(tokens), clip.logit_scale.exp()


class ActionCLIPRecipe(ClipVideoRecipe):
    view_fusion = "mean_softmax"  # per view: the mean over templates of the softmax
    def __init__(self, config) -> None:
        super().__init__(config)
        self.opts = self.options(ActionCLIPOptions)
        self.templates = resolve_templates(self.opts.templates)
        self._eval_classifier: torch.Tensor | None = None

    def augment(self) -> Augment:
        # The original crops at several scales, flips and jitters colours; ovar applies one
        # random sized crop, flip and grayscale to the whole clip (frames stay aligned).
        return Augment(short_side_ratio=256 / 224, scale=(0.25, 1.0), flip=0.5, grayscale=0.2)

    def build_model(self) -> nn.Module:
        model = ActionCLIPModel(self.backbone(), fusion=self.opts.fusion, frames=self.config.data.frames,
                                templates=self.opts.templates)
        return ActionCLIPTrainer(model)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        text, visual, fusion = ParamGroup("text"), ParamGroup("visual", lr_scale=self.opts.visual_lr_ratio), \
            ParamGroup("fusion", lr_scale=self.opts.fusion_lr_ratio)
        for name, param in model.named_parameters():
            if name.startswith("model.video_encoder.fusion."):
                fusion.params.append((name, param))
            elif name.startswith("model.backbone.clip.visual."):
                visual.params.append((name, param))
            else:  # text tower, token/position embeddings and logit_scale
                text.params.append((name, param))
        return [g for g in (text, visual, fusion) if g.params]

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        labels = batch["label"]
        # One random template per video; the engine seeds the global generator per step.
        picks = torch.randint(len(self.templates), (labels.shape[0],)).tolist()
        prompts = [self.templates[k].format(self.class_names[int(c)]) for k, c in zip(picks, labels.tolist())]
        tokens = self.inner_backbone(model).tokenize(prompts).to(labels.device)
        video, text, scale = model(batch["video"], tokens)
        return {"loss": symmetric_kl_loss(video, text, labels, scale)}

    @staticmethod
    def inner_backbone(model: nn.Module):
        return (model.module if hasattr(model, "module") else model).model.backbone

    def eval_model(self, model: nn.Module) -> nn.Module:
        # The text tower trains, so its classifier is re-encoded once per evaluation.
        with torch.no_grad():
            self._eval_classifier = model.model.classifier(self.class_names, self.templates, cache=False)
        return model

    @torch.no_grad()
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # Views: the template-averaged probabilities are averaged too (mean_softmax).
        return self.score_batch(eval_model, batch["video"], self._eval_classifier), batch["label"]
