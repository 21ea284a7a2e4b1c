"""DataLoader construction for :class:`~ovar.data.dataset.VideoDataset`, with failure accounting.

:func:`build_loader` returns a :class:`VideoLoader` (a ``DataLoader``) whose batches are dicts:

* ``video``: stacked clips of the items that decoded, ``(B, T, 3, S, S)`` for training,
  ``(B, V, T, 3, S, S)`` for evaluation, or ``None`` when every item of the batch failed;
* ``label``, ``index``: long tensors matching ``video`` row for row;
* ``failed``: dataset indices of evaluation items left out of ``video`` (undecodable);
* ``failures``: every :class:`~ovar.data.dataset.Failure` behind the batch;
* ``packed``: True when the items said (``"packed": True``) that their ``video`` slot holds
  precomputed features rather than clips, so a consumer never guesses from the shape.

Workers cannot update the parent's counters, so failures ride inside the batches and the
loader adds them to its :class:`FailureLog` (``loader.failures``) as batches arrive; the
log writes one warning line the first time it meets a path.  Summarising at the end of an
epoch or evaluation is the caller's job: :func:`report_failures`, or
:func:`gather_failures` first under ``torch.distributed``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import OvarError
from .dataset import Failure, VideoDataset, derive_seed, fatal_error

logger = logging.getLogger(__name__)


class FailureLog:
    """Videos that failed to decode during a run, de-duplicated by path and counted.

    ``action`` says what happened to them ("replaced", "excluded from evaluation") in the
    log line and the summary.
    """

    def __init__(self, action: str = "skipped") -> None:
        self.action = action
        self._reasons: dict[str, str] = {}  # path -> first reason seen
        self._counts: Counter[str] = Counter()

    def add(self, failures: Iterable[Failure | tuple[str, str]], *, log: bool = True) -> int:
        """Record ``failures``; a path seen for the first time is logged once. Returns new paths."""
        new = 0
        for path, reason in failures:
            if path not in self._reasons:
                self._reasons[path] = reason
                new += 1
                if log:
                    logger.warning("undecodable video %s: %s: %s", self.action, path, reason)
            self._counts[path] += 1
        return new

    def merge(self, other: FailureLog) -> None:
        """Add another log's entries (e.g. another rank's) without logging them again."""
        for path, reason in other._reasons.items():
            self._reasons.setdefault(path, reason)
        self._counts.update(other._counts)

    def __len__(self) -> int:
        """Number of distinct failed videos."""
        return len(self._reasons)

    @property
    def total(self) -> int:
        """Number of failures, counting a video once per time it was met."""
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        """``{path: times met}``, sorted by path."""
        return {p: self._counts[p] for p in sorted(self._counts)}

    def as_list(self) -> list[Failure]:
        """One :class:`Failure` per video, sorted by path."""
        return [Failure(p, self._reasons[p]) for p in sorted(self._reasons)]

    def summary(self) -> str:
        """A header line, then ``path: reason`` per video (with a count when met repeatedly)."""
        if not self._reasons:
            return "no video failed to decode"
        n = len(self._reasons)
        times = f", {self.total} times in all" if self.total != n else ""
        lines = [f"{n} video{'s' if n != 1 else ''} could not be decoded ({self.action}{times}):"]
        for path, reason in self.as_list():
            count = self._counts[path]
            lines.append(f"  {path}: {reason}" + (f" (x{count})" if count > 1 else ""))
        return "\n".join(lines)

    def __getstate__(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": self._reasons, "counts": dict(self._counts)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.action = state["action"]
        self._reasons = dict(state["reasons"])
        self._counts = Counter(state["counts"])


def report_failures(log: FailureLog) -> int:
    """Log ``log.summary()`` as a warning if anything failed.

    Returns the number of distinct failed videos.
    """
    if len(log):
        logger.warning(log.summary())
    return len(log)


def gather_failures(log: FailureLog) -> FailureLog:
    """Every rank's failures merged (all ranks must call it); ``log`` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return log
    logs: list[FailureLog | None] = [None] * dist.get_world_size()
    dist.all_gather_object(logs, log)
    merged = FailureLog(log.action)
    for other in logs:
        if other is not None:
            merged.merge(other)
    return merged


