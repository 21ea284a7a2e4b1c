"""Clip transforms: geometry, normalisation, and frame alignment of random ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ovar.video.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    ShortSideJitter,
    build_eval_transform,
    build_train_transform,
    center_crop,
    fork_rng,
    normalize,
    resize_short,
    spatial_crop,
    three_crops,
)
from torchvision import tv_tensors


def coord_clip(t: int, h: int, w: int) -> torch.Tensor:
    """uint8 clip whose channel 0 holds the row, channel 1 the column, channel 2 the frame."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    frames = [torch.stack([rows, cols, torch.full((h, w), i)]) for i in range(t)]
    return torch.stack(frames).to(torch.uint8)


def crop_origin(crop: torch.Tensor) -> tuple[int, int]:
    return int(crop[0, 0, 0, 0]), int(crop[0, 1, 0, 0])


def noise_clip(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)


# ----------------------------------------------------------------------- deterministic


RESIZE_CASES = [
    (32, 48, 224, (224, 336)),
    (48, 32, 64, (96, 64)),
    (240, 320, 224, (224, 298)),  # int(224 * 320 / 240) = 298
    (50, 50, 20, (20, 20)),
]


@pytest.mark.parametrize("h,w,size,expected", RESIZE_CASES)
def test_resize_short_keeps_aspect(h: int, w: int, size: int, expected: tuple[int, int]) -> None:
    for interp in ("bilinear", "bicubic"):
        out = resize_short(noise_clip(2, h, w), size, interp)
        assert out.shape == (2, 3, *expected) and out.dtype == torch.uint8
        assert type(out) is torch.Tensor
        assert abs(out.shape[-1] / out.shape[-2] - w / h) < 1 / min(expected)


def test_resize_single_frame_and_constant_clip() -> None:
    clip = torch.full((1, 3, 32, 48), 77, dtype=torch.uint8)
    out = resize_short(clip, 100, "bicubic")
    assert out.shape == (1, 3, 100, 150) and bool((out == 77).all())


def test_center_crop_offsets() -> None:
    crop = center_crop(coord_clip(3, 40, 70), 30)
    assert crop.shape == (3, 3, 30, 30)
    assert crop_origin(crop) == ((40 - 30) // 2, (70 - 30) // 2)
    assert crop[:, 2, 0, 0].tolist() == [0, 1, 2]  # frames kept in order


@pytest.mark.parametrize("h,w", [(40, 100), (100, 40), (50, 100), (40, 40)])
def test_three_crops_cover_start_middle_end_of_long_side(h: int, w: int) -> None:
    size = 40
    crops = three_crops(coord_clip(2, h, w), size)
    assert len(crops) == 3 and all(c.shape == (2, 3, size, size) for c in crops)
    origins = [crop_origin(c) for c in crops]
    long_axis = 1 if w >= h else 0
    long, short = max(h, w), min(h, w)
    along = [o[long_axis] for o in origins]
    across = {o[1 - long_axis] for o in origins}
    assert along == [0, (long - size) // 2, long - size]  # last crop ends on the edge
    assert across == {(short - size) // 2}  # other axis centred (full when short == size)
    assert torch.equal(crops[1], center_crop(coord_clip(2, h, w), size))


def test_spatial_crop_selects_view() -> None:
    clip = coord_clip(2, 48, 96)
    crops = three_crops(clip, 32)
    for i in range(3):
        assert torch.equal(spatial_crop(clip, 32, i, 3), crops[i])
    assert torch.equal(spatial_crop(clip, 32, 0, 1), center_crop(clip, 32))
    with pytest.raises(ValueError):
        spatial_crop(clip, 32, 3, 3)
    with pytest.raises(ValueError):
        spatial_crop(clip, 32, 0, 2)


def test_crop_larger_than_clip_raises() -> None:
    with pytest.raises(ValueError, match="resize"):
        center_crop(noise_clip(1, 32, 48), 40)
    with pytest.raises(ValueError):
        three_crops(noise_clip(1, 32, 48), 33)
    with pytest.raises(ValueError):
        center_crop(torch.zeros(3, 32, 32, dtype=torch.uint8), 16)  # no time axis


def test_normalize_matches_formula() -> None:
    clip = noise_clip(3, 5, 7)
    out = normalize(clip)
    x = clip.numpy().astype(np.float64) / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073]).reshape(1, 3, 1, 1)
    std = np.array([0.26862954, 0.26130258, 0.27577711]).reshape(1, 3, 1, 1)
    assert out.dtype == torch.float32 and out.shape == clip.shape
    np.testing.assert_allclose(out.numpy(), (x - mean) / std, rtol=1e-5, atol=1e-5)
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    # Float input is taken as [0, 1] already; custom mean/std apply per channel.
    ones = normalize(torch.ones(1, 3, 2, 2), mean=(0.5, 0.0, 1.0), std=(0.5, 2.0, 1.0))
    assert ones[0, :, 0, 0].tolist() == [1.0, 0.5, 0.0]


# ---------------------------------------------------------------------------- eval


@pytest.mark.parametrize("t,h,w", [(8, 32, 48), (1, 32, 48), (2, 256, 340), (4, 60, 30)])
def test_eval_transform_shapes(t: int, h: int, w: int) -> None:
    clip = noise_clip(t, h, w)
    one = build_eval_transform(224)(clip)
    three = build_eval_transform(224, crop="three", short_side=256)(clip)
    assert one.shape == (1, t, 3, 224, 224) and one.dtype == torch.float32
    assert three.shape == (3, t, 3, 224, 224) and three.dtype == torch.float32


def test_eval_transform_values() -> None:
    clip = torch.full((2, 3, 30, 50), 200, dtype=torch.uint8)
    out = build_eval_transform(16, crop="three")(clip)
    expected = (200 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[..., 5, 5], expected.expand(3, 2, 3), rtol=1e-4, atol=1e-4)
    # Three crops of a 16x26 resized frame: offsets 0, 5, 10 along the width.
    coord = coord_clip(1, 16, 26)
    views = build_eval_transform(16, crop="three", mean=(0, 0, 0), std=(1 / 255,) * 3)(coord)
    assert [int(round(float(v[0, 1, 0, 0]))) for v in views] == [0, 5, 10]


def test_eval_transform_rejects_bad_options() -> None:
    for kwargs in [dict(crop="seven"), dict(short_side=100), dict(interpolation="lanczos")]:
        with pytest.raises(ValueError):
            build_eval_transform(224, **kwargs)


# ------------------------------------------------------------------------- training

TRAIN_CONFIGS = {
    "rrc+flip": dict(flip=0.5),
    "rrc+randaug+gray": dict(flip=0.5, rand_augment=(3, 15), grayscale=0.5),
    "randaug_only": dict(random_resized_crop=False, flip=0.0, rand_augment=(3, 15)),
    "jitter+flip": dict(jitter=(40, 56), random_resized_crop=True, flip=0.5),
    "short_side+rrc": dict(short_side=48, scale=(0.2, 0.5)),
}


@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_train_identical_frames_stay_identical(name: str) -> None:
    transform = build_train_transform(40, **TRAIN_CONFIGS[name])
    frame = noise_clip(1, 48, 64, seed=1)
    clip = frame.expand(6, -1, -1, -1).contiguous()
    for seed in range(8):
        out = transform(clip, torch.Generator().manual_seed(seed))
        assert out.shape == (6, 3, 40, 40) and out.dtype == torch.float32
        for t in range(1, 6):
            assert torch.equal(out[t], out[0]), f"frame {t} differs (seed {seed})"


@pytest.mark.parametrize("name", ["rrc+flip", "jitter+flip", "short_side+rrc"])
def test_train_crop_window_same_for_distinct_frames(name: str) -> None:
    # Frame t = base + t*0.05 (float in [0, 1]): resampling is linear with weights
    # summing to one, so every output frame must equal frame 0 plus the same shift
    # iff all frames got the same crop box and flip.
    transform = build_train_transform(40, **TRAIN_CONFIGS[name], mean=(0, 0, 0), std=(1, 1, 1))
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 48, 64, generator=g) * 0.5
    clip = base + 0.05 * torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1)
    for seed in range(8):
        out = transform(clip, torch.Generator().manual_seed(seed))
        for t in range(1, 5):
            torch.testing.assert_close(out[t] - out[0], torch.full_like(out[0], 0.05 * t),
                                       rtol=0, atol=1e-4)


