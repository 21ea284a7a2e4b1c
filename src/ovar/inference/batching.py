"""Gathering decoded videos' clips into model batches of a fixed size."""

from __future__ import annotations

from collections import deque
from typing import Callable

import torch


class ClipBatcher:
    """Feeds ``encode`` exactly ``batch_size`` clips per call (the last call may have fewer).

    Videos arrive one at a time with V clips each (views, crops); a video may span two
    forward passes. ``add`` and ``finish`` return ``(index, embeddings (V, E), warning)`` for
    every video whose clips are all encoded, in arrival order.
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> None:
        self.encode, self.batch_size = encode, max(1, batch_size)
        self.waiting: deque[tuple[int, int, str | None]] = deque()  # (index, clips, warning)
        self.clips: list[torch.Tensor] = []  # decoded, not yet encoded
        self.pending = 0
        self.embedded: list[torch.Tensor] = []  # encoded, not yet handed out
        self.embedded_count = 0

    def add(self, index: int, clips: torch.Tensor, warning: str | None = None) -> list[tuple]:
        self.waiting.append((index, clips.shape[0], warning))
        self.clips.append(clips)
        self.pending += clips.shape[0]
        ready: list[tuple] = []
        while self.pending >= self.batch_size:
            ready += self._run(self.batch_size)
        return ready

    def finish(self) -> list[tuple]:
        """Encode what is left (a last, smaller batch)."""
        return self._run(self.pending) if self.pending else []

    def _run(self, count: int) -> list[tuple]:
        flat = self.clips[0] if len(self.clips) == 1 else torch.cat(self.clips)
        rest = flat[count:]
        self.clips = [rest] if len(rest) else []
        self.pending -= count
        self.embedded.append(self.encode(flat[:count]))
        self.embedded_count += count
        ready = []
        while self.waiting and self.waiting[0][1] <= self.embedded_count:
            index, size, warning = self.waiting.popleft()
            embeddings = self.embedded[0] if len(self.embedded) == 1 else torch.cat(self.embedded)
            self.embedded = [embeddings[size:]] if len(embeddings) > size else []
            self.embedded_count -= size
            ready.append((index, embeddings[:size], warning))
        return ready
