"""Subsets of a video list: K-shot draws, class subsets (base/novel) and half-class trials.

Every function is a pure function of its arguments: no global RNG is read or changed, and
records are put in a canonical order before drawing, so each process of a distributed
run computes the same subset from the same list, whatever order it was read in.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Sequence

import numpy as np

from .records import VideoRecord

logger = logging.getLogger(__name__)


def _canonical(records: Sequence[VideoRecord]) -> list[VideoRecord]:
    # num_frames may be None: sort it as -1 so the key stays comparable.
    return sorted(records, key=lambda r: (r.label, r.path, -1 if r.num_frames is None else r.num_frames))


def k_shot(records: Sequence[VideoRecord], k: int, seed: int) -> list[VideoRecord]:
    """``k`` videos of every class, drawn with ``seed``; the same in every process.

    Classes are visited in label order; each draws ``k`` of its videos (sorted by path)
    without replacement from one ``numpy.random.default_rng(seed)`` stream.  A class with
    at most ``k`` videos keeps them all (with a warning).  The result is sorted by
    (label, path).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    by_class: dict[int, list[VideoRecord]] = defaultdict(list)
    for record in _canonical(records):
        by_class[record.label].append(record)
    rng = np.random.default_rng(seed)
    chosen: list[VideoRecord] = []
    short = []
    for label in sorted(by_class):
        group = by_class[label]
        if len(group) <= k:
            if len(group) < k:
                short.append(f"{label} ({len(group)})")
            chosen.extend(group)
            continue
        picks = rng.choice(len(group), size=k, replace=False)
        chosen.extend(group[i] for i in sorted(picks.tolist()))
    if short:
        logger.warning("%d-shot: %d class(es) have fewer than %d videos and keep all they have: %s",
                       k, len(short), k, ", ".join(short))
    return chosen


def class_subset(records: Sequence[VideoRecord], classes: Sequence[int],
                 class_names: Sequence[str] | None = None
                 ) -> tuple[list[VideoRecord], list[str] | None]:
    """Keep the records of ``classes``, relabelled ``0..len(classes)-1`` in the order given.

    Returns the records (in their original order) and the matching class names (``None``
    without ``class_names``).
    """
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}")
    if any(c < 0 for c in classes):
        raise ValueError(f"class indices must be non-negative, got {classes}")
    if class_names is not None and any(c >= len(class_names) for c in classes):
        raise ValueError(f"class index out of range for {len(class_names)} class names: {classes}")
    new_label = {c: i for i, c in enumerate(classes)}
    kept = [VideoRecord(r.path, new_label[r.label], r.num_frames) for r in records if r.label in new_label]
    names = [class_names[c] for c in classes] if class_names is not None else None
    return kept, names


def half_class_indices(num_classes: int, trial: int) -> list[int]:
    """The sorted classes of Text4Vis half-class trial ``trial``.

    Text4Vis seeds numpy's global RNG with ``trial`` and keeps the first ``C // 2`` of a
    random permutation of the class indices; a local ``RandomState(trial)`` gives the
    same permutation without touching the global RNG.
    """
    if num_classes < 2:
        raise ValueError(f"a half-class trial needs at least 2 classes, got {num_classes}")
    perm = np.random.RandomState(trial).permutation(num_classes)
    return sorted(perm[: num_classes // 2].tolist())


def half_class_trial(records: Sequence[VideoRecord], class_names: Sequence[str], trial: int
                     ) -> tuple[list[VideoRecord], list[str]]:
    """Records and class names of Text4Vis half-class trial ``trial`` (0..9 in the papers).

    Labels index the sorted kept classes.  As in Text4Vis (``np.unique`` of the kept
    videos' labels), a kept class without any video is left out of the classifier too.
    """
    kept = half_class_indices(len(class_names), trial)
    present = {r.label for r in records}
    missing = [c for c in kept if c not in present]
    if missing:
        logger.warning("half-class trial %d: %d kept class(es) have no videos and are left out: %s",
                       trial, len(missing), ", ".join(class_names[c] for c in missing))
        kept = [c for c in kept if c in present]
    subset, names = class_subset(records, kept, class_names)
    assert names is not None
    return subset, names
