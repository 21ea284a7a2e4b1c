"""Losses against their definitions, computed element by element."""

from __future__ import annotations

import math

import torch

from ovar.losses import same_label_targets, symmetric_kl_loss


def _kl_rows(target: list[list[float]], logits: list[list[float]]) -> float:
    total = 0.0
    for t_row, l_row in zip(target, logits):
        norm = math.log(sum(math.exp(v) for v in l_row))
        for t, v in zip(t_row, l_row):
            if t > 0:
                total += t * (math.log(t) - (v - norm))
    return total


def test_targets_spread_over_same_label_items():
    targets = same_label_targets(torch.tensor([0, 1, 0, 2]))
    assert torch.allclose(targets.sum(-1), torch.ones(4))
    # Row 0: two positives (0 and 2) share almost all the mass evenly.
    assert targets[0, 0] == targets[0, 2] and targets[0, 0] > 0.49 and targets[0, 1] < 1e-4


def test_symmetric_kl_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    video, text = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1])
    scale = torch.tensor(20.0)
    got = symmetric_kl_loss(video, text, labels, scale)

    v = torch.nn.functional.normalize(video, dim=-1)
    t = torch.nn.functional.normalize(text, dim=-1)
    logits = (scale * v @ t.t()).tolist()
    same = [[1.0 if a == b else 0.0 for b in labels.tolist()] for a in labels.tolist()]
    target = []
    for row in same:
        z = sum(math.exp(10 * x) for x in row)
        target.append([math.exp(10 * x) / z for x in row])
    transposed = [list(col) for col in zip(*logits)]
    expected = (_kl_rows(target, logits) / 5 + _kl_rows(target, transposed) / 5) / 2
    assert math.isclose(float(got), expected, rel_tol=1e-5)


def test_loss_has_gradients_for_both_towers():
    video = torch.randn(4, 6, requires_grad=True)
    text = torch.randn(4, 6, requires_grad=True)
    symmetric_kl_loss(video, text, torch.tensor([0, 0, 1, 2]), torch.tensor(10.0)).backward()
    assert video.grad.abs().sum() > 0 and text.grad.abs().sum() > 0
