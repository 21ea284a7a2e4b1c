"""Which parameters train: a recipe's one declaration, and what is derived from it.

A recipe lists its trainable groups once (:meth:`ovar.train.recipe.Recipe.trainable`): each
a name, the parameter-name prefixes it takes (the longest matching prefix wins, so ``""``
means "every other parameter"), a learning-rate scale and its weight-decay rule. From that
one list come the optimiser's groups (:class:`ParamGroup`), ``requires_grad``, the names a
checkpoint records as trained and the parameter report of a run (``parameters.json``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from torch import nn

log = logging.getLogger(__name__)
REPORT_FILE = "parameters.json"
DECAY_RULES = ("no_1d", "all", "no_vectors")


@dataclass(frozen=True)
class Trainable:
    """One trainable group of a recipe, as declared.

    ``lr_scale`` multiplies the base learning rate; with ``weight_decay`` the group takes
    ``optim.weight_decay`` except on the parameters ``decay_rule`` exempts (see
    :class:`ParamGroup`).
    """

    name: str
    prefixes: tuple[str, ...]  # parameter-name prefixes of the recipe's model; "" matches any
    lr_scale: float = 1.0
    weight_decay: bool = True
    decay_rule: str = "no_1d"

    def __post_init__(self) -> None:
        if self.decay_rule not in DECAY_RULES:
            raise ValueError(f"trainable group {self.name!r}: unknown decay_rule {self.decay_rule!r} "
                             f"(known: {', '.join(DECAY_RULES)})")


@dataclass
class ParamGroup:
    """Parameters that train together: a declared :class:`Trainable` resolved on a model.

    ``lr_scale`` multiplies the base learning rate; with ``weight_decay`` the group takes
    ``optim.weight_decay`` except on the parameters ``decay_rule`` exempts (the engine
    splits them off, see :func:`ovar.train.optim.no_decay`): ``"no_1d"`` biases and
    0-/1-D parameters, ``"all"`` none (ActionCLIP, Text4Vis, EVL), ``"no_vectors"`` biases
    and 1-D parameters but not 0-D ones such as ``logit_scale`` (PySlowFast's
    ``ZERO_WD_1D_PARAM``: Open-VCLIP, FROSTER).
    """

    name: str
    params: list[tuple[str, nn.Parameter]] = field(default_factory=list)  # (name, parameter)
    lr_scale: float = 1.0
    weight_decay: bool = True
    decay_rule: str = "no_1d"


def resolve(model: nn.Module, declared: Sequence[Trainable]) -> list[ParamGroup]:
    """The parameters of ``model`` in each declared group (in declaration order, empty groups
    left out); a parameter no prefix matches stays frozen."""
    groups = [ParamGroup(d.name, [], d.lr_scale, d.weight_decay, d.decay_rule) for d in declared]
    for name, param in model.named_parameters():
        best, length = None, -1
        for index, group in enumerate(declared):
            for prefix in group.prefixes:
                if name.startswith(prefix) and len(prefix) > length:
                    best, length = index, len(prefix)
        if best is not None:
            groups[best].params.append((name, param))
    return [g for g in groups if g.params]


def apply(model: nn.Module, groups: Sequence[ParamGroup]) -> None:
    """``requires_grad`` of every parameter of ``model``: True exactly for those in ``groups``."""
    trainable = {id(p) for g in groups for _, p in g.params}
    for param in model.parameters():
        param.requires_grad_(id(param) in trainable)


def trained_names(groups: Sequence[ParamGroup]) -> dict[str, list[str]]:
    """Group name -> the names of its parameters (what a checkpoint records as trained)."""
    return {g.name: [name for name, _ in g.params] for g in groups}


def parameter_report(model: nn.Module, groups: Sequence[ParamGroup]) -> dict[str, Any]:
    """Counts per trainable group, and of the frozen rest, for logs and ``parameters.json``."""
    listed = {id(p) for g in groups for _, p in g.params}
    total = sum(p.numel() for p in model.parameters())
    rows = [{"name": g.name, "lr_scale": g.lr_scale, "weight_decay": g.weight_decay, "decay_rule": g.decay_rule,
             "tensors": len(g.params), "parameters": sum(p.numel() for _, p in g.params)} for g in groups]
    trainable = sum(row["parameters"] for row in rows)
    frozen = [name for name, p in model.named_parameters() if id(p) not in listed]
    return {"groups": rows, "trainable": trainable, "frozen": total - trainable, "frozen_tensors": len(frozen),
            "total": total}


def write_parameter_report(run_dir: str | Path, model: nn.Module, groups: Sequence[ParamGroup]) -> dict[str, Any]:
    """Log the parameter report and write it to ``<run_dir>/parameters.json``."""
    report = parameter_report(model, groups)
    for row in report["groups"]:
        decay = f"decay {row['decay_rule']}" if row["weight_decay"] else "no weight decay"
        log.info("trains %-10s %12d parameters (%d tensors, lr x %g, %s)", row["name"], row["parameters"],
                 row["tensors"], row["lr_scale"], decay)
    log.info("frozen %d parameters of %d", report["frozen"], report["total"])
    path = Path(run_dir) / REPORT_FILE
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