def collate_videos(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the items that decoded; list the failed ones and every failure (see module doc)."""
    ok = [it for it in items if it["video"] is not None]
    return {
        "video": torch.stack([it["video"] for it in ok]) if ok else None,
        "label": torch.tensor([it["label"] for it in ok], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in ok], dtype=torch.long),
        "failed": [it["index"] for it in items if it["video"] is None and not it.get("fatal")],
        "failures": [f for it in items for f in it["failures"]],
        "fatal": next((it["fatal"] for it in items if it.get("fatal")), None),
        "packed": bool(ok) and all(it.get("packed", False) for it in ok),
    }


class ShardedSampler(Sampler[int]):
    """The indices one rank reads in one epoch, optionally shuffled.

    The order is ``0..n-1``, or a permutation seeded by ``(seed, epoch)`` (the same on every
    rank); rank ``r`` of ``W`` takes positions ``r, r+W, ...``.  Without ``pad`` the ranks
    together read every index exactly once, shard sizes differing by at most one (for
    evaluation: no duplicates skew the metrics).  With ``pad`` every rank reads the same
    number, ``ceil(n/W)`` (the order wraps around) or ``floor(n/W)`` with ``drop_last``
    (for training, where ranks must take the same number of steps).
    """

    def __init__(self, num_items: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = False,
                 seed: int = 0, pad: bool = False, drop_last: bool = False) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size
        self.shuffle, self.seed, self.pad, self.drop_last = shuffle, seed, pad, drop_last
        self.epoch = 0
        self.start = 0  # leading positions of this rank's epoch to skip (a run resumed mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start = 0

    def order(self) -> list[int]:
        """All indices in this epoch's order, before sharding."""
        if not self.shuffle:
            return list(range(self.num_items))
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=gen).tolist()

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        order = self.order()
        if self.pad and order:
            per_rank = self.num_items // self.world_size if self.drop_last else \
                math.ceil(self.num_items / self.world_size)
            total = per_rank * self.world_size
            order = (order * math.ceil(total / len(order)))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:])

    def __len__(self) -> int:
        if not self.pad:
            return len(range(self.rank, self.num_items, self.world_size))
        per_rank = self.num_items / self.world_size
        return int(per_rank) if self.drop_last else math.ceil(per_rank)


class EpochKeySampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)``: persistent workers learn the epoch from each request."""

    def __init__(self, base: ShardedSampler) -> None:
        self.base = base

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.base.epoch
        return ((epoch, i) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class VideoLoader(DataLoader):
    """A DataLoader that records the failures of every batch in ``self.failures``.

    Call :meth:`set_epoch` before each training epoch (order and clips depend on it).  A
    deferred fatal error (strict mode, a broken dataset) is raised here, in the main process.
    """

    def __init__(self, dataset: Dataset, *, failures: FailureLog, shard: ShardedSampler | None = None,
                 **kwargs: Any) -> None:
        """``shard``: the sampler that orders and shards the indices, when ``sampler`` wraps it."""
        super().__init__(dataset, **kwargs)
        self.failures = failures
        self.shard = shard if shard is not None else self.sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batches = super().__iter__()
        for batch in batches:
            self.failures.add(batch["failures"])
            if batch["fatal"] is not None:
                self._stop_workers(batches)
                raise fatal_error(batch["fatal"])
            yield batch

    def _stop_workers(self, batches: Iterator[Any]) -> None:
        """End the workers now: the run stops, and a traceback kept alive (a notebook, a test)
        would otherwise hold them until a garbage collection whose shutdown can stall."""
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if self.persistent_workers:
            self._iterator = None  # the next iteration starts fresh workers


    def close(self) -> None:
        """Stop persistent workers now: left to interpreter exit they can outlive the process
        group and abort the process.  The next iteration starts fresh workers.

        DataLoader has no public way to end persistent workers, so this subclass is the one
        place that touches its iterator.
        """
        iterator = getattr(self, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._iterator = None


def _dist_info(distributed: bool | None) -> tuple[int, int]:
    """``(rank, world_size)``; (0, 1) when not distributed."""
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = initialised
    if not distributed:
        return 0, 1
    if not initialised:
        raise OvarError("distributed loading needs torch.distributed to be initialised first")
    return dist.get_rank(), dist.get_world_size()


def build_loader(dataset: Dataset, batch_size: int, *, workers: int, shuffle: bool, seed: int,
                 distributed: bool | None = None, drop_last: bool = False,
                 pin_memory: bool | None = None) -> VideoLoader:
    """A :class:`VideoLoader` over ``dataset`` (normally a :class:`~ovar.data.dataset.VideoDataset`).

    ``distributed`` (default: whether ``torch.distributed`` is initialised) shards the data
    over ranks with :class:`ShardedSampler`: padded for a training dataset, exactly once per
    video for evaluation.  ``shuffle`` reorders per epoch from ``(seed, epoch)``.  Workers
    persist across epochs; memory is pinned when CUDA is available unless ``pin_memory``
    says otherwise.  The dataset's errors are deferred to the main process.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    rank, world = _dist_info(distributed)
    train = bool(getattr(dataset, "train", shuffle))
    shard = ShardedSampler(len(dataset), rank=rank, world_size=world, shuffle=shuffle, seed=seed,
                           pad=train, drop_last=drop_last)
    keyed = isinstance(dataset, VideoDataset)
    if keyed:
        dataset.defer_errors = True
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return VideoLoader(
        dataset,
        failures=FailureLog("replaced" if train else "excluded from evaluation"),
        shard=shard,
        batch_size=batch_size,
        sampler=EpochKeySampler(shard) if keyed else shard,
        num_workers=workers,
        collate_fn=collate_videos,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        # Seeds the workers' own RNGs (for any code that uses torch's global RNG there).
        generator=torch.Generator().manual_seed(derive_seed(seed, rank)),
    )
