"""FROSTER: Open-VCLIP's network with a trainable text tower, distilled towards the frozen
original CLIP through residual projectors.

Loss = CE + ratio · [(1 − mean cos(v_s, v_t)) + (1 − mean cos(t_s, t_t))], where
``v_s = f + 0.1·projector_v(f)`` for the student's unit per-frame embeddings ``f`` and
``t_s = w + 0.1·projector_t(w)`` for its classifier ``w``; the teacher (plain per-frame
CLIP, eval mode, no gradients) gives ``v_t`` and ``t_t``. Class texts are
``"Name: description"`` strings (``recipe.descriptions``) with 29 templates: each step
draws one of the first 28 (seeded) and adds the last, raw-text one; evaluation encodes all
29 once per evaluation. Classification uses the un-projected ``f`` and ``w``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, rule
from ..losses import feature_distillation_loss
from ..models.backbone import ClipBackbone, load_backbone
from ..models.open_vclip import FrosterModel
from ..text.classifier import encode_prompts
from ..text.descriptions import fill_prompts, read_descriptions
from ..text.templates import resolve_templates
from ..train.distributed import unwrap
from ..train.recipe import Trainable
from .open_vclip import OpenVCLIPOptions, OpenVCLIPRecipe


@dataclass
class FrosterOptions(OpenVCLIPOptions):
    """``recipe.*`` keys of FROSTER (defaults: the released runs)."""

    templates: str = "froster"  # the last template is the raw text; training draws one of the others
    iwo: bool = False
    descriptions: str | None = None  # JSON {"0": "Name: description", ...} for data.classes
    distillation_ratio: float = field(default=2.0, metadata=rule(low=0))
    projector_scale: float = field(default=0.1, metadata=rule(low=0))


class ResidualProjector(nn.Sequential):
    """Linear → GELU → Linear without biases; the second layer starts at zero so the
    projected feature starts equal to its input."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, dim, bias=False), nn.GELU(), nn.Linear(dim, dim, bias=False))
        nn.init.kaiming_normal_(self[0].weight)  # fan-in, std sqrt(2 / dim)
        nn.init.zeros_(self[2].weight)


class FrosterTrainer(nn.Module):
    """Student model + projectors; ``forward(video, tokens)`` -> (logits, v_s, t_s).

    ``tokens`` (K, C, L): the class texts of K templates; the classifier is the normalised
    mean of their unit embeddings, encoded with gradients (the text tower trains).
    """

    shared: tuple[str, ...] = ("clip_anchor", "teacher", "tokens")
    """Frozen attributes a copy of the trainer shares rather than copies."""

    def __init__(self, model: FrosterModel, projector_scale: float = 0.1) -> None:
        super().__init__()
        self.model = model
        dim = model.backbone.embed_dim
        self.projector_v = ResidualProjector(dim)
        self.projector_t = ResidualProjector(dim)
        self.projector_scale = projector_scale
        # Set by FrosterRecipe.build_model; plain attributes, so neither checkpointed nor
        # broadcast by DDP: θ_CLIP (patching), the frozen teacher, the prompts' tokens (K, C, L).
        self.clip_anchor: dict[str, torch.Tensor] | None = None
        self.teacher: Teacher | None = None
        self.tokens: torch.Tensor | None = None

    def classifier(self, tokens: torch.Tensor) -> torch.Tensor:
        templates, classes = tokens.shape[:2]
        text = F.normalize(self.model.backbone.encode_text(tokens.flatten(0, 1)).float(), dim=-1)
        return F.normalize(text.view(templates, classes, -1).mean(dim=0), dim=-1)

    def forward(self, video: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, frames = video.shape[:2]
        f = F.normalize(self.model.frame_embeddings(video).float(), dim=-1)
        w = self.classifier(tokens)
        logits = self.model.logits(f.view(batch, frames, -1).mean(dim=1), w)
        v_s = f + self.projector_scale * self.projector_v(f)
        t_s = w + self.projector_scale * self.projector_t(w)
        return logits, v_s, t_s


class Teacher:
    """The frozen original CLIP (per-frame, no temporal modelling), kept outside the trained
    module so it is neither checkpointed nor wrapped for distributed training.

    ``prompts`` (K templates x C classes) are the class texts it scores; being frozen, it
    encodes them once, on its device, when first asked (:meth:`classifier`).
    """

    def __init__(self, backbone: ClipBackbone, prompts: Sequence[Sequence[str]]) -> None:
        self.backbone = backbone.eval().requires_grad_(False)
        self.prompts = [list(p) for p in prompts]
        self._texts: torch.Tensor | None = None  # (K, C, E) unit embeddings of self.prompts

    def to(self, device: torch.device) -> "Teacher":
        if self.backbone.device != device:
            self.backbone.to(device)
            self._texts = None if self._texts is None else self._texts.to(device)
        return self

    @torch.no_grad()
    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B*T, E) unit per-frame embeddings."""
        return F.normalize(self.backbone.encode_image(video.flatten(0, 1)).float(), dim=-1)

    @torch.no_grad()
    def classifier(self, picks: list[int]) -> torch.Tensor:
        """(C, E): normalised mean of the teacher's unit embeddings of templates ``picks``."""
        if self._texts is None:  # every template encoded once: the teacher never changes
            flat = [p for per_template in self.prompts for p in per_template]
            self._texts = encode_prompts(self.backbone, flat).view(len(self.prompts), len(self.prompts[0]), -1)
        return F.normalize(self._texts[picks].mean(dim=0), dim=-1)


