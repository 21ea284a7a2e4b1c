"""Batching concurrent requests' clips into shared forward passes on one worker thread.

Every request submits its decoded clips as one job; the worker takes the first waiting
job, then keeps collecting jobs for at most ``wait_s`` (or until ``max_batch`` clips are
gathered), encodes them all in one forward pass and hands each job its own embeddings.
The model is only ever run on this thread, so requests never compete for the device.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..eval.scoring import score_batches

log = logging.getLogger(__name__)


@dataclass
class _Job:
    clips: torch.Tensor  # (V, T, 3, S, S) on the CPU
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the worker has done so far (reported by ``/v1/health``)."""

    batches: int = 0
    jobs: int = 0
    clips: int = 0
    largest_batch_jobs: int = 0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "jobs": self.jobs, "clips": self.clips,
                "largest_batch_jobs": self.largest_batch_jobs}


class Batcher:
    """Runs ``encode`` ((N, T, 3, S, S) -> (N, E)) over clips of many jobs at once, in
    ``precision`` (resolved: fp32, fp16 or bf16), through the one scoring loop."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], device: torch.device, *,
                 max_batch: int = 16, wait_s: float = 0.005, precision: str = "fp32") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._encode = encode
        self._device = device
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._precision = precision
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._run, name="ovar-batcher", daemon=True)
        self._thread.start()

    def submit(self, clips: torch.Tensor) -> Future:
        """Queue ``clips`` (V, T, 3, S, S); the future gives their (V, E) embeddings."""
        job = _Job(clips)
        self._queue.put(job)
        return job.future

    async def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """``submit`` for asyncio callers."""
        return await asyncio.wrap_future(self.submit(clips))

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        carry: _Job | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            jobs, size = [first], first.clips.shape[0]
            deadline = time.monotonic() + self.wait_s
            stop = False
            while size < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if size + job.clips.shape[0] > self.max_batch:
                    carry = job  # starts the next batch: a batch never exceeds max_batch clips
                    break
                jobs.append(job)
                size += job.clips.shape[0]
            self._run_batch(jobs)
            if stop:
                if carry is not None:
                    self._run_batch([carry])
                return

    def _run_batch(self, jobs: list[_Job]) -> None:
        try:
            clips = torch.cat([job.clips for job in jobs])
            # A single job larger than max_batch (many views) still runs in max_batch chunks.
            chunks = ({"video": chunk} for chunk in clips.split(self.max_batch))
            embeddings = torch.cat([done.scores for done in score_batches(
                chunks, lambda batch: self._encode(batch["video"]), self._device, self._precision, progress=False)])
        except Exception as exc:  # hand the failure to every waiting request
            log.exception("batch of %d jobs failed", len(jobs))
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.stats.batches += 1
        self.stats.jobs += len(jobs)
        self.stats.clips += clips.shape[0]
        self.stats.largest_batch_jobs = max(self.stats.largest_batch_jobs, len(jobs))
        offset = 0
        for job in jobs:
            count = job.clips.shape[0]
            job.future.set_result(embeddings[offset:offset + count])
            offset += count
