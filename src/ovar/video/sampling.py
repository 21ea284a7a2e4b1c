"""Temporal frame sampling: which frame indices of a video make up a clip.

Every rule is a pure function of the frame count (and fps for the fps rule) and,
for random training rules, a seeded :class:`torch.Generator`; passing ``None``
falls back to torch's global RNG. Indices are Python ``int`` lists in
``[0, num_frames - 1]``; a video shorter than a clip repeats (clamps to) its last
frame. Three families are covered:

* ``segment_indices`` -- TSN "1x1xT" (ActionCLIP, Text4Vis);
* ``dense_indices`` -- "T x stride" windows (EVL);
* ``fps_dense_indices`` -- PySlowFast "8x16 @ 30 fps" (Open-VCLIP, FROSTER);
* ``i3d_indices`` -- Text4Vis's dense test clips (:mod:`ovar.video.i3d_sampling`).

:class:`ClipSampler` bundles a rule with its parameters; :func:`parse_sampling`
builds one from a short string, and :func:`parse_views` / :func:`enumerate_views`
describe multi-view testing (temporal clips x spatial crops).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from .i3d_sampling import i3d_indices

__all__ = [
    "ClipSampler",
    "SamplingKind",
    "Views",
    "dense_indices",
    "enumerate_views",
    "fps_dense_indices",
    "i3d_indices",
    "parse_sampling",
    "parse_views",
    "segment_indices",
]

SamplingKind = Literal["segment", "dense", "fps_dense", "i3d"]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_clip(num_clips: int, clip: int) -> None:
    _check_positive("num_clips", num_clips)
    if isinstance(clip, bool) or not isinstance(clip, int) or not 0 <= clip < num_clips:
        raise ValueError(f"clip must be an int in [0, {num_clips - 1}], got {clip!r}")


def _uniform(generator: torch.Generator | None) -> float:
    """One draw of U[0, 1) from ``generator`` (global torch RNG when None)."""
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in ``[0, high]`` (inclusive)."""
    return int(torch.randint(high + 1, (), generator=generator))


def _clamp(indices: list[int], num_frames: int) -> list[int]:
    return [min(max(i, 0), num_frames - 1) for i in indices]


