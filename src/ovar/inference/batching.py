"""Decoded videos' clips gathered into model batches of a fixed size, and split back.

:func:`ovar.predict` scores many videos with V clips each (views, crops, windows); a forward
pass takes exactly ``batch_size`` clips whichever videos they come from, so a video may span
two passes.  :func:`gather_clips` cuts the stream of videos into such batches (what the one
scoring loop, :func:`ovar.eval.scoring.score_batches`, runs), and :class:`ClipSplitter` puts
each video's outputs back together once its last clip has been through the model.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Iterator, NamedTuple

import torch


class Part(NamedTuple):
    """The clips of one video in one batch: ``count`` of them, its ``last`` ones or not."""

    key: Hashable
    count: int
    last: bool
    warning: str | None


def _batch(clips: list[torch.Tensor], parts: list[Part]) -> dict[str, Any]:
    return {"video": clips[0] if len(clips) == 1 else torch.cat(clips), "parts": parts, "errors": []}


def gather_clips(items: Iterable[tuple[Hashable, dict[str, Any]]], batch_size: int) -> Iterator[dict[str, Any]]:
    """Batches of exactly ``batch_size`` clips (the last may have fewer) from ``items``.

    ``items`` are ``(key, item)`` pairs, an item holding a video's ``clips`` (V >= 1, ...) and its
    ``warning``, or ``clips`` None and an ``error``.  A batch is ``{"video": (n, ...),
    "parts": [Part, ...], "errors": []}`` in clip order; a video that failed comes out at
    once as ``{"video": None, "parts": [], "errors": [(key, error)]}``.
    """
    size = max(1, batch_size)
    clips: list[torch.Tensor] = []
    parts: list[Part] = []
    pending = 0
    for key, item in items:
        video = item["clips"]
        if video is None:
            yield {"video": None, "parts": [], "errors": [(key, item["error"])]}
            continue
        warning = item.get("warning")
        offset = 0
        while offset < len(video):
            take = min(size - pending, len(video) - offset)
            clips.append(video[offset:offset + take])
            offset += take
            pending += take
            parts.append(Part(key, take, offset == len(video), warning))
            if pending == size:
                yield _batch(clips, parts)
                clips, parts, pending = [], [], 0
    if clips:
        yield _batch(clips, parts)


class ClipSplitter:
    """Outputs of :func:`gather_clips` batches back into whole videos."""

    def __init__(self) -> None:
        self.partial: dict[Hashable, list[torch.Tensor]] = {}

    def split(self, parts: list[Part], outputs: torch.Tensor | None) -> list[tuple[Hashable, torch.Tensor, str | None]]:
        """``(key, outputs (V, ...), warning)`` of every video whose last clips are in this
        batch, in batch order; the others' outputs are kept until their last batch."""
        done = []
        offset = 0
        for key, count, last, warning in parts:
            piece = outputs[offset:offset + count]
            offset += count
            pieces = self.partial.pop(key, []) + [piece]
            if not last:
                self.partial[key] = pieces
                continue
            done.append((key, pieces[0] if len(pieces) == 1 else torch.cat(pieces), warning))
        return done
