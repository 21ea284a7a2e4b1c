"""Open-VCLIP: the image tower, with expanded temporal view attention, fine-tuned against a
frozen text classifier; interpolated weight optimisation (IWO), epoch weight averaging and
test-time patching towards the original CLIP.

Training forward: per-frame unit embeddings, logits ``exp(logit_scale) · f @ wᵀ`` averaged
over frames, cross-entropy. With IWO each step adds ``λ · CE`` at the weights
``α·θ_CLIP + (1 − α)·θ`` (α ~ U(low, high), drawn from the engine's per-step seeded
generator), evaluated functionally (:mod:`ovar.recipes.iwo`): only the CLIP parameters are
interpolated, so extra trainable modules are fine, in one process or many.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, rule
from ..models.open_vclip import OpenVCLIPModel
from ..models.model_file import save_model_file
from ..models.temporal.expand_view import TEMPORAL_TYPES
from ..models.mixing import mix
from .iwo import anchor_weights, functional_forward, interpolated_parameters, sample_alpha
from .running_average import RunningAverage
from ..train.distributed import unwrap
from ..train.recipe import Trainable
from .clip_recipe import MODEL_FILE, ClipVideoRecipe, EvalModel
from .video_data import Augment

log = logging.getLogger(__name__)

CLIP_PREFIX = "backbone.clip."  # the CLIP inside an OpenVCLIPModel
AVERAGE_FILE = "weight_average.pt"


@dataclass
class OpenVCLIPOptions:
    """``recipe.*`` keys of Open-VCLIP (defaults: the released K400 run)."""

    templates: str = "open_vclip"
    temporal: str = field(default="expand_temporal_view", metadata=rule(choices=TEMPORAL_TYPES))
    iwo: bool = True  # interpolated weight optimisation
    iwo_loss_ratio: float = field(default=0.5, metadata=rule(low=0))  # λ
    iwo_alpha_low: float = field(default=0.0, metadata=rule(low=0, high=1))
    iwo_alpha_high: float = field(default=0.6, metadata=rule(low=0, high=1))
    iwo_chain_rule: bool = False  # True: scale the interpolated gradient by (1 - α); the original does not
    # Average the weights of epochs N..last in finalize; null: no averaging.
    average_from_epoch: int | None = field(default=2, metadata=rule(low=0))
    average_to_epoch: int | None = field(default=None, metadata=rule(low=0))
    # Evaluate/export r·θ_CLIP + (1 - r)·θ (the released evaluation: 0.5).
    patch_ratio: float | None = field(default=None, metadata=rule(low=0, high=1))


class OpenVCLIPTrainer(nn.Module):
    """The model and its fixed class embeddings (a buffer: moved with the model, never saved).

    ``forward(video)`` gives the logits; with ``anchor`` and ``alpha`` also the logits at
    the interpolated weights, both in one call so DistributedDataParallel sees one forward.
    """

    shared: tuple[str, ...] = ("clip_anchor",)
    """Frozen attributes a copy of the trainer shares rather than copies (see
    :meth:`OpenVCLIPRecipe.patched`)."""

    def __init__(self, model: OpenVCLIPModel, classifier: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("classifier", classifier, persistent=False)
        # θ_CLIP of the interpolated and patched weights (OpenVCLIPRecipe.anchor), taken when
        # built: a plain attribute, so neither checkpointed nor broadcast by DDP.
        self.clip_anchor: dict[str, torch.Tensor] | None = None

    def forward(self, video: torch.Tensor, anchor: dict[str, torch.Tensor] | None = None, alpha: float = 0.0,
                chain_rule: bool = False):
        logits = self.model(video, self.classifier)
        if anchor is None:
            return logits
        params = interpolated_parameters(self.model, anchor, alpha, chain_rule=chain_rule)
        return logits, functional_forward(self.model, params, video, self.classifier)


class OpenVCLIPRecipe(ClipVideoRecipe):
    model_class = OpenVCLIPModel
    original = "open_vclip"
    options_class = OpenVCLIPOptions

    def __init__(self, config) -> None:
        super().__init__(config)
        self.opts = self.options(self.options_class)
        if self.opts.iwo_alpha_low > self.opts.iwo_alpha_high:
            raise ConfigError("recipe.iwo_alpha_low/high: need 0 <= low <= high <= 1")

    # --- model -------------------------------------------------------------------------

    def augment(self, image_size: int) -> Augment:
        # Short side to U(S, S·256/224), random S crop, flip: the original's only augmentation.
        return Augment(random_resized_crop=False, jitter=(image_size, round(image_size * 256 / 224)), flip=0.5)

    def make_model(self) -> OpenVCLIPModel:
        return OpenVCLIPModel(self.backbone(), frames=self.config.data.frames, templates=self.opts.templates,
                              temporal=self.opts.temporal)

    def build_model(self) -> nn.Module:
        model = self.make_model()
        with torch.no_grad():  # computed once from the pretrained text tower, as the original
            classifier = model.classifier(self.class_names, cache=False)
        trainer = self.with_trainable(OpenVCLIPTrainer(model, classifier))
        self._capture_anchor(trainer)  # after requires_grad is set: the anchor holds what trains
        return trainer

    def _capture_anchor(self, trainer: nn.Module) -> None:
        # The pretrained CLIP weights, taken before training or resuming changes them.
        if self.opts.iwo or self.opts.patch_ratio is not None:
            trainer.clip_anchor = anchor_weights(trainer.model, CLIP_PREFIX)

    def anchor(self, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
        """θ_CLIP of the trainer ``model`` (built by :meth:`build_model`; DDP-wrapped or not), on ``device``."""
        trainer = unwrap(model)
        anchor = getattr(trainer, "clip_anchor", None)
        if anchor is None:
            raise RuntimeError("no CLIP anchor: the model was not built by build_model() with recipe.iwo "
                               "or recipe.patch_ratio")
        if next(iter(anchor.values())).device != device:  # moved once, with the model it belongs to
            anchor = trainer.clip_anchor = {k: v.to(device) for k, v in anchor.items()}
        return anchor

    def trainable(self) -> list[Trainable]:
        # The image tower and the logit scale; the text tower stays as pretrained.
        # ZERO_WD_1D_PARAM: biases and 1-D tensors are exempt, the 0-D logit_scale decays.
        return [Trainable("clip", ("model.backbone.clip.visual.", "model.backbone.clip.logit_scale"),
                          decay_rule="no_vectors")]

    # --- training ----------------------------------------------------------------------

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        video, labels = batch["video"], batch["label"]
        if not self.opts.iwo:
            return {"loss": F.cross_entropy(model(video).float(), labels)}
        alpha = sample_alpha(self.opts.iwo_alpha_low, self.opts.iwo_alpha_high)
        logits, interp = model(video, anchor=self.anchor(model, labels.device), alpha=alpha,
                               chain_rule=self.opts.iwo_chain_rule)
        ce = F.cross_entropy(logits.float(), labels)
        ce_interp = F.cross_entropy(interp.float(), labels)
        return {"loss": ce + self.opts.iwo_loss_ratio * ce_interp, "ce": ce.detach(),
                "ce_interp": ce_interp.detach(), "alpha": alpha}

    # --- evaluation --------------------------------------------------------------------

    def eval_model(self, model: nn.Module) -> nn.Module:
        if self.opts.patch_ratio is not None:
            model = self.patched(model, self.opts.patch_ratio)
        with torch.no_grad():  # the classes are encoded once per evaluation
            return EvalModel(model, self.classifier_for(model, self.class_names))

    def patched(self, model: nn.Module, ratio: float) -> nn.Module:
        """A copy of the trainer with every trained CLIP tensor moved to ``r·θ_CLIP + (1 − r)·θ``."""
        anchor = self.anchor(model, next(model.parameters()).device)
        shared = (getattr(model, name) for name in model.shared)  # frozen: the copy need not own them
        patched = copy.deepcopy(model, {id(value): value for value in shared})
        params = dict(patched.model.named_parameters())
        with torch.no_grad():
            for name, target in anchor.items():
                params[name].copy_(mix(target, params[name].detach(), ratio, name))
        return patched

    @torch.no_grad()
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.score_batch(eval_model, batch["video"], eval_model.classifier), batch["label"]

    # --- after training ----------------------------------------------------------------

    def _average(self, run_dir: Path) -> RunningAverage | None:
        if self.opts.average_from_epoch is None:
            return None
        return RunningAverage(Path(run_dir) / AVERAGE_FILE, self.opts.average_from_epoch, self.opts.average_to_epoch)

    def end_epoch(self, model: nn.Module, epoch: int, run_dir: Path) -> None:
        average = self._average(run_dir)
        if average is not None and average.wants(epoch):
            average.add({n: p for g in self.param_groups(model) for n, p in g.params}, epoch)

    def finalize(self, model: nn.Module, run_dir: Path) -> None:
        """Load the epoch average (when configured) into ``model``, then export the model
        file (patched towards CLIP when ``patch_ratio`` is set)."""
        average = self._average(run_dir)
        mean = average.average() if average is not None else None
        if mean is not None:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, value in mean.items():
                    params[name].copy_(value.to(params[name].device, params[name].dtype))
            log.info("averaged the weights of epochs %s", ", ".join(map(str, average.epochs())))
        exported = self.patched(model, self.opts.patch_ratio) if self.opts.patch_ratio is not None else model
        save_model_file(Path(run_dir) / MODEL_FILE, self.inner(exported))
