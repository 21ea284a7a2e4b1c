"""Training and evaluation datasets: list records -> decoded, sampled, transformed clips.

Item ``i`` of a :class:`VideoDataset` is a dict:

* ``video``: float tensor, ``(T, 3, S, S)`` when training; ``(V, T, 3, S, S)`` when
  evaluating, ``V`` = temporal clips x spatial crops stacked clip-major (clip 0's crops,
  then clip 1's, ...); ``None`` for an evaluation item whose video failed to decode;
* ``label``, ``index``: the record actually loaded (a replacement when training);
* ``failures``: list of :class:`Failure` ``(path, reason)`` met while producing the item
  (training: the videos replaced; evaluation: the one failed video, if any);
* ``fatal``: ``None``, or why the run must stop (see *Errors in workers* below).

Failures travel inside the items because DataLoader workers are separate processes that
cannot update counters in the parent; :mod:`ovar.data.loader` aggregates them.

Randomness: every random choice of item ``i`` in epoch ``e`` (frame offsets, augmentation,
the replacement for a bad video) comes from a generator seeded by ``(seed, e, i, attempt)``,
so the same seed and epoch give the same clips with any number of workers or processes.
An item may be requested as ``dataset[i]`` (uses :meth:`VideoDataset.set_epoch`) or as
``dataset[(epoch, i)]``: the loader sends the epoch with each index because persistent
workers hold their own copy of the dataset and never see ``set_epoch`` calls.

Errors in workers: a strict-mode failure or a dataset that looks broken must stop the run
with a one-line error; raised inside a DataLoader worker it would come back as a
``RuntimeError`` carrying a traceback.  With ``defer_errors`` (set by
:func:`ovar.data.loader.build_loader`) the item carries it in ``fatal`` and the loader
raises it in the main process (:func:`fatal_error`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import av
import torch
from torch.utils.data import Dataset

from ..errors import OvarError, VideoDecodeError
from ..video import ClipSampler, Views, open_video
from .lists import resolve
from .records import VideoRecord

MAX_CONSECUTIVE_FAILURES = 10
"""A training item gives up after this many videos in a row failed to decode."""

# Everything a bad video can raise while being opened and decoded.  Other exceptions
# (a wrong transform, a bug) propagate: they are not a property of one video.
BAD_VIDEO_ERRORS: tuple[type[BaseException], ...] = (VideoDecodeError, av.error.FFmpegError, OSError)


class Failure(NamedTuple):
    """One video that could not be decoded: the path as resolved, and why."""

    path: str
    reason: str


class DatasetBrokenError(OvarError):
    """Too many videos in a row failed to decode: probably a wrong root or a broken copy."""


def derive_seed(*parts: int) -> int:
    """A non-negative 63-bit seed that depends only on ``parts`` (same in every process).

    Hashing (rather than e.g. ``seed + index``) keeps the streams of neighbouring items,
    epochs and seeds unrelated.
    """
    data = ",".join(str(int(p)) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def failure_of(path: str, exc: BaseException) -> Failure:
    """Describe ``exc``, raised while reading video ``path``, as a :class:`Failure`."""
    if isinstance(exc, VideoDecodeError):
        # A frame folder names the bad image, not the folder: keep both.
        reason = exc.reason if exc.path == path else f"{exc.reason} ({exc.path})"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return Failure(path, reason)


def fatal_error(fatal: tuple[str, str, str]) -> OvarError:
    """The error an item deferred in its ``fatal`` field ``(kind, path, message)``."""
    kind, path, message = fatal
    return VideoDecodeError(path, message) if kind == "decode" else DatasetBrokenError(message)


class VideoDataset(Dataset):
    """Videos of ``records`` (files or frame folders under ``root``) as model-ready clips.

    ``sampler`` picks the frames (its ``num_clips`` is replaced by ``views.temporal`` for
    evaluation); ``transform`` is a training transform called as
    ``transform(clip, generator=g)`` -> ``(T, 3, S, S)``, or an evaluation transform
    ``transform(clip)`` -> ``(crops, T, 3, S, S)`` with ``crops == views.spatial``.

    A video that fails to decode is replaced (training) by a video drawn at random, or
    returned as a failed item (evaluation); ``strict=True`` raises
    :class:`~ovar.errors.VideoDecodeError` instead.  ``fps`` overrides every video's frame
    rate (frame folders assume 30 without it).  The reader's real frame count is used;
    ``record.num_frames`` from frame lists is not trusted.
    """

    def __init__(self, records: Sequence[VideoRecord], root: str | Path | None, sampler: ClipSampler,
                 transform: Callable[..., torch.Tensor], *, train: bool, views: Views | tuple[int, int] = (1, 1),
                 seed: int = 0, strict: bool = False, fps: float | None = None,
                 max_failures: int = MAX_CONSECUTIVE_FAILURES, allow_outside_root: bool = False) -> None:
        views = Views(*views)
        if views.temporal < 1 or views.spatial < 1:
            raise ValueError(f"views must be positive, got {tuple(views)}")
        if train and views != (1, 1):
            raise ValueError(f"views {tuple(views)} apply to evaluation; a training item is one clip")
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        crops = getattr(transform, "num_crops", None)
        if not train and crops is not None and crops != views.spatial:
            raise ValueError(f"the evaluation transform makes {crops} crops but views ask for {views.spatial}")
        self.records = list(records)
        self.root = root
        self.paths = [str(resolve(r, root, allow_outside=allow_outside_root)) for r in self.records]
        self.train = train
        self.views = views
        self.sampler = sampler if train else dataclasses.replace(sampler, num_clips=views.temporal)
        self.transform = transform
        self.seed = int(seed)
        self.strict = strict
        self.fps = fps
        self.max_failures = max_failures
        self.epoch = 0
        self.defer_errors = False

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by ``dataset[i]``; training clips change with it."""
        self.epoch = int(epoch)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, index = int(key[0]), operator.index(key[1])
        else:
            epoch, index = self.epoch, operator.index(key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        index %= len(self)
        return self._train_item(epoch, index) if self.train else self._eval_item(index)

    # ---- training -------------------------------------------------------------------

    def _train_item(self, epoch: int, index: int) -> dict[str, Any]:
        failures: list[Failure] = []
        current = index
        for attempt in range(self.max_failures):
            gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index, attempt))
            if attempt:
                # Replacement drawn from the item's own stream: the same in every process.
                current = int(torch.randint(len(self), (), generator=gen))
            try:
                video = self._load_train(current, gen)
            except BAD_VIDEO_ERRORS as exc:
                failure = failure_of(self.paths[current], exc)
                if self.strict:
                    return self._fatal(current, ("decode", failure.path, failure.reason), exc)
                failures.append(failure)
                continue
            return self._item(video, current, failures)
        last = failures[-1]
        message = (f"{self.max_failures} videos in a row could not be decoded (the last: {last.path}: "
                   f"{last.reason}); is the dataset root right?")
        return self._fatal(index, ("broken", last.path, message), None, failures)

    def _load_train(self, index: int, gen: torch.Generator) -> torch.Tensor:
        with open_video(self.paths[index], fps=self.fps) as reader:
            info = reader.info
            frames = reader.get_frames(self.sampler(info.num_frames, info.fps, train=True, generator=gen))
        return self.transform(frames, generator=gen)

    # ---- evaluation -----------------------------------------------------------------

    def _eval_item(self, index: int) -> dict[str, Any]:
        try:
            video = self._load_eval(index)
        except BAD_VIDEO_ERRORS as exc:
            failure = failure_of(self.paths[index], exc)
            if self.strict:
                return self._fatal(index, ("decode", failure.path, failure.reason), exc)
            return self._item(None, index, [failure])
        return self._item(video, index, [])

    def _load_eval(self, index: int) -> torch.Tensor:
        with open_video(self.paths[index], fps=self.fps) as reader:
            info = reader.info
            clips = [self.sampler(info.num_frames, info.fps, train=False, clip=c)
                     for c in range(self.views.temporal)]
            # One decode pass for all temporal views: the reader plans over their union.
            wanted = sorted({i for clip in clips for i in clip})
            frames = reader.get_frames(wanted)
        row = {frame: r for r, frame in enumerate(wanted)}
        views = []
        for clip in clips:
            out = self.transform(frames[[row[i] for i in clip]])
            if out.ndim == 4:  # a single-view transform giving (T, 3, S, S)
                out = out.unsqueeze(0)
            if out.ndim != 5 or out.shape[0] != self.views.spatial:
                raise ValueError(f"evaluation transform gave {tuple(out.shape)}; expected "
                                 f"({self.views.spatial}, T, 3, S, S)")
            views.append(out)
        return torch.cat(views)  # clip-major: clip c's crops at rows c*S .. c*S+S-1

    # ---- items ----------------------------------------------------------------------

    def _item(self, video: torch.Tensor | None, index: int, failures: list[Failure],
              fatal: tuple[str, str, str] | None = None) -> dict[str, Any]:
        return {"video": video, "label": self.records[index].label, "index": index,
                "failures": failures, "fatal": fatal}

    def _fatal(self, index: int, fatal: tuple[str, str, str], cause: BaseException | None,
               failures: list[Failure] | None = None) -> dict[str, Any]:
        if self.defer_errors:
            return self._item(None, index, failures or [], fatal)
        raise fatal_error(fatal) from cause
