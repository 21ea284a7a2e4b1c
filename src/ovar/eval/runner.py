"""Score one evaluation list with a scorer: batched, resumable, failures reported and skipped.

:func:`evaluate_set` writes into its folder the per-video scores (:mod:`ovar.eval.scores`),
``metrics.json`` (every metric of :mod:`ovar.eval.metrics`, per-class accuracy and the
confusion matrix included) and the per-class accuracy and confusion-matrix plots.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.dataset import VideoDataset
from ..data.loader import build_loader
from ..devices import resolve_precision
from .metrics import Metrics, compute_metrics
from .plots import plot_confusion, plot_per_class
from .scoring import score_batches
from .scores import ScoreStore

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 30.0  # scores reach the disk at least this often while scoring


@dataclass
class SetResult:
    """The outcome of one evaluated list."""

    metrics: Metrics
    failures: list[tuple[str, str]]  # (path, reason) of undecodable videos, not scored
    num_videos: int  # scored
    folder: Path


def evaluate_set(scorer: Any, dataset: VideoDataset, class_names: Sequence[str], folder: str | Path, *,
                 batch_size: int = 8, workers: int = 4, precision: str = "auto",
                 descriptions: Sequence[str] | None = None, resume: bool = True,
                 progress: bool = True, plots: bool = True) -> SetResult:
    """Score every video of ``dataset`` against ``class_names`` and compute the metrics.

    ``scorer`` has ``device``, ``classifier(names, descriptions)`` and ``score(video,
    classifier)`` (:mod:`ovar.eval.scorers`).  Videos scored (or found undecodable) before
    are not scored again when ``resume``.
    """
    folder = Path(folder)
    labels = [r.label for r in dataset.records]
    store = ScoreStore(folder, dataset.paths, labels, class_names, resume=resume)
    done = store.done()
    todo = [i for i in range(len(dataset)) if i not in done]
    if todo:
        _score(scorer, _subset(dataset, todo), todo, class_names, store, batch_size, workers, precision,
               descriptions, progress)
    store.finish()
    scores, targets = store.arrays()
    metrics = compute_metrics(scores, targets)
    failures = store.failure_list()
    (folder / "metrics.json").write_text(json.dumps({**metrics.summary(), "class_names": list(class_names),
                                                     "per_class_accuracy": metrics.per_class_accuracy,
                                                     "class_counts": metrics.class_counts,
                                                     "confusion": metrics.confusion,
                                                     "failures": [list(f) for f in failures]}) + "\n",
                                         encoding="utf-8")
    if plots and metrics.num_videos:
        plot_per_class(folder / "per_class_accuracy.png", class_names, metrics.per_class_accuracy)
        plot_confusion(folder / "confusion.png", class_names, metrics.confusion)
    return SetResult(metrics, failures, metrics.num_videos, folder)


def _subset(dataset: VideoDataset, indices: list[int]) -> VideoDataset:
    """The same dataset restricted to ``indices`` (evaluation clips do not depend on position)."""
    if len(indices) == len(dataset):
        return dataset
    part = copy.copy(dataset)
    part.records = [dataset.records[i] for i in indices]
    part.paths = [dataset.paths[i] for i in indices]
    return part


def _score(scorer: Any, dataset: VideoDataset, positions: list[int], class_names: Sequence[str],
           store: ScoreStore, batch_size: int, workers: int, precision: str,
           descriptions: Sequence[str] | None, progress: bool) -> None:
    device = scorer.device
    with torch.no_grad():
        classifier = scorer.classifier(list(class_names), descriptions)
    precision = resolve_precision(precision, device, "--precision")
    loader = build_loader(dataset, batch_size, workers=workers, shuffle=False, seed=0, distributed=False,
                          pin_memory=device.type == "cuda")
    last_flush = time.monotonic()
    try:
        for done in score_batches(loader, lambda batch: scorer.score(batch["video"], classifier), device, precision,
                                  progress=progress):
            batch = done.batch
            for local in batch["failed"]:
                reason = next((f.reason for f in batch["failures"] if f.path == dataset.paths[local]), "undecodable")
                store.add_failure(positions[local], reason)
            if done.scores is not None:
                store.add([positions[i] for i in batch["index"].tolist()], done.scores)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                store.flush()
                last_flush = time.monotonic()
    finally:
        store.flush()  # an interruption keeps every batch scored so far
        loader.close()
    if store.failures:
        logger.warning("%d video(s) could not be decoded and were not scored (listed in %s)",
                       len(store.failures), store.folder / "failures.jsonl")
