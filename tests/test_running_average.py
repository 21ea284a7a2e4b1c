"""The on-disk running average of epoch weights: which epochs count, and the mean."""

from __future__ import annotations

import pytest
import torch

from ovar.recipes.running_average import RunningAverage


def test_mean_of_the_epochs_in_range_each_counted_once(tmp_path):
    path = tmp_path / "average.pt"
    average = RunningAverage(path, start=2, end=4)
    weights = {1: 100.0, 2: 1.0, 3: 4.0, 4: 10.0, 5: 1000.0}
    added = [average.add({"w": torch.tensor([v, -v]), "steps": torch.tensor(7)}, e) for e, v in weights.items()]
    assert added == [False, True, True, True, False]
    # An interrupted run replays epoch 3 after resuming: it must not count twice.
    assert not RunningAverage(path, start=2, end=4).add({"w": torch.tensor([4.0, -4.0])}, 3)
    again = RunningAverage(path, start=2, end=4)
    assert again.epochs() == [2, 3, 4]
    mean = again.average()
    assert set(mean) == {"w"}  # integer tensors are not averaged
    assert mean["w"].tolist() == pytest.approx([5.0, -5.0])  # (1 + 4 + 10) / 3
    assert mean["w"].dtype == torch.float32


def test_no_epoch_no_average(tmp_path):
    assert RunningAverage(tmp_path / "a.pt", start=3).average() is None