def segment_indices(
    num_frames: int,
    num_segments: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    num_clips: int = 1,
    clip: int = 0,
    position: str = "middle",
) -> list[int]:
    """TSN sampling: one frame from each of ``num_segments`` equal segments.

    ``position`` picks the single-clip test frame of segment ``k``: ``"middle"``
    ``int((k + 0.5) * len / T)``, ``"tsn_offset"`` ``int((k + 0.5) * len / T - 0.5)``
    (ActionCLIP / TSN) or ``"start"`` ``int(k * len / T)`` (Text4Vis).

    Segment ``k`` covers frames ``[k*len//T, (k+1)*len//T)``. Training draws one
    uniformly random frame inside each segment; testing with one clip takes the
    middle frame ``int((k + 0.5) * len / T)``. Testing with ``num_clips > 1``
    follows Text4Vis ``--test_clips``: clip ``c`` takes ``int(s_c + k * len / T)``
    with ``s_c = int(linspace(0, len/T - 1, num_clips)[c])``.

    A video with fewer frames than segments gives ``0, 1, ..., len-1`` followed by
    the last frame repeated, for train and test alike: every available frame is
    used once, in order, and the padding matches the clamp of the dense rules
    (Text4Vis instead adds random extra frames at train time, which would make the
    padding non-deterministic for no benefit).
    """
    _check_positive("num_frames", num_frames)
    _check_positive("num_segments", num_segments)
    _check_clip(num_clips, clip)
    if num_frames <= num_segments:
        # len == T also lands here: every rule then yields exactly 0..T-1.
        return _clamp(list(range(num_segments)), num_frames)

    if train:
        # Integer segment bounds keep every segment non-empty (len > T) and
        # avoid float rounding pushing a frame into the next segment.
        bounds = [k * num_frames // num_segments for k in range(num_segments + 1)]
        out = []
        for k in range(num_segments):
            width = bounds[k + 1] - bounds[k]
            out.append(bounds[k] + min(int(_uniform(generator) * width), width - 1))
        return out

    # Integer arithmetic for floor((k + 0.5) * len / T) and floor(k * len / T): the
    # float forms can land on x.999... and drop a frame.
    if num_clips == 1:
        if position == "start":
            return [k * num_frames // num_segments for k in range(num_segments)]
        if position == "tsn_offset":  # len > T keeps the numerator positive
            return [((2 * k + 1) * num_frames - num_segments) // (2 * num_segments) for k in range(num_segments)]
        if position != "middle":
            raise ValueError(f"position must be 'middle', 'tsn_offset' or 'start', got {position!r}")
        return [(2 * k + 1) * num_frames // (2 * num_segments) for k in range(num_segments)]
    # numpy.linspace(0, len/T - 1, N, dtype=int): c * step, exact stop, truncated.
    last_start = num_frames / num_segments - 1.0
    step = last_start / (num_clips - 1)
    start = int(last_start if clip == num_clips - 1 else clip * step)
    offsets = [start + k * num_frames // num_segments for k in range(num_segments)]
    return _clamp(offsets, num_frames)


def dense_indices(
    num_frames: int,
    num_frames_per_clip: int,
    stride: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    num_clips: int = 1,
    clip: int = 0,
) -> list[int]:
    """EVL dense sampling: ``T`` frames ``stride`` apart in one window.

    The window spans ``(T - 1) * stride + 1`` frames. Training starts it uniformly
    in ``[0, len - window]``; testing with ``N > 1`` clips starts clip ``i`` at
    ``round(i * (len - window) / (N - 1))`` (Python ``round``, so the first clip
    starts at 0 and the last ends on the last frame); ``N == 1`` centres it at
    ``(len - window) // 2``. Shorter videos start at 0 and clamp to the last frame.
    """
    _check_positive("num_frames", num_frames)
    _check_positive("num_frames_per_clip", num_frames_per_clip)
    _check_positive("stride", stride)
    _check_clip(num_clips, clip)
    window = (num_frames_per_clip - 1) * stride + 1
    slack = max(num_frames - window, 0)
    if train:
        start = _randint(slack, generator)
    elif num_clips == 1:
        start = slack // 2
    else:
        start = round(clip * slack / (num_clips - 1))
    return _clamp([start + i * stride for i in range(num_frames_per_clip)], num_frames)


def fps_dense_indices(
    num_frames: int,
    fps: float,
    num_frames_per_clip: int = 8,
    stride: int = 16,
    target_fps: float = 30,
    *,
    train: bool,
    generator: torch.Generator | None = None,
    num_clips: int = 1,
    clip: int = 0,
) -> list[int]:
    """Open-VCLIP / FROSTER PySlowFast sampling ("8x16" at ``target_fps``).

    Reproduces the PyAV decoding path, quirk included: the decoder keeps a window
    of ``span = ceil(stride * (T - 1) / target_fps * fps)`` native frames, then
    picks ``floor(linspace(0, stride * T * fps / target_fps - 1, T))`` inside it,
    clamped to the window's last frame. At 30 fps this gives 0, 18, ..., 108, 111
    (effective stride ~18, not 16). The window starts at ``floor(u * (len - span))``
    with ``u ~ U[0, 1)`` for training, or ``floor((len - span) * clip / num_clips)``
    for test clips; a video shorter than ``span`` starts at 0 and clamps to its last
    frame.
    """
    _check_positive("num_frames", num_frames)
    _check_positive("num_frames_per_clip", num_frames_per_clip)
    _check_positive("stride", stride)
    _check_clip(num_clips, clip)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    if not (math.isfinite(target_fps) and target_fps > 0):
        raise ValueError(f"target_fps must be a positive finite number, got {target_fps!r}")

    # Multiply before dividing so integer fps give exact spans (16*7*30/30 == 112).
    span = max(1, math.ceil(stride * (num_frames_per_clip - 1) * fps / target_fps))
    delta = max(num_frames - span, 0)
    if train:
        start = int(_uniform(generator) * delta)
    else:
        start = int(delta * clip / num_clips)
    window_last = min(start + span, num_frames) - start - 1  # last frame inside the trim

    end = stride * num_frames_per_clip * fps / target_fps - 1.0
    if num_frames_per_clip == 1:
        offsets = [0.0]
    else:
        offsets = [end * k / (num_frames_per_clip - 1) for k in range(num_frames_per_clip)]
    relative = [min(max(int(math.floor(o)), 0), window_last) for o in offsets]
    return [start + r for r in relative]


@dataclass(frozen=True)
class ClipSampler:
    """A temporal sampling strategy with its parameters.

    ``kind`` selects the rule: ``"segment"`` (``frames`` segments, ``stride``
    ignored), ``"dense"`` or ``"fps_dense"`` (``frames`` frames ``stride`` apart;
    ``fps_dense`` rescales the stride from ``target_fps`` to the video's fps), ``"i3d"``
    (Text4Vis's dense rule: ``frames`` frames in a 128-frame window, ``stride`` ignored).
    ``num_clips`` is the number of temporal test views.
    """

    kind: SamplingKind
    frames: int
    stride: int = 1
    num_clips: int = 1
    target_fps: float = 30.0
    position: str = "middle"  # single-clip segment test frames (see segment_indices)

    def __post_init__(self) -> None:
        if self.kind not in ("segment", "dense", "fps_dense", "i3d"):
            raise ValueError(
                f"kind must be 'segment', 'dense', 'fps_dense' or 'i3d', got {self.kind!r}"
            )
        _check_positive("frames", self.frames)
        _check_positive("stride", self.stride)
        _check_positive("num_clips", self.num_clips)
        if self.position not in ("middle", "tsn_offset", "start"):
            raise ValueError(f"position must be 'middle', 'tsn_offset' or 'start', got {self.position!r}")
        if not self.target_fps > 0:
            raise ValueError(f"target_fps must be positive, got {self.target_fps!r}")

    def __call__(
        self,
        num_frames: int,
        fps: float | None = None,
        *,
        train: bool,
        generator: torch.Generator | None = None,
        clip: int = 0,
    ) -> list[int]:
        """Frame indices of temporal view ``clip`` (ignored when training)."""
        common = dict(train=train, generator=generator, num_clips=self.num_clips, clip=clip)
        if self.kind == "segment":
            return segment_indices(num_frames, self.frames, position=self.position, **common)
        if self.kind == "dense":
            return dense_indices(num_frames, self.frames, self.stride, **common)
        if self.kind == "i3d":
            return i3d_indices(num_frames, self.frames, **common)
        if fps is None:
            raise ValueError("fps_dense sampling needs the video's fps")
        return fps_dense_indices(
            num_frames, fps, self.frames, self.stride, self.target_fps, **common
        )


def _parse_txs(body: str, frames: int, stride: int) -> tuple[int, int] | None:
    """``""`` -> defaults, ``"TxS"`` -> (T, S), anything else -> None."""
    if body == "":
        return frames, stride
    m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", body)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_sampling(
    text: str, *, frames: int = 8, stride: int = 16, num_clips: int = 1
) -> ClipSampler:
    """Build a :class:`ClipSampler` from a short description (case-insensitive).

    Accepted forms (``frames``/``stride`` fill in what the text leaves out):

    * ``"segment"``, ``"tsn"``, ``"segment:16"``, ``"tsn:16"``, ``"1x1x16"`` --
      TSN segments;
    * ``"dense"``, ``"dense:8x16"``, ``"8x16"`` -- EVL dense, T frames, stride S;
    * ``"fps"``, ``"fps_dense"``, ``"fps:8x16"``, ``"fps_dense:8x16"``, optionally
      followed by ``"@F"`` (target fps, default 30), and ``"8x16@30"`` --
      Open-VCLIP fps-based dense sampling;
    * ``"i3d"``, ``"i3d:16"`` -- Text4Vis's dense clips (T frames in a 128-frame window).
    """
    error = ValueError(
        f"unknown sampling {text!r}; expected 'segment[:T]', 'tsn[:T]', '1x1xT', "
        "'dense[:TxS]', 'TxS', 'fps[:TxS][@FPS]', 'TxS@FPS' or 'i3d[:T]'"
    )
    s = text.strip().lower()
    target_fps: float | None = None
    if "@" in s:
        s, _, fps_text = s.partition("@")
        try:
            target_fps = float(fps_text)
        except ValueError:
            raise error from None
        s = s.strip()
    head, sep, body = s.partition(":")
    head, body = head.strip(), body.strip()

    m = re.fullmatch(r"1\s*x\s*1\s*x\s*(\d+)", s)
    if m and target_fps is None:
        return ClipSampler("segment", int(m.group(1)), num_clips=num_clips)
    if head == "i3d" and target_fps is None and (body == "" or body.isdigit()):
        return ClipSampler("i3d", int(body) if body else frames, num_clips=num_clips)
    if head in ("segment", "tsn") and target_fps is None:
        if body == "":
            return ClipSampler("segment", frames, num_clips=num_clips)
        if body.isdigit():
            return ClipSampler("segment", int(body), num_clips=num_clips)
        raise error
    if head in ("fps", "fps_dense"):
        parsed = _parse_txs(body, frames, stride)
    elif head == "dense" and target_fps is None:
        parsed = _parse_txs(body, frames, stride)
    elif not sep and head:  # bare "TxS" (no prefix)
        parsed = _parse_txs(head, frames, stride)
    else:
        parsed = None
    if parsed is None:
        raise error
    if head in ("fps", "fps_dense") or target_fps is not None:
        fps = 30.0 if target_fps is None else target_fps
        return ClipSampler("fps_dense", *parsed, num_clips=num_clips, target_fps=fps)
    return ClipSampler("dense", *parsed, num_clips=num_clips)


class Views(NamedTuple):
    """Number of test views: temporal clips x spatial crops."""

    temporal: int
    spatial: int


def _check_views(temporal: int, spatial: int) -> Views:
    _check_positive("temporal clips", temporal)
    _check_positive("spatial crops", spatial)
    if spatial not in (1, 3, 5, 10):
        raise ValueError(f"spatial crops must be 1, 3, 5 or 10, got {spatial}")
    return Views(temporal, spatial)


def parse_views(text: str) -> Views:
    """Parse ``"TxS"`` (e.g. ``"4x3"``: 4 temporal clips x 3 spatial crops)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(
            f"views must look like 'TxS' (temporal clips x spatial crops, e.g. '4x3'), "
            f"got {text!r}"
        )
    return _check_views(int(m.group(1)), int(m.group(2)))


def enumerate_views(temporal: int, spatial: int) -> list[tuple[int, int]]:
    """All ``(clip, crop)`` pairs, clip-major: (0,0), (0,1), ..., (1,0), ..."""
    views = _check_views(temporal, spatial)
    return [(t, s) for t in range(views.temporal) for s in range(views.spatial)]
