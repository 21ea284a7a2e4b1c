"""What every video reader shares: :class:`VideoInfo`, the :class:`VideoReader` base and
the frame-rate choice.

Both readers (PyAV files in :mod:`ovar.video.decode`, image folders in
:mod:`ovar.video.frames`) subclass :class:`VideoReader`, so callers never care which
kind of video they hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np
import torch

VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
     ".ogv", ".3gp", ".mjpeg", ".mjpg", ".ts"}
)
"""Lower-case suffixes treated as videos when scanning a folder for inputs."""

# Outside this range a stream's declared rate is taken to be a time base or garbage
# (e.g. 90000 from MPEG-TS, 1/1001 from a broken header), not a frame rate.
MIN_PLAUSIBLE_FPS = 0.5
MAX_PLAUSIBLE_FPS = 1000.0
# A declared rate this many times off the one the timestamps show is considered wrong.
FPS_DISAGREEMENT = 1.5
# Edit lists and discarded leading frames make a few declared frames legitimately absent;
# missing more than this share of them means the file was cut short.
TRUNCATION_TOLERANCE = 0.1


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video, measured rather than copied from container headers."""

    path: str
    num_frames: int  # decodable frames, counted from the demuxed packets
    fps: float
    duration: float  # seconds, num_frames / fps
    width: int  # as displayed, i.e. after rotation
    height: int
    rotation: int  # clockwise degrees (0/90/180/270) applied to the output frames
    codec: str  # "h264", "mpeg4", ...; "jpeg" / "png" for frame folders
    declared_frames: int | None = None  # what the container's index claims, when it says

    @property
    def truncated(self) -> bool:
        """Far fewer frames decode than the container declares (a file cut short after its index)."""
        if not self.declared_frames:
            return False
        lost = self.declared_frames - self.num_frames
        return lost > max(2, TRUNCATION_TOLERANCE * self.declared_frames)

    def truncation_warning(self) -> str | None:
        """A one-line description of the loss, or None when the video is whole."""
        if not self.truncated:
            return None
        return (f"truncated: only {self.num_frames} of the {self.declared_frames} frames "
                f"the container declares are present")


class VideoReader:
    """Random access to the frames of one video; use as a context manager.

    Subclasses implement :meth:`_read` for sorted, unique, in-range indices; this class
    validates, clamps, de-duplicates and reorders.
    """

    info: VideoInfo
    frames_decoded: int  # frames (or images) decoded so far, for tests and benchmarks

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` as a ``(len(indices), 3, H, W)`` uint8 RGB tensor.

        Any order and repeats are allowed; indices past the end repeat the last frame
        (a short video is padded with its final frame); negative indices are a ValueError.
        """
        wanted = [int(i) for i in indices]
        if any(i < 0 for i in wanted):
            raise ValueError(f"negative frame index in {wanted[:16]}")
        # Frames are filled in as decoded (H, W, 3) into one (N, H, W, 3) buffer and
        # returned as a (N, 3, H, W) view in channels-last layout: a per-frame HWC->CHW
        # transposing copy costs ~5x a plain copy at 720p.
        out = torch.empty((len(wanted), self.info.height, self.info.width, 3), dtype=torch.uint8)
        if wanted:
            last = self.info.num_frames - 1
            clamped = [min(i, last) for i in wanted]
            got = self._read(sorted(set(clamped)))
            buffer = out.numpy()  # shares memory with ``out``; takes read-only arrays too
            for slot, i in enumerate(clamped):
                buffer[slot] = got[i]
        return out.permute(0, 3, 1, 2)

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """Decode sorted unique in-range ``indices``; return ``{index: (H, W, 3) uint8}``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files and decoder state; the reader cannot be used afterwards."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return (f"{type(self).__name__}({i.path!r}, {i.num_frames} frames, {i.fps:g} fps, "
                f"{i.width}x{i.height}, {i.codec})")


def _plausible(fps: float | None) -> bool:
    return fps is not None and math.isfinite(fps) and MIN_PLAUSIBLE_FPS <= fps <= MAX_PLAUSIBLE_FPS


def fps_from_timestamps(pts: Iterable[int], time_base: Fraction | None) -> float | None:
    """Frame rate from presentation timestamps (median frame interval), or None."""
    if time_base is None or time_base <= 0:
        return None
    ordered = sorted(set(pts))
    steps = sorted(b - a for a, b in zip(ordered, ordered[1:]))
    if not steps:
        return None
    median = steps[len(steps) // 2]  # the median resists a few dropped/duplicated frames
    if median <= 0:
        return None
    return float(1 / (median * time_base))


def choose_fps(declared: Sequence[Fraction | float | None], measured: float | None,
               default: float = 30.0) -> float:
    """Pick a frame rate: the first plausible declared rate, unless the timestamps say
    otherwise.

    ``declared`` are the stream's rates in order of trust (average, guessed, base);
    ``measured`` comes from :func:`fps_from_timestamps`.  A declared rate is rejected when
    implausible or more than ``FPS_DISAGREEMENT`` times off ``measured``; with nothing
    usable the ``default`` is returned.
    """
    for rate in declared:
        if rate is None or rate == 0:
            continue
        value = float(rate)
        if not _plausible(value):
            continue
        if _plausible(measured) and max(value / measured, measured / value) > FPS_DISAGREEMENT:
            continue
        return value
    if _plausible(measured):
        return float(measured)
    return default
