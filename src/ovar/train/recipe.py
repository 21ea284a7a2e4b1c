"""The recipe interface: everything method-specific about training, behind one small class.

The engine owns the interface it drives; the recipes themselves and their registry are
:mod:`ovar.recipes`.

The engine (:mod:`ovar.train.loop`) knows nothing about any method.  A recipe says which
model to build, which parameters train, at which learning rate and with which weight decay
(:meth:`Recipe.trainable`, declared once; see :mod:`ovar.train.trainable`), what the loss
is (:meth:`Recipe.training_step`, after :meth:`Recipe.prepare` has linked the model and the
training set), how a batch is scored at evaluation
(:meth:`Recipe.evaluate_batch`; the engine computes the metrics), the datasets it builds
for the model (:meth:`Recipe.train_dataset`, :meth:`Recipe.eval_dataset`) and what happens
after training (:meth:`Recipe.finalize`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import Config
from .trainable import ParamGroup, Trainable, apply, resolve

__all__ = ["ParamGroup", "Recipe", "Trainable"]


class Recipe(ABC):
    """One training method.  Constructed from a :class:`Config`; keeps no state between
    calls: what a step needs beyond the batch (a frozen teacher, anchor weights, a feature
    cache) lives on the model or dataset it builds (see :meth:`prepare`)."""

    find_unused_parameters: bool = False
    """Passed to DistributedDataParallel: set when some trainable parameters may get no
    gradient in a step."""

    view_fusion: str = "mean_softmax"
    """How evaluation fuses a video's views (a rule of :mod:`ovar.models.view_fusion`), as the
    method's original code does; ``eval.fusion`` overrides it."""

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The module that trains (on CPU; the engine moves it to the device)."""

    def trainable(self) -> list[Trainable]:
        """The recipe's one declaration of what trains: :class:`Trainable` groups (name,
        parameter-name prefixes, lr scale, weight decay and its rule).  Everything else is
        frozen.  Default: every parameter in one group at the base learning rate."""
        return [Trainable("all", ("",))]

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        """The parameters of ``model`` in each group of :meth:`trainable`.  The optimiser,
        ``requires_grad``, the checkpoint's record of what trained and the parameter report
        all read this."""
        return resolve(model, self.trainable())

    def with_trainable(self, model: nn.Module) -> nn.Module:
        """``model`` with ``requires_grad`` set from :meth:`param_groups` (True exactly for
        the parameters that train); a recipe's :meth:`build_model` returns this, and the
        engine applies it again to whatever a recipe built."""
        apply(model, self.param_groups(model))
        return model

    def initialize(self, model: nn.Module) -> None:
        """Start from ``model.init_from`` (a trained checkpoint or model file) when set:
        same-name, same-shape tensors are copied (see :mod:`ovar.train.init_from`)."""
        source = getattr(self.config.model, "init_from", None)
        if source:
            from .init_from import init_from

            init_from(model, source)

    def prepare(self, model: nn.Module, train_set: Dataset) -> None:
        """Link ``model`` and ``train_set`` before the first step (e.g. a cache of features
        computed by frozen weights).  The engine calls it once both are built, the model is
        on its device and holds the weights training starts from (after ``run.resume``).
        Whatever it sets up lives on the two objects, not on the recipe.  Default: nothing."""

    @abstractmethod
    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor | dict[str, Any]:
        """The loss of one (micro-)batch, or a dict with ``"loss"`` and other scalars to log.

        ``model`` may be wrapped in DistributedDataParallel: call it, do not reach inside.
        ``batch`` is on the device.  Randomness should come from torch's global generator,
        which the engine seeds per step from (seed, epoch, step, rank).
        """

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The module evaluated (e.g. a weight-averaged copy).  Default: ``model`` itself."""
        return model

    @abstractmethod
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (B, C), labels (B,))`` for one evaluation batch: logits or probabilities."""

    def fusion_rule(self) -> str:
        """The view fusion rule used at evaluation: ``eval.fusion``, else :attr:`view_fusion`."""
        return getattr(self.config.eval, "fusion", None) or self.view_fusion

    def end_epoch(self, model: nn.Module, epoch: int, run_dir: Path) -> None:
        """Called on the main process after each epoch (1-based ``epoch``), before the
        checkpoint is written (e.g. to add the weights to a running average).  Default: none."""

    def finalize(self, model: nn.Module, run_dir: Path) -> None:
        """Post-processing after the last epoch (weight averaging, patching).  Default: none."""

    @abstractmethod
    def train_dataset(self, model: nn.Module) -> Dataset:
        """The training set for ``model``, as :meth:`build_model` returned it (the engine may
        pass it DDP-wrapped: see :func:`ovar.train.distributed.unwrap`); what the clips are
        shaped to (image size, normalisation) is read from it.  Items are dicts with
        ``video``, ``label``, ``index`` and ``failures`` (see :mod:`ovar.data.dataset`); the
        engine builds the loader and sampler."""

    def eval_dataset(self, model: nn.Module) -> Dataset | None:
        """The dataset evaluated during and after training, for ``model`` as in
        :meth:`train_dataset`; None for no evaluation."""
        return None
