"""Check every video of a list: does it open, and do its frames decode?

Each video is opened (header and frame index) and a few segment-sampled frames are
decoded, in a pool of worker processes.  Any error a video causes, even a crash of the
decoder process, becomes that video's failure reason; nothing a bad file does stops the
check.  :class:`CheckReport` holds the results and formats the summary.
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from ..video import open_video, segment_indices
from .dataset import BAD_VIDEO_ERRORS, failure_of
from .lists import resolve
from .records import VideoRecord

CRASH_REASON = "the decoder crashed (its worker process died)"


@dataclass(frozen=True)
class VideoCheck:
    """What probing one video found: ``ok`` with its facts, or ``reason`` for failing."""

    path: str
    ok: bool
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    duration: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""
    warning: str = ""  # readable but damaged, e.g. truncated (fewer frames than declared)


def default_workers() -> int:
    """:func:`ovar.config.default_workers`."""
    from ..config import default_workers as workers

    return workers()


def probe_video(path: str, frames: int = 8, fps: float | None = None) -> VideoCheck:
    """Open ``path`` and decode ``frames`` segment-sampled frames; never raises for a bad video."""
    try:
        with open_video(path, fps=fps) as reader:
            info = reader.info
            clip = reader.get_frames(segment_indices(info.num_frames, frames, train=False))
    except BAD_VIDEO_ERRORS as exc:
        return VideoCheck(path, False, failure_of(path, exc).reason)
    except Exception as exc:  # noqa: BLE001 - whatever a bad file triggers is that file's failure
        return VideoCheck(path, False, f"unexpected {type(exc).__name__}: {exc}")
    if clip.shape[0] != frames or clip.numel() == 0:
        return VideoCheck(path, False, f"decoded frames have shape {tuple(clip.shape)}")
    return VideoCheck(path, True, "", info.num_frames, info.fps, info.duration, info.width,
                      info.height, info.codec, getattr(info, "truncation_warning", lambda: None)() or "")


Probe = Callable[[str, int, "float | None"], VideoCheck]


def probe_all(paths: Sequence[str], *, workers: int, frames: int = 8, fps: float | None = None,
              progress: bool = True, probe: Probe = probe_video) -> list[VideoCheck]:
    """``probe(path, frames, fps)`` for every path, in ``workers`` processes (0: in this one).

    When a worker process dies (a decoder crash), the videos it may have been reading are
    re-run one per fresh process, so the one that crashes again is named.
    """
    results: list[VideoCheck | None] = [None] * len(paths)
    with tqdm(total=len(paths), desc="checking", unit="video", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        if workers == 0:
            for i, path in enumerate(paths):
                results[i] = probe(path, frames, fps)
                bar.update()
        else:
            todo = deque(range(len(paths)))
            while todo:
                suspects = _run_pool(paths, todo, results, workers, bar, probe, frames, fps)
                for i in suspects:
                    results[i] = _run_alone(paths[i], probe, frames, fps)
                    bar.update()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _init_worker() -> None:
    # A forked child must not enter the parent's OpenMP thread pool (it can hang there).
    torch.set_num_threads(1)


def _run_pool(paths: Sequence[str], todo: deque[int], results: list[VideoCheck | None], workers: int,
              bar: tqdm, probe: Probe, frames: int, fps: float | None) -> list[int]:
    """Probe ``todo`` in a pool until done or the pool breaks; returns the crash suspects."""
    in_flight: dict[Future[VideoCheck], int] = {}
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        try:
            while todo or in_flight:
                # A short queue bounds the suspects of a crash to about 2 x workers videos.
                while todo and len(in_flight) < 2 * workers:
                    i = todo.popleft()
                    try:
                        in_flight[pool.submit(probe, paths[i], frames, fps)] = i
                    except BrokenProcessPool:
                        todo.appendleft(i)  # never started: not a suspect
                        raise
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    results[in_flight[future]] = future.result()
                    del in_flight[future]
                    bar.update()
        except BrokenProcessPool:
            suspects = []
            for future, i in in_flight.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    results[i] = future.result()
                    bar.update()
                else:
                    suspects.append(i)
            return suspects
    return []


def _run_alone(path: str, probe: Probe, frames: int, fps: float | None) -> VideoCheck:
    with ProcessPoolExecutor(max_workers=1, initializer=_init_worker) as pool:
        try:
            return pool.submit(probe, path, frames, fps).result()
        except BrokenProcessPool:
            return VideoCheck(path, False, CRASH_REASON)


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


@dataclass
class CheckReport:
    """The records of a list and, row for row, what probing their videos found."""

    records: list[VideoRecord]
    results: list[VideoCheck]
    class_names: list[str] | None = None

    @property
    def failures(self) -> list[VideoCheck]:
        return [r for r in self.results if not r.ok]

    @property
    def clean_records(self) -> list[VideoRecord]:
        """The records whose video passed, in list order."""
        return [rec for rec, res in zip(self.records, self.results) if res.ok]

    def class_counts(self) -> dict[int, tuple[int, int]]:
        """``{label: (videos listed, videos that failed)}``, every named class included."""
        listed = Counter(r.label for r in self.records)
        failed = Counter(rec.label for rec, res in zip(self.records, self.results) if not res.ok)
        labels = set(listed) | set(range(len(self.class_names or [])))
        return {c: (listed[c], failed[c]) for c in sorted(labels)}

    def format(self) -> str:
        """The human-readable summary: totals, classes, statistics, then every failure."""
        ok = [r for r in self.results if r.ok]
        bad = self.failures
        lines = [f"{len(self.results)} videos checked: {len(ok)} ok, {len(bad)} failed"]
        duplicates = sum(n - 1 for n in Counter(r.path for r in self.records).values() if n > 1)
        if duplicates:
            lines.append(f"{duplicates} entries repeat a path listed before")
        lines += ["", "videos per class (ok / listed):"]
        names = self.class_names
        for label, (listed, failed) in self.class_counts().items():
            name = "" if names is None else f"{names[label] if label < len(names) else '?':<30}  "
            note = "  <- no readable video" if listed == failed else ""
            lines.append(f"  {label:>5}  {name}{listed - failed} / {listed}{note}")
        if ok:
            lines += ["", "readable videos (min / median / max):"]
            rows = [("duration (s)", [r.duration for r in ok], "{:.2f}"), ("fps", [r.fps for r in ok], "{:.4g}"),
                    ("frames", [r.num_frames for r in ok], "{:.0f}"), ("width", [r.width for r in ok], "{:.0f}"),
                    ("height", [r.height for r in ok], "{:.0f}")]
            for title, values, fmt in rows:
                lines.append(f"  {title:<14}" + " / ".join(fmt.format(v) for v in _stats(values)))
            codecs = Counter(r.codec for r in ok)
            lines.append("  codecs        " + ", ".join(f"{c} ({n})" for c, n in codecs.most_common()))
        damaged = [r for r in ok if r.warning]
        if damaged:
            lines += ["", f"readable but damaged videos ({len(damaged)}):"]
            lines += [f"{r.path}: {r.warning}" for r in damaged]
        if bad:
            lines += ["", f"failed videos ({len(bad)}):"]
            lines += [f"{r.path}: {r.reason}" for r in bad]
        return "\n".join(lines)


def check_videos(records: Sequence[VideoRecord], root: str | Path | None, *, workers: int | None = None,
                 frames: int = 8, fps: float | None = None, class_names: Sequence[str] | None = None,
                 progress: bool = True, probe: Probe = probe_video, allow_outside_root: bool = False) -> CheckReport:
    """Probe the video of every record (paths under ``root``) with ``workers`` processes."""
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    workers = default_workers() if workers is None else workers
    paths = [str(resolve(r, root, allow_outside=allow_outside_root)) for r in records]
    unique = list(dict.fromkeys(paths))  # a path listed twice is read once
    found = dict(zip(unique, probe_all(unique, workers=min(workers, len(unique)), frames=frames, fps=fps,
                                       progress=progress, probe=probe)))
    return CheckReport(list(records), [found[p] for p in paths],
                       list(class_names) if class_names is not None else None)
