"""Frame-sampling rules checked against the written specs (expected values are
derived here from the rules, with exact fractions, not taken from the code)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from ovar.video.sampling import (
    ClipSampler,
    Views,
    dense_indices,
    enumerate_views,
    fps_dense_indices,
    parse_sampling,
    parse_views,
    segment_indices,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- segment


@pytest.mark.parametrize("length,T", [(100, 8), (64, 8), (30, 9), (17, 16), (300, 32), (9, 8)])
def test_segment_test_takes_middle_frame_of_each_segment(length: int, T: int) -> None:
    seg = Fraction(length, T)
    expected = [math.floor(seg * k + seg / 2) for k in range(T)]
    assert segment_indices(length, T, train=False) == expected


def test_segment_middle_frames_worked_example() -> None:
    # 80 frames, 8 segments of 10 frames: middles at 5, 15, ..., 75.
    assert segment_indices(80, 8, train=False) == list(range(5, 80, 10))


@pytest.mark.parametrize("length,T", [(100, 8), (37, 8), (300, 16)])
def test_segment_train_frames_fall_inside_their_segments(length: int, T: int) -> None:
    for seed in range(20):
        idx = segment_indices(length, T, train=True, generator=gen(seed))
        assert len(idx) == T
        for k, i in enumerate(idx):
            # Frame i spans [i, i+1); it must overlap segment [k*len/T, (k+1)*len/T).
            lo, hi = Fraction(length * k, T), Fraction(length * (k + 1), T)
            assert math.floor(lo) <= i < math.ceil(hi)


def test_segment_train_is_seeded_and_covers_whole_segment() -> None:
    a = segment_indices(24, 8, train=True, generator=gen(3))
    assert a == segment_indices(24, 8, train=True, generator=gen(3))
    draws = [segment_indices(24, 8, train=True, generator=gen(s)) for s in range(200)]
    assert len({tuple(d) for d in draws}) > 50
    # Segment k is frames 3k, 3k+1, 3k+2: every one of them must be reachable.
    for k in range(8):
        assert {d[k] for d in draws} == {3 * k, 3 * k + 1, 3 * k + 2}


@pytest.mark.parametrize("length,T,clips", [(100, 8, 4), (250, 16, 3), (64, 8, 2), (33, 8, 5)])
def test_segment_multi_clip_text4vis_rule(length: int, T: int, clips: int) -> None:
    starts = np.linspace(0, length / T - 1, clips, dtype=int)
    for c in range(clips):
        expected = [int(starts[c]) + math.floor(Fraction(k * length, T)) for k in range(T)]
        assert segment_indices(length, T, train=False, num_clips=clips, clip=c) == expected
    # The first clip takes the segment starts.
    assert segment_indices(length, T, train=False, num_clips=clips, clip=0)[0] == 0


def test_segment_multi_clip_last_clip_uses_last_frame_of_segments() -> None:
    # 80 frames, 8 segments of 10: clip 3 of 4 starts at 9 -> 9, 19, ..., 79.
    assert segment_indices(80, 8, train=False, num_clips=4, clip=3) == list(range(9, 80, 10))
    assert segment_indices(80, 8, train=False, num_clips=4, clip=1) == list(range(3, 80, 10))


@pytest.mark.parametrize("train", [True, False])
def test_segment_short_video_repeats_last_frame(train: bool) -> None:
    assert segment_indices(3, 8, train=train, generator=gen(0)) == [0, 1, 2, 2, 2, 2, 2, 2]
    assert segment_indices(1, 4, train=train, generator=gen(0)) == [0, 0, 0, 0]
    assert segment_indices(8, 8, train=train, generator=gen(0)) == list(range(8))


# ------------------------------------------------------------------------------- dense


def test_dense_train_window_and_stride() -> None:
    length, T, stride = 300, 8, 16
    window = (T - 1) * stride + 1
    starts = set()
    for seed in range(50):
        idx = dense_indices(length, T, stride, train=True, generator=gen(seed))
        assert len(idx) == T
        assert all(b - a == stride for a, b in zip(idx, idx[1:]))
        assert 0 <= idx[0] <= length - window and idx[-1] <= length - 1
        starts.add(idx[0])
    assert len(starts) > 10
    assert dense_indices(length, T, stride, train=True, generator=gen(7)) == dense_indices(
        length, T, stride, train=True, generator=gen(7)
    )


def test_dense_train_start_range_is_inclusive() -> None:
    # window 8*2-1 = 15 frames in a 17-frame video: starts 0, 1 and 2 all possible.
    starts = {dense_indices(17, 8, 2, train=True, generator=gen(s))[0] for s in range(100)}
    assert starts == {0, 1, 2}


@pytest.mark.parametrize("train", [True, False])
def test_dense_short_video_clamps_to_last_frame(train: bool) -> None:
    idx = dense_indices(50, 8, 16, train=train, generator=gen(0), num_clips=1)
    assert idx == [0, 16, 32, 48, 49, 49, 49, 49]
    for c in range(3):
        assert dense_indices(50, 8, 16, train=False, num_clips=3, clip=c) == idx


@pytest.mark.parametrize("length,clips", [(300, 3), (200, 4), (129, 2), (1000, 5)])
def test_dense_test_clips_evenly_spaced(length: int, clips: int) -> None:
    T, stride = 8, 16
    window = (T - 1) * stride + 1
    views = [
        dense_indices(length, T, stride, train=False, num_clips=clips, clip=c)
        for c in range(clips)
    ]
    assert views[0][0] == 0
    assert views[-1][-1] == length - 1
    gap = Fraction(length - window, clips - 1)
    for c, v in enumerate(views):
        assert abs(v[0] - gap * c) <= Fraction(1, 2)
        assert v == [v[0] + i * stride for i in range(T)]


def test_dense_single_test_clip_is_centred() -> None:
    for length in (200, 201, 500):
        idx = dense_indices(length, 8, 16, train=False)
        left, right = idx[0], length - 1 - idx[-1]
        assert left in (right, right - 1)


# --------------------------------------------------------------------------- fps dense


def test_fps_rule_worked_example_30fps() -> None:
    idx = fps_dense_indices(300, 30.0, 8, 16, 30, train=False)
    # Window ceil(16*7) = 112 frames; linspace(0, 127, 8) floored, clamped to 111.
    assert idx == [0, 18, 36, 54, 72, 90, 108, 111]


def test_fps_rule_worked_example_25fps() -> None:
    idx = fps_dense_indices(300, 25.0, train=False)
    span = math.ceil(16 * 7 * 25 / 30)  # 94 frames
    end = Fraction(16 * 8 * 25, 30) - 1  # 105.67
    expected = [min(math.floor(end * k / 7), span - 1) for k in range(8)]
    assert span == 94 and expected == [0, 15, 30, 45, 60, 75, 90, 93]
    assert idx == expected


def test_fps_rule_test_clip_starts() -> None:
    base = [0, 18, 36, 54, 72, 90, 108, 111]
    for c, start in enumerate([0, 62, 125]):  # floor((300 - 112) * c / 3)
        idx = fps_dense_indices(300, 30, train=False, num_clips=3, clip=c)
        assert idx == [start + b for b in base]


def test_fps_rule_train_random_start_and_short_video() -> None:
    base = [0, 18, 36, 54, 72, 90, 108, 111]
    starts = set()
    for seed in range(30):
        idx = fps_dense_indices(300, 30, train=True, generator=gen(seed))
        assert 0 <= idx[0] <= 300 - 112
        assert [i - idx[0] for i in idx] == base
        starts.add(idx[0])
    assert len(starts) > 10
    assert fps_dense_indices(300, 30, train=True, generator=gen(5)) == fps_dense_indices(
        300, 30, train=True, generator=gen(5)
    )
    short = fps_dense_indices(50, 30, train=True, generator=gen(0))
    assert short == [0, 18, 36, 49, 49, 49, 49, 49]


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: segment_indices(0, 8, train=False),
        lambda: segment_indices(10, 0, train=False),
        lambda: segment_indices(10, 8, train=False, num_clips=2, clip=2),
        lambda: dense_indices(0, 8, 2, train=False),
        lambda: dense_indices(10, 0, 2, train=False),
        lambda: dense_indices(10, 8, 0, train=False),
        lambda: fps_dense_indices(0, 30, train=False),
        lambda: fps_dense_indices(10, 0, train=False),
        lambda: fps_dense_indices(10, 30, 0, train=False),
    ],
)
def test_invalid_arguments_raise(call) -> None:
    with pytest.raises(ValueError):
        call()


# ------------------------------------------------------------------- sampler and parsing


def test_clip_sampler_dispatches_to_rules() -> None:
    assert ClipSampler("segment", 8)(80, train=False) == list(range(5, 80, 10))
    assert ClipSampler("dense", 8, 16, num_clips=3)(300, train=False, clip=2)[-1] == 299
    fps = ClipSampler("fps_dense", 8, 16, num_clips=3)
    assert fps(300, 30, train=False, clip=1)[0] == 62
    with pytest.raises(ValueError, match="fps"):
        fps(300, None, train=False)
    with pytest.raises(ValueError):
        ClipSampler("uniform", 8)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("segment", ClipSampler("segment", 8)),
        ("TSN:16", ClipSampler("segment", 16)),
        ("1x1x32", ClipSampler("segment", 32)),
        ("dense", ClipSampler("dense", 8, 16)),
        ("dense:16x4", ClipSampler("dense", 16, 4)),
        ("32x8", ClipSampler("dense", 32, 8)),
        ("fps", ClipSampler("fps_dense", 8, 16)),
        ("fps:16x8@25", ClipSampler("fps_dense", 16, 8, target_fps=25)),
        ("8x16@30", ClipSampler("fps_dense", 8, 16, target_fps=30)),
    ],
)
def test_parse_sampling(text: str, expected: ClipSampler) -> None:
    assert parse_sampling(text) == expected


def test_parse_sampling_defaults_and_errors() -> None:
    expected = ClipSampler("segment", 16, num_clips=4)
    assert parse_sampling("segment", frames=16, num_clips=4) == expected
    for bad in ["", "uniform", "8x", "dense@30", "segment:8x2", "1x1x8@30", "0x16", "fps:8x16@0"]:
        with pytest.raises(ValueError):
            parse_sampling(bad)


# ------------------------------------------------------------------------------- views


def test_parse_views() -> None:
    assert parse_views("4x3") == Views(4, 3)
    temporal, spatial = parse_views(" 2X1 ")
    assert (temporal, spatial) == (2, 1)
    bad_views = [("4x2", "1, 3, 5 or 10"), ("0x3", "positive"), ("4", "TxS"), ("ax3", "TxS"),
                 ("2x3x1", "TxS")]
    for bad, msg in bad_views:
        with pytest.raises(ValueError, match=msg):
            parse_views(bad)


def test_enumerate_views_is_clip_major() -> None:
    assert enumerate_views(2, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert enumerate_views(3, 1) == [(0, 0), (1, 0), (2, 0)]
    with pytest.raises(ValueError):
        enumerate_views(2, 2)
    with pytest.raises(ValueError):
        enumerate_views(0, 1)
