"""The classification service behind ``ovar serve``: one loaded model, cached class-text
embeddings, bounded decoding and batched scoring.  It knows nothing about HTTP.

A request goes: class embeddings (cached per label set) -> decode its clips in a thread,
at most ``max_concurrency`` videos at once -> encode the clips in a shared batch
(:class:`~ovar.serve.batching.Batcher`) -> fuse the views and rank the labels exactly as
:func:`ovar.predict` does, so the JSON equals ``ovar predict --format json``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import OvarError, VideoDecodeError
from ..devices import resolve_precision
from ..inference.api import ResultAssembler, clip_requests, test_sampler, test_transform, view_probabilities
from ..inference.inputs import expand_inputs
from ..inference.loader import ClipDataset
from ..models.zero_shot import VideoTextModel
from ..video import parse_views
from .batching import Batcher

log = logging.getLogger(__name__)


class RequestError(OvarError):
    """A request the service refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServiceOptions:
    """How the service batches and bounds its work."""

    max_batch: int = 16  # clips per forward pass
    batch_wait_s: float = 0.005  # how long the first clip waits for others to join its batch
    max_concurrency: int = 2  # videos decoding at once
    queue_size: int = 32  # requests admitted at once (decoding, waiting or scoring)
    sampling: str = "segment"
    precision: str = "auto"
    label_cache: int = 64  # label sets whose class embeddings stay in memory


class ClassifierCache:
    """Class-text embeddings per label set (an LRU of ``capacity`` sets), built once each."""

    def __init__(self, model: VideoTextModel, capacity: int) -> None:
        self._model = model
        self._capacity = capacity
        self._store: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, names: Sequence[str]) -> torch.Tensor:
        key = tuple(names)
        with self._lock:  # one builder at a time: concurrent requests for a new set build it once
            found = self._store.get(key)
            if found is not None:
                self._store.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
            with torch.no_grad():
                classifier = self._model.classifier(list(names))
            self._store[key] = classifier
            while len(self._store) > self._capacity:
                self._store.popitem(last=False)
            return classifier


class ClassifyService:
    """Scores videos on disk against labels; safe to call from many asyncio tasks."""

    def __init__(self, model: VideoTextModel, *, label_sets: dict[str, list[str]] | None = None,
                 options: ServiceOptions = ServiceOptions(), description: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.options = options
        self.label_sets = dict(label_sets or {})
        self.description = dict(description or {})
        self.sampler = test_sampler(model, options.sampling)
        precision = resolve_precision(options.precision, model.device, "--precision")
        self.batcher = Batcher(model.encode_video, model.device, max_batch=options.max_batch,
                               wait_s=options.batch_wait_s, precision=precision)
        self.classifiers = ClassifierCache(model, options.label_cache)
        self._decode_slots = asyncio.Semaphore(options.max_concurrency)
        self.active = 0  # admitted requests, for the queue limit
        for names in self.label_sets.values():  # warm the cache: named sets answer at once
            self.classifiers.get(names)

    def admit(self) -> bool:
        """Take a place in the queue, or False when ``queue_size`` requests are in already."""
        if self.active >= self.options.queue_size:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def labels_of(self, labels: str | None, label_set: str | None) -> list[str]:
        """The names a request asks for: a comma-separated list or a named set."""
        from ..text import parse_labels

        if labels and label_set:
            raise RequestError(400, "give labels or label_set, not both")
        if label_set:
            if label_set not in self.label_sets:
                known = ", ".join(sorted(self.label_sets)) or "none"
                raise RequestError(400, f"label_set: unknown label set '{label_set}' (known: {known})")
            return self.label_sets[label_set]
        if not labels:
            raise RequestError(400, "no labels given (send labels or label_set)")
        return parse_labels(labels)

    async def classify(self, path: str, display: str, names: list[str], *, views: str = "1x1",
                       segments: float | None = None, top_k: int | None = None,
                       allowed_root: Path | None = None) -> list[dict]:
        """Rank ``names`` for the video(s) at ``path`` (shown to the client as ``display``).

        ``allowed_root``: every video found must lie inside it (a folder's symlinks too).
        """
        from starlette.concurrency import run_in_threadpool

        try:
            temporal, spatial = parse_views(views)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        if segments is not None and segments <= 0:
            raise RequestError(400, f"segments must be positive, got {segments}")
        classifier = await run_in_threadpool(self.classifiers.get, names)
        try:
            paths, batch = expand_inputs([path])
        except VideoDecodeError as exc:
            status = 404 if exc.reason == "file not found" else 422
            raise RequestError(status, f"{display}: {exc.reason}") from None
        if allowed_root is not None:
            for video in paths:
                if not Path(video).resolve().is_relative_to(allowed_root):
                    raise RequestError(403, f"{_shown(video, path, display)}: outside the served root")
        transform = test_transform(self.model, spatial)
        async with self._decode_slots:
            requests, owners, failures, items = await run_in_threadpool(self._decode, paths, segments, temporal,
                                                                        spatial, transform)
        good = [item for item in items if item["clips"] is not None]
        embeddings = await asyncio.gather(*[self.batcher.encode(item["clips"]) for item in good])
        assembler = ResultAssembler(paths, requests, owners, failures, names, top_k, segments is not None, None)
        for item in items:
            if item["clips"] is None:
                assembler.add(assembler.note(item), item["error"])
        for item, views_embedded in zip(good, embeddings):
            assembler.add(assembler.note(item), view_probabilities(self.model, views_embedded, classifier),
                          item.get("warning"))
        assembler.flush()
        results = assembler.results
        for result in results:
            result.video = _shown(result.video, path, display)
        if not batch:
            if results[0].error is not None:
                raise RequestError(422, f"{results[0].video}: {results[0].error}")
        # A folder's unreadable videos are rows with ``error``, as in ``ovar predict``'s JSON.
        return [r.to_dict() for r in results]

    def _decode(self, paths, segments, temporal, spatial, transform):
        requests, owners, failures = clip_requests(paths, segments)
        dataset = ClipDataset(requests, self.sampler, temporal, spatial, transform)
        return requests, owners, failures, [item for i in range(len(dataset)) for item in dataset.group([i])]

    def describe(self) -> dict[str, Any]:
        """The loaded model, as ``/v1/models`` lists it."""
        templates = self.model.templates
        return {**self.description, "kind": getattr(self.model, "kind", "zero_shot"),
                "backbone": self.model.backbone.name, "frames": self.model.frames,
                "templates": templates if isinstance(templates, str) else list(templates),
                "device": str(self.model.device), "label_sets": self.label_sets}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "active": self.active, "queue_size": self.options.queue_size,
                "max_concurrency": self.options.max_concurrency, "max_batch": self.options.max_batch,
                "batching": self.batcher.stats.to_dict(),
                "label_cache": {"hits": self.classifiers.hits, "misses": self.classifiers.misses}}

    def close(self) -> None:
        self.batcher.close()


def _shown(video: str, path: str, display: str) -> str:
    """A found video's name as the client named it: ``display`` in place of the ``path`` prefix."""
    if video == path:
        return display
    return os.path.normpath(os.path.join(display, os.path.relpath(video, path)))
