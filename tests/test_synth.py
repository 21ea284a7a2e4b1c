"""SynthActions: determinism, the base2novel layout, held-out compositions, visible motion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ovar.cli import main
from ovar.data.lists import read_list
from ovar.data.synth import SynthClass, SynthSpec, classes, clip_rng, generate, make_clip, split_classes
from ovar.data.synth_draw import COLOURS
from ovar.errors import OvarError

SMALL = dict(colours=["red", "blue"], shapes=["circle", "triangle"],
             actions=["moving left", "moving right", "growing"], shots=2, eval_per_class=1,
             min_frames=8, max_frames=10, distractors=(0, 1))


def _centroid_and_area(frame: np.ndarray, colour: str) -> tuple[float, float, int]:
    """Centre and pixel count of the pixels close to a named colour (the object's body)."""
    target = np.array(COLOURS[colour], np.float32)
    near = np.abs(frame.astype(np.float32) - target).max(axis=2) < 45
    ys, xs = np.nonzero(near)
    return float(xs.mean()), float(ys.mean()), int(near.sum())


def _decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_same_seed_same_clips_other_seed_other_clips():
    spec = SynthSpec(**SMALL, seed=3)
    cls = SynthClass("red", "circle", "moving left")
    a = make_clip(spec, cls, clip_rng(3, "train_1", 0, 1))
    b = make_clip(spec, cls, clip_rng(3, "train_1", 0, 1))
    c = make_clip(spec, cls, clip_rng(4, "train_1", 0, 1))
    assert np.array_equal(a, b)
    assert a.shape[1:] == (64, 64, 3) and 8 <= a.shape[0] <= 10
    assert not np.array_equal(a[:1], c[:1])


def test_generate_twice_gives_identical_files(tmp_path):
    spec = SynthSpec(**SMALL, seed=5)
    one, two = generate(tmp_path / "a", spec), generate(tmp_path / "b", spec)
    for part in ("train_1", "val", "test"):
        lines = one.list_file(part).read_text()
        assert lines == two.list_file(part).read_text()
        for line in lines.splitlines():
            rel = line.split(",")[0]
            # The MP4 header carries a creation time; the pictures must be equal.
            a, b = _decode(one.root / rel), _decode(two.root / rel)
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_layout_is_the_base2novel_lists_layout(tmp_path):
    from ovar.protocols.lists import FolderLists
    from ovar.video.decode import read_info

    spec = SynthSpec(**SMALL, seed=1)
    data = generate(tmp_path, spec)
    base, novel = split_classes(spec)
    lists = FolderLists(data.lists)
    train = lists.load("synth", "train_1", data.root)
    val = lists.load("synth", "val", data.root)
    test = lists.load("synth", "test", data.root)
    assert train.class_names == [c.name for c in base] == val.class_names
    assert test.class_names == [c.name for c in novel]
    assert len(train.records) == 2 * len(base) and len(val.records) == len(base) and len(test.records) == len(novel)
    assert not (train.missing or val.missing or test.missing)
    # Labels index the part's own class list, and the clip's folder names its class.
    for rec in test.records:
        assert novel[rec.label].slug in rec.path
    info = read_info(data.root / test.records[0].path)
    assert (info.width, info.height) == (64, 64) and 8 <= info.num_frames <= 10
    everything = json.loads((data.root / "classes.json").read_text())
    assert len(everything) == len(classes(spec)) == 12
    assert "a red circle moving left" in everything.values()


def test_novel_classes_are_held_out_compositions_of_base_words():
    spec = SynthSpec(colours=["red", "green", "blue", "yellow"], shapes=["circle", "square", "triangle"],
                     actions=["moving left", "moving right", "moving up", "moving down", "growing"])
    base, novel = split_classes(spec)
    assert len(base) + len(novel) == 60 and len(novel) == 20
    assert not set(base) & set(novel)
    for part in ("colour", "shape", "action", "object"):
        assert {getattr(c, part) for c in novel} <= {getattr(c, part) for c in base}, part


@pytest.mark.parametrize("action,check", [
    ("moving left", lambda first, last: last[0] < first[0] - 15),
    ("moving right", lambda first, last: last[0] > first[0] + 15),
    ("moving up", lambda first, last: last[1] < first[1] - 15),
    ("growing", lambda first, last: last[2] > 1.5 * first[2]),
    ("shrinking", lambda first, last: last[2] < first[2] / 1.5),
])
def test_the_action_is_what_the_frames_show(action, check):
    spec = SynthSpec(colours=["red"], shapes=["square"], actions=[action], distractors=(0, 0))
    for index in range(3):
        frames = make_clip(spec, SynthClass("red", "square", action), clip_rng(11, "val", 0, index))
        assert check(_centroid_and_area(frames[0], "red"), _centroid_and_area(frames[-1], "red"))


def test_rotation_direction_is_visible():
    # The dark spot sits above the centre at angle 0; clockwise on screen moves it right first.
    spec = SynthSpec(colours=["blue"], shapes=["circle"], actions=["rotating clockwise"], distractors=(0, 0))
    frames = make_clip(spec, SynthClass("blue", "circle", "rotating clockwise"), clip_rng(2, "val", 0, 0))
    frames_ccw = make_clip(spec, SynthClass("blue", "circle", "rotating anticlockwise"), clip_rng(2, "val", 0, 0))

    def spot_angle(frame: np.ndarray) -> float:
        cx, cy, area = _centroid_and_area(frame, "blue")
        yy, xx = np.mgrid[0:frame.shape[0], 0:frame.shape[1]]
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < 1.2 * area / np.pi  # only the object's own disc
        dark = (frame.astype(np.float32).max(axis=2) < 50) & inside
        ys, xs = np.nonzero(dark)
        return float(np.degrees(np.arctan2(ys.mean() - cy, xs.mean() - cx)))

    turn = (spot_angle(frames[-1]) - spot_angle(frames[0])) % 360
    turn_ccw = (spot_angle(frames_ccw[-1]) - spot_angle(frames_ccw[0])) % 360
    assert 60 < turn < 140  # screen angles grow clockwise (y points down); 100 degrees per clip
    assert 220 < turn_ccw < 300


def test_bad_spec_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(OvarError, match="unknown colour 'pink'"):
        SynthSpec(colours=["pink"])
    assert main(["data", "synth", str(tmp_path / "x"), "--shapes", "circle,hexagon"]) == 2
    assert "unknown shape 'hexagon'" in capsys.readouterr().err


def test_cli_writes_the_dataset_and_refuses_other_settings_in_the_same_folder(tmp_path, capsys):
    args = ["data", "synth", str(tmp_path), "--colours", "green", "--shapes", "square,circle",
            "--actions", "moving up,moving down,blinking", "--shots", "1", "--per-class", "1", "--frames", "8"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["base_classes"], out["novel_classes"]) == (4, 2)
    assert len(read_list(tmp_path / "lists" / "synth" / "train_1.csv")) == 4
    assert main([*args[:-1], "12"]) == 2
    assert "other settings" in capsys.readouterr().err
