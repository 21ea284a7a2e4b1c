"""Text4Vis's dense test clips (``data.sampling=i3d[:T]``): T frames 128 // T apart, clip
starts ``c * floor(max(0, len - 128) / (N - 1))``, indices wrapping past the end."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import pytest
import torch

from ovar.data.dataset import VideoDataset
from ovar.data.records import VideoRecord
from ovar.recipes import load_recipe
from ovar.video.sampling import parse_sampling
from test_dataset import Replicate, indices_of
from test_fidelity_procedure import _config, dataset  # noqa: F401  (dataset is a fixture)
from videogen import make_video


def _spec_test_clip(n: int, t: int, clips: int, c: int) -> list[int]:
    """Spec §2.2/2.3, written out: 128-frame range, interval 128 // T, start c * floor(pos / (N - 1))."""
    pos = max(0, n - 128)
    start = c * floor(Fraction(pos, clips - 1))
    return [(start + k * (128 // t)) % n for k in range(t)]


# Worked by hand: 300 frames, 8 x 16, 4 clips: pos 172, floor(172 / 3) = 57.
# 40 frames: the window is longer than the video, both clips start at 0 and wrap.
@pytest.mark.parametrize("n, t, clips, expected", [
    (300, 8, 4, [[0, 16, 32, 48, 64, 80, 96, 112], [57, 73, 89, 105, 121, 137, 153, 169],
                 [114, 130, 146, 162, 178, 194, 210, 226], [171, 187, 203, 219, 235, 251, 267, 283]]),
    (40, 8, 2, [[0, 16, 32, 8, 24, 0, 16, 32]] * 2),
    (200, 16, 3, [list(range(0, 128, 8)), list(range(36, 164, 8)), list(range(72, 200, 8))]),
])
def test_worked_examples(n, t, clips, expected):
    sampler = parse_sampling(f"i3d:{t}", num_clips=clips)
    assert [sampler(n, train=False, clip=c) for c in range(clips)] == expected


@pytest.mark.parametrize("n", [1, 7, 127, 128, 129, 131, 250, 1001])
@pytest.mark.parametrize("t, clips", [(8, 2), (8, 4), (16, 4), (32, 10), (4, 3)])
def test_test_clips_follow_the_spec_formula(n, t, clips):
    sampler = parse_sampling(f"i3d:{t}", num_clips=clips)
    for c in range(clips):
        assert sampler(n, train=False, clip=c) == _spec_test_clip(n, t, clips, c), (n, t, clips, c)


def test_one_clip_starts_at_the_first_frame():
    # The original divides by zero with one clip; ovar starts it at 0 (its clip 0).
    assert parse_sampling("i3d:8")(500, train=False) == list(range(0, 128, 16))


def test_training_start_is_uniform_below_len_minus_128():
    sampler = parse_sampling("i3d:8")
    starts = {sampler(200, train=True, generator=torch.Generator().manual_seed(s))[0] for s in range(3000)}
    assert min(starts) == 0 and max(starts) == 200 - 128 - 1 and len(starts) == 72  # randint(0, 73 - 1)
    assert {sampler(129, train=True, generator=torch.Generator().manual_seed(s))[0] for s in range(50)} == {0}
    clip = sampler(300, train=True, generator=torch.Generator().manual_seed(3))
    assert [b - a for a, b in zip(clip, clip[1:])] == [16] * 7


def test_parse_and_errors():
    assert parse_sampling("i3d", frames=16).frames == 16 and parse_sampling("I3D:32").kind == "i3d"
    for bad in ("i3d:x", "i3d:8x16", "i3d@30"):
        with pytest.raises(ValueError, match="i3d"):
            parse_sampling(bad)
    with pytest.raises(ValueError, match="frames"):
        parse_sampling("i3d:0")


def test_dataset_reads_the_wrapped_frames(tmp_path):
    make_video(tmp_path / "v.mp4", num_frames=150, fps=25, size=(64, 48))
    sampler = parse_sampling("i3d:4", num_clips=2)
    data = VideoDataset([VideoRecord("v.mp4", 0)], tmp_path, sampler, Replicate(1), train=False, views=(2, 1))
    clips = data[0]["video"]  # (views, T, 3, H, W)
    # pos 22: clips start at 0 and 22, 32 frames apart.
    assert [indices_of(v) for v in clips] == [[0, 32, 64, 96], [22, 54, 86, 118]]
    short = tmp_path / "s.mp4"
    make_video(short, num_frames=12, fps=12, size=(64, 48))
    data = VideoDataset([VideoRecord("s.mp4", 0)], tmp_path, sampler, Replicate(1), train=False, views=(2, 1))
    assert indices_of(data[0]["video"][0]) == [0, 8, 4, 0]  # 32 and 64 wrap past 12 frames


def test_text4vis_recipe_evaluates_dense_clips(dataset, tmp_path):  # noqa: F811
    config = _config(dataset, tmp_path, "text4vis", "data.sampling=i3d:4", "eval.views=4x3")
    recipe = load_recipe("text4vis")(config)
    data = recipe.eval_dataset(recipe.build_model())
    assert data.sampler.kind == "i3d" and data.sampler.frames == 4 and data.sampler.num_clips == 4
    assert data[0]["video"].shape[:3] == (12, 4, 3)  # 4 clips x 3 crops, 4 frames each