class FrosterRecipe(OpenVCLIPRecipe):
    options_class = FrosterOptions
    original = "froster"

    def __init__(self, config) -> None:
        super().__init__(config)
        if self.opts.iwo:
            raise ConfigError("recipe.iwo: FROSTER trains without interpolated weight optimisation")
        self.templates = resolve_templates(self.opts.templates)
        if len(self.templates) < 2:
            raise ConfigError("recipe.templates: FROSTER needs at least two (the last one is the raw text)")
        self.descriptions = read_descriptions(self.opts.descriptions) if self.opts.descriptions else None
        if self.descriptions is not None and len(self.descriptions) != len(self.class_names):
            raise ConfigError(f"recipe.descriptions: {self.opts.descriptions} has {len(self.descriptions)} "
                              f"entries for {len(self.class_names)} classes")
        # Prompts per template (K, C), tokenised once; each step picks two templates.
        self.train_class_names = list(self.class_names)
        self.prompts = [fill_prompts(self.class_names, t, self.descriptions) for t in self.templates]

    def make_model(self) -> FrosterModel:
        return FrosterModel(self.backbone(), frames=self.config.data.frames, templates=self.opts.templates,
                            temporal=self.opts.temporal)

    def build_model(self) -> nn.Module:
        model = self.make_model()
        teacher = Teacher(load_backbone(self.config.model.backbone, self.config.model.pretrained), self.prompts)
        # The projectors are drawn after the teacher (the same random draws as ever).
        trainer = self.with_trainable(FrosterTrainer(model, self.opts.projector_scale))
        self._capture_anchor(trainer)
        trainer.teacher = teacher
        flat = model.backbone.tokenize([p for per_template in self.prompts for p in per_template])
        trainer.tokens = flat.view(len(self.prompts), len(self.class_names), -1)
        return trainer

    def trainable(self) -> list[Trainable]:
        # Both towers, the logit scale and the projectors: everything of the student, with
        # Open-VCLIP's ZERO_WD_1D_PARAM decay rule.
        return [Trainable("clip", ("",), decay_rule="no_vectors")]

    def teacher(self, model: nn.Module, device: torch.device) -> Teacher:
        """The frozen teacher of the trainer ``model`` (DDP-wrapped or not), on ``device``."""
        teacher = unwrap(model).teacher
        if teacher is None:
            raise RuntimeError("no teacher: the model was not built by build_model()")
        return teacher.to(device)

    def tokens(self, model: nn.Module, device: torch.device) -> torch.Tensor:
        """The prompts' tokens (K, C, L) of the trainer ``model``, on ``device``."""
        trainer = unwrap(model)
        if trainer.tokens is None:
            raise RuntimeError("no prompt tokens: the model was not built by build_model()")
        if trainer.tokens.device != device:  # moved once, with the model they belong to
            trainer.tokens = trainer.tokens.to(device)
        return trainer.tokens

    @staticmethod
    def inner(model: nn.Module) -> FrosterModel:
        return (model.module if hasattr(model, "module") else model).model

    def draw_templates(self) -> list[int]:
        """One of the prompt templates (seeded per step by the engine) plus the raw-text one."""
        return [int(torch.randint(len(self.templates) - 1, ())), len(self.templates) - 1]

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        video, labels = batch["video"], batch["label"]
        picks = self.draw_templates()
        tokens = self.tokens(model, labels.device)[picks]
        logits, v_s, t_s = model(video, tokens)
        teacher = self.teacher(model, labels.device)
        v_t = teacher.frame_features(video)
        t_t = teacher.classifier(picks)
        ce = F.cross_entropy(logits.float(), labels)
        video_term, text_term = feature_distillation_loss(v_s, v_t, t_s, t_t)
        loss = ce + self.opts.distillation_ratio * (video_term + text_term)
        return {"loss": loss, "ce": ce.detach(), "distill_video": video_term.detach(),
                "distill_text": text_term.detach(), "template": picks[0]}

    def classifier_for(self, eval_model: nn.Module, names: Sequence[str],
                       descriptions: Sequence[str] | None = None) -> torch.Tensor:
        # The text tower trains: all templates re-encoded once per evaluation.  The recipe's
        # descriptions belong to its training classes; another list brings its own.
        if descriptions is None and self.descriptions is not None and list(names) == self.train_class_names:
            descriptions = self.descriptions
        return self.inner(eval_model).classifier(list(names), self.templates, descriptions=descriptions, cache=False)
