"""The one scoring loop: batches of evaluation clips in, scores out.

``ovar eval`` (:func:`ovar.eval.runner.evaluate_set`), the training engine's evaluation
(:func:`ovar.train.loop.evaluate`) and ``ovar predict`` (:func:`ovar.inference.api.predict`)
all run their batches through :func:`score_batches`: each batch goes to the device and is
scored under ``no_grad`` and the precision's autocast by the caller's ``score`` (a scorer
against its classifier, a recipe's ``evaluate_batch``, or predict's video encoder over
clips gathered from many videos); how the views of a video are fused is
:mod:`ovar.models.view_fusion`'s.  What a caller keeps of the scores (a resumable score
file, top-k hits gathered over processes, or each video's ranked labels) stays with the
caller.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from tqdm import tqdm

from ..devices import autocast


@dataclass
class ScoredBatch:
    """One batch as scored: ``scores`` (B, ...) float32 (class scores, or predict's clip
    embeddings) and the ``labels`` the scorer gave
    (None when it gave none), both None when no video of the batch decoded.  ``batch`` is
    the loader's batch (its tensors on the device); ``batch["failed"]`` lists the positions
    in the batch whose videos failed to decode and were not scored."""

    batch: dict[str, Any]
    scores: torch.Tensor | None
    labels: torch.Tensor | None = None


def batch_to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``batch`` with every tensor moved to ``device`` (without blocking on pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def score_batches(batches: Iterable[dict[str, Any]], score: Callable[[dict[str, Any]], Any],
                  device: torch.device, precision: str, *, progress: bool = True,
                  desc: str = "eval") -> Iterator[ScoredBatch]:
    """Score every batch of ``batches`` (a loader; the caller closes it) with ``score(batch)``,
    which returns (B, C) scores or ``(scores, labels)``; a progress bar on stderr when
    ``progress``.  ``precision`` is a resolved precision (see :mod:`ovar.devices`)."""
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(batches, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False,
               disable=not progress)
    for batch in bar:
        if batch["video"] is None:  # every video of the batch failed to decode
            yield ScoredBatch(batch, None)
            continue
        batch = batch_to_device(batch, device)
        with torch.no_grad(), autocast(precision, device):
            out = score(batch)
        scores, labels = out if isinstance(out, tuple) else (out, None)
        yield ScoredBatch(batch, scores.float(), labels)
