"""Classification metrics of a scored evaluation set, and the aggregates the papers report.

Accuracies are percentages.  ``mean_std`` uses the population standard deviation (numpy's
default ``ddof=0``), as the Text4Vis and FROSTER evaluation scripts do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class Metrics:
    """Metrics of N scored videos over C classes."""

    num_videos: int
    top1: float
    top5: float
    mean_class_accuracy: float  # mean over classes present in the labels
    mean_ap: float  # ActivityNet-style mAP over classes present in the labels
    per_class_accuracy: list[float | None] = field(default_factory=list)  # None: class absent
    class_counts: list[int] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)  # [true][predicted]

    def summary(self) -> dict[str, float]:
        return {"top1": self.top1, "top5": self.top5, "mean_class_accuracy": self.mean_class_accuracy,
                "mAP": self.mean_ap, "num_videos": self.num_videos}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percentage of rows whose label is among the ``k`` highest scores (k capped at C)."""
    if len(labels) == 0:
        return float("nan")
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == labels.view(-1, 1)).any(dim=1).float().mean().item()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, rows the true class, columns the predicted one."""
    flat = labels.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """ActivityNet-style AP of one class: videos sorted by decreasing score (ties keep list
    order), precision made monotone (at each rank the best precision at any deeper rank),
    averaged over the ranks of the positives.  NaN without positives."""
    count = int(positives.sum())
    if count == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    hits = positives[order].double()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    envelope = precision.flip(0).cummax(0).values.flip(0)
    return float((envelope * hits).sum() / count)


def mean_average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes with at least one positive of their AP, as a percentage."""
    aps = [average_precision(scores[:, c], labels == c) for c in range(scores.shape[1])]
    present = [ap for ap in aps if not math.isnan(ap)]
    return 100.0 * sum(present) / len(present) if present else float("nan")


def compute_metrics(scores: torch.Tensor, labels: torch.Tensor) -> Metrics:
    """Every metric of (N, C) ``scores`` against (N,) ``labels``."""
    scores, labels = scores.float().cpu(), labels.long().cpu()
    num_classes = scores.shape[1]
    if len(labels) == 0:
        nan = float("nan")
        return Metrics(0, nan, nan, nan, nan, [None] * num_classes, [0] * num_classes,
                       [[0] * num_classes for _ in range(num_classes)])
    predicted = scores.argmax(dim=1)
    confusion = confusion_matrix(predicted, labels, num_classes)
    counts = confusion.sum(dim=1)
    per_class = [100.0 * int(confusion[c, c]) / int(counts[c]) if counts[c] else None for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return Metrics(len(labels), topk_accuracy(scores, labels, 1), topk_accuracy(scores, labels, 5),
                   sum(present) / len(present), mean_average_precision(scores, labels), per_class,
                   counts.tolist(), confusion.tolist())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of ``values``."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def harmonic_mean(base: float, novel: float) -> float:
    """``2·B·N / (B + N)``, the base-to-novel summary; 0 when both are 0."""
    return 2.0 * base * novel / (base + novel) if base + novel else 0.0