def test_train_flip_and_resize_applied_to_every_frame() -> None:
    clip = coord_clip(3, 24, 24)
    transform = build_train_transform(24, random_resized_crop=False, flip=1.0,
                                      mean=(0, 0, 0), std=(1 / 255,) * 3)
    out = transform(clip)
    torch.testing.assert_close(out, clip.flip(-1).float(), rtol=0, atol=1e-3)


def test_train_reproducible_with_generator_and_leaves_global_rng() -> None:
    transform = build_train_transform(32, rand_augment=(2, 9))
    clip = noise_clip(4, 40, 56)
    state = torch.get_rng_state()
    a = transform(clip, torch.Generator().manual_seed(11))
    b = transform(clip, torch.Generator().manual_seed(11))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    others = [transform(clip, torch.Generator().manual_seed(s)) for s in range(12, 16)]
    assert any(not torch.equal(a, o) for o in others)


def test_train_global_seed_and_fork_rng() -> None:
    transform = build_train_transform(32)
    clip = noise_clip(2, 40, 56)
    state = torch.get_rng_state()
    with fork_rng(5):
        a = transform(clip)
    with fork_rng(5):
        b = transform(clip)
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)


def test_short_side_jitter_range() -> None:
    jitter = ShortSideJitter(20, 24)
    video = tv_tensors.Video(noise_clip(1, 10, 15))
    sizes = set()
    with fork_rng(0):
        for _ in range(200):
            out = jitter(video)
            sizes.add(out.shape[-2])
            assert out.shape[-1] == int(out.shape[-2] * 15 / 10)
    assert sizes == {20, 21, 22, 23, 24}


def test_train_small_and_single_frame_inputs() -> None:
    out = build_train_transform(224, rand_augment=(2, 9))(noise_clip(1, 32, 48))
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    out = build_train_transform(224, jitter=(224, 256))(noise_clip(2, 32, 48))
    assert out.shape == (2, 3, 224, 224)


def test_train_rejects_bad_options() -> None:
    bad = [dict(flip=1.5), dict(jitter=(20, 30)), dict(jitter=(60, 50)), dict(grayscale=-0.1)]
    for kwargs in bad:
        with pytest.raises(ValueError):
            build_train_transform(40, **kwargs)
