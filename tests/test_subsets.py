"""K-shot draws, class subsets and Text4Vis half-class trials."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from ovar.data.records import VideoRecord
from ovar.data.subsets import class_subset, half_class_indices, half_class_trial, k_shot


def make_records(per_class: dict[int, int]) -> list[VideoRecord]:
    return [VideoRecord(f"c{label}/v{i:03d}.mp4", label) for label, n in per_class.items() for i in range(n)]


RECORDS = make_records({0: 12, 1: 9, 2: 3, 3: 20, 4: 7})


def _k_shot_as_rank(rank: int) -> list[VideoRecord]:
    """What a rank computes: its own global RNG state and its own order of the list."""
    random.seed(100 + rank)
    np.random.seed(200 + rank)
    torch.manual_seed(300 + rank)
    records = list(RECORDS)
    random.Random(rank).shuffle(records)  # e.g. a list gathered from shards in another order
    np.random.rand(rank + 1)  # the ranks' global streams are at different positions
    return k_shot(records, 4, seed=1024)


_CHILD = """
import json, sys
from ovar.data.records import VideoRecord
from ovar.data.subsets import k_shot
records = [VideoRecord(p, l) for p, l in json.load(sys.stdin)]
print(json.dumps([[r.path, r.label] for r in k_shot(records, 4, seed=1024)]))
"""


def test_k_shot_is_identical_on_every_rank():
    rank0, rank1 = _k_shot_as_rank(0), _k_shot_as_rank(1)
    assert rank0 == rank1
    # A fresh interpreter (another process), given the list in yet another order.
    shuffled = [[r.path, r.label] for r in RECORDS[::-1]]
    child = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(shuffled), capture_output=True,
                           text=True, check=True)
    assert [VideoRecord(p, l) for p, l in json.loads(child.stdout)] == rank0


def test_k_shot_takes_k_per_class_from_the_list(caplog):
    with caplog.at_level(logging.WARNING, logger="ovar.data.subsets"):
        chosen = k_shot(RECORDS, 4, seed=0)
    counts = Counter(r.label for r in chosen)
    assert counts == {0: 4, 1: 4, 2: 3, 3: 4, 4: 4}  # class 2 has only 3: keeps them all
    assert len(set(chosen)) == len(chosen) and set(chosen) <= set(RECORDS)
    assert "fewer than 4" in caplog.text and "2 (3)" in caplog.text
    assert chosen == sorted(chosen, key=lambda r: (r.label, r.path))


def test_k_shot_depends_on_the_seed_and_leaves_global_rng_alone():
    state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    draws = {tuple(k_shot(RECORDS, 4, seed=s)) for s in range(5)}
    assert len(draws) == 5
    assert k_shot(RECORDS, 4, seed=3) == k_shot(list(reversed(RECORDS)), 4, seed=3)
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_k_shot_rejects_bad_k():
    with pytest.raises(ValueError):
        k_shot(RECORDS, 0, seed=0)


def test_class_subset_reindexes_in_the_given_order():
    names = ["a", "b", "c", "d", "e"]
    subset, new_names = class_subset(RECORDS, [3, 0], names)
    assert new_names == ["d", "a"]
    expected = [VideoRecord(r.path, {3: 0, 0: 1}[r.label]) for r in RECORDS if r.label in (3, 0)]
    assert subset == expected
    assert class_subset(RECORDS, [4], None) == ([VideoRecord(r.path, 0) for r in RECORDS if r.label == 4], None)
    with pytest.raises(ValueError, match="duplicates"):
        class_subset(RECORDS, [1, 1], names)
    with pytest.raises(ValueError, match="out of range"):
        class_subset(RECORDS, [5], names)


def test_local_random_state_equals_seeding_the_global_rng():
    for trial in range(10):
        np.random.seed(trial)
        global_perm = np.random.permutation(101)
        assert np.array_equal(np.random.RandomState(trial).permutation(101), global_perm)


def text4vis_half_classes(labels: np.ndarray, num_classes: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """Text4Vis multi_split_test, written out: kept video mask and re-indexed labels."""
    np.random.seed(split)
    sel_classes = np.random.permutation(num_classes)[: num_classes // 2]
    sel = np.array([label in sel_classes for label in labels])
    subclasses = np.unique(labels[sel])
    new_labels = np.array([int(np.where(label == subclasses)[0][0]) for label in labels[sel]])
    return sel, subclasses, new_labels


@pytest.mark.parametrize("num_classes", [101, 51, 7])
def test_half_class_trial_matches_text4vis(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, size=600)
    labels[:num_classes] = np.arange(num_classes)  # every class has a video
    records = [VideoRecord(f"v{i}.avi", int(label)) for i, label in enumerate(labels)]
    names = [f"class {c}" for c in range(num_classes)]
    for trial in range(10):
        sel, subclasses, new_labels = text4vis_half_classes(labels, num_classes, trial)
        subset, kept_names = half_class_trial(records, names, trial)
        assert kept_names == [names[c] for c in subclasses]
        assert len(kept_names) == num_classes // 2
        assert [r.path for r in subset] == [r.path for r, keep in zip(records, sel) if keep]
        assert [r.label for r in subset] == new_labels.tolist()
        assert half_class_indices(num_classes, trial) == subclasses.tolist()


def test_half_class_trial_drops_kept_classes_without_videos(caplog):
    num_classes = 20
    kept = half_class_indices(num_classes, 3)
    labels = np.array([c for c in range(num_classes) if c != kept[0]] * 2)  # kept[0] has no video
    records = [VideoRecord(f"v{i}.avi", int(label)) for i, label in enumerate(labels)]
    names = [f"n{c}" for c in range(num_classes)]
    with caplog.at_level(logging.WARNING, logger="ovar.data.subsets"):
        subset, kept_names = half_class_trial(records, names, 3)
    _, subclasses, new_labels = text4vis_half_classes(labels, num_classes, 3)
    assert kept_names == [names[c] for c in subclasses] and len(kept_names) == num_classes // 2 - 1
    assert [r.label for r in subset] == new_labels.tolist()
    assert names[kept[0]] in caplog.text
