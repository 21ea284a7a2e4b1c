"""A tiny learnable recipe for the engine tests: a linear classifier on separable features.

Also a script for torchrun: ``torchrun --nproc_per_node 2 tests/toy_recipe.py OUT_DIR
[overrides...]`` trains it and writes ``OUT_DIR/result_rank<r>.pt`` (final weights and the
last evaluation).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ovar.config import Config, load_config, parse_section
from ovar.recipes import ParamGroup, Recipe, register_recipe


@dataclass
class ToyOptions:
    """The toy recipe's own section (``recipe.*``)."""

    features: int = 8
    classes: int = 4
    train_items: int = 64
    eval_items: int = 30
    dropout: float = 0.0
    noise: float = 0.5
    step_sleep: float = 0.0  # seconds per training step: slow enough to interrupt mid-epoch
    sigterm_at_call: int = 0  # send SIGTERM to this process at that training step call (1-based)


class ToyDataset(Dataset):
    """Gaussian clusters around fixed class centres; items shaped like VideoDataset's."""

    def __init__(self, options: ToyOptions, items: int, seed: int, train: bool) -> None:
        gen = torch.Generator().manual_seed(1234)
        centres = 3.0 * torch.randn(options.classes, options.features, generator=gen)
        gen.manual_seed(seed)
        self.labels = torch.arange(items) % options.classes
        self.x = centres[self.labels] + options.noise * torch.randn(items, options.features, generator=gen)
        self.train = train

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"video": self.x[i], "label": int(self.labels[i]), "index": i, "failures": []}


class ToyModel(nn.Module):
    """``backbone`` (linear + layer norm) then ``head``: two parameter groups."""

    def __init__(self, options: ToyOptions) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(options.features, 16), nn.LayerNorm(16), nn.ReLU(),
                                      nn.Dropout(options.dropout))
        self.head = nn.Linear(16, options.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@register_recipe("toy")
class ToyRecipe(Recipe):
    """Cross-entropy on the toy clusters; backbone at ``optim.backbone_lr_ratio``."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = parse_section(ToyOptions, config.recipe, "recipe")

    def build_model(self) -> nn.Module:
        return ToyModel(self.options)

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        return [ParamGroup("backbone", list(model.backbone.named_parameters(prefix="backbone")),
                           lr_scale=self.config.optim.backbone_lr_ratio),
                ParamGroup("head", list(model.head.named_parameters(prefix="head")))]

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        if self.options.step_sleep:
            time.sleep(self.options.step_sleep)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.options.sigterm_at_call:
            os.kill(os.getpid(), signal.SIGTERM)  # as a cluster preempting the job would
        logits = model(batch["video"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        return {"loss": loss, "acc": (logits.argmax(1) == batch["label"]).float().mean()}

    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return eval_model(batch["video"]), batch["label"]

    def train_dataset(self, model: nn.Module) -> Dataset:
        return ToyDataset(self.options, self.options.train_items, seed=1, train=True)

    def eval_dataset(self, model: nn.Module) -> Dataset:
        return ToyDataset(self.options, self.options.eval_items, seed=2, train=False)


def toy_config(out_dir: str | Path, *overrides: str) -> Config:
    """A fast CPU configuration for the toy recipe."""
    return load_config(None, [f"run.out_dir={out_dir}", "run.device=cpu", "data.workers=0",
                              "data.batch_size=8", "schedule.epochs=3", "schedule.warmup_epochs=1",
                              "optim.lr=0.05", "optim.backbone_lr_ratio=0.5", "run.log_every=1",
                              *overrides])


def main(argv: list[str]) -> int:
    from ovar.train import distributed
    from ovar.train.loop import train

    out = Path(argv[0])
    config = toy_config(out, *argv[1:])
    with distributed.session("cpu") as ctx:
        result = train(config, ToyRecipe(config))
        torch.save({"model": result.model.state_dict(), "metrics": result.metrics},
                   out / f"result_rank{ctx.rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
