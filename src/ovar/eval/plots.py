"""PNG plots of evaluation results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

MAX_LABELLED = 60  # class names shown on an axis; beyond that ticks are unlabelled


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # long tick labels stay inside
    plt.close(fig)
    return path


def plot_bars(path: Path, title: str, labels: Sequence[str], values: Sequence[float],
              errors: Sequence[float] | None = None) -> Path:
    """Labelled bars of top-1 accuracy, with optional error bars (a std)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.5))
    ax.bar(range(len(labels)), values, yerr=errors, capsize=3 if errors else 0, color="#55a868")
    ax.set_xticks(range(len(labels)), list(labels), rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_per_class(path: Path, class_names: Sequence[str], accuracy: Sequence[float | None]) -> Path:
    """Bars of per-class top-1 accuracy (classes absent from the list left empty)."""
    plt = _pyplot()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(min(40.0, max(4.0, 0.18 * n + 2)), 3.5))
    ax.bar(range(n), [a if a is not None else 0.0 for a in accuracy], color="#4c72b0")
    if n <= MAX_LABELLED:
        ax.set_xticks(range(n), list(class_names), rotation=75, ha="right", fontsize=6)
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 (%)")
    ax.set_title("per-class accuracy", fontsize=9)
    return _save(fig, path)


def plot_confusion(path: Path, class_names: Sequence[str], confusion: Sequence[Sequence[int]]) -> Path:
    """The confusion matrix, each row normalised by its class's count."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(confusion, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(class_names)
    size = min(20.0, max(4.0, 0.15 * n + 3))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= MAX_LABELLED:
        ax.set_xticks(range(n), list(class_names), rotation=90, fontsize=5)
        ax.set_yticks(range(n), list(class_names), fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_grouped_bars(path: Path, title: str, groups: Sequence[str], series: dict[str, Sequence[float]]) -> Path:
    """Side-by-side bars per group, one colour per series (e.g. base vs novel per dataset)."""
    plt = _pyplot()
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) + 2), 3.5))
    for k, (name, values) in enumerate(series.items()):
        ax.bar([g + k * width for g in range(len(groups))], values, width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], list(groups))
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)
