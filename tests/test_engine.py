"""The training engine, driven by the toy recipe (tests/toy_recipe.py), on CPU."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_recipe import ToyRecipe, toy_config  # noqa: E402

from ovar.recipes import get_recipe  # noqa: E402
from ovar.train import evaluate, train  # noqa: E402
from ovar.train.checkpoint import CheckpointDir, load, save_atomic  # noqa: E402
from ovar.train.logging import read_metrics  # noqa: E402
from ovar.train.optim import build_optimizer  # noqa: E402


def run(tmp_path: Path, name: str, *overrides: str, stop_after_epoch: int | None = None):
    config = toy_config(tmp_path / name, *overrides)
    return train(config, ToyRecipe(config), stop_after_epoch=stop_after_epoch)


def test_registry_and_outputs(tmp_path) -> None:
    assert get_recipe("toy") is ToyRecipe
    result = run(tmp_path, "a", "schedule.epochs=1")
    assert result.completed and result.epochs_completed == 1 and result.step == 8  # 64 items / 8
    assert {"config.yaml", "metrics.jsonl", "final.pt", "checkpoints"} <= {p.name for p in result.run_dir.iterdir()}
    assert result.metrics["num_samples"] == 30
    assert load(result.run_dir / "final.pt")["model"].keys() == result.model.state_dict().keys()


def test_loss_decreases_and_accuracy_rises(tmp_path) -> None:
    result = run(tmp_path, "a", "schedule.epochs=4", "recipe.noise=1.0")
    losses = [r["loss"] for r in read_metrics(result.run_dir, "train")]
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4
    assert result.metrics["top1"] > 80.0


def test_lr_schedule_warmup_then_cosine(tmp_path) -> None:
    result = run(tmp_path, "a", "schedule.epochs=4", "schedule.warmup_epochs=1", "schedule.min_lr=0.001")
    lrs = [r["lr"] for r in read_metrics(result.run_dir, "train")]
    per_epoch, total, base, low = 8, 32, 0.05, 0.001
    expected = [base * (s + 1) / per_epoch if s < per_epoch else
                low + (base - low) * 0.5 * (1 + math.cos(math.pi * (s - per_epoch) / (total - per_epoch)))
                for s in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_param_groups_and_no_decay_on_1d(tmp_path) -> None:
    config = toy_config(tmp_path, "optim.weight_decay=0.1")
    recipe = ToyRecipe(config)
    model = recipe.build_model()
    opt = build_optimizer(model, recipe.param_groups(model), config.optim)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"backbone", "backbone/no_decay", "head", "head/no_decay"}
    assert groups["backbone"]["lr"] == pytest.approx(0.025) and groups["head"]["lr"] == pytest.approx(0.05)
    for name, group in groups.items():
        dims = {p.ndim for p in group["params"]}
        if name.endswith("no_decay"):
            assert dims == {1} and group["weight_decay"] == 0.0
        else:
            assert dims == {2} and group["weight_decay"] == 0.1
    # 1-D parameters really stay undecayed: with zero gradients only decay could move them.
    ln = model.backbone[1]
    ln.weight.data.fill_(2.0)
    before = ln.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(ln.weight, before)


def test_gradient_accumulation_matches_larger_batch(tmp_path) -> None:
    a = run(tmp_path, "acc", "data.batch_size=4", "optim.accumulate=2", "schedule.epochs=2")
    b = run(tmp_path, "big", "data.batch_size=8", "optim.accumulate=1", "schedule.epochs=2")
    assert a.step == b.step == 16
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)


def test_resume_is_bit_identical(tmp_path) -> None:
    overrides = ("schedule.epochs=3", "recipe.dropout=0.3", "run.keep_last=1")
    full = run(tmp_path, "full", *overrides)
    part = run(tmp_path, "part", *overrides, stop_after_epoch=1)
    assert not part.completed and part.epochs_completed == 1
    resumed = run(tmp_path, "part", *overrides, "run.resume=auto")
    assert resumed.completed and resumed.step == full.step
    for (name, pa), pb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    # The same holds when resuming from an explicit checkpoint path.
    again = run(tmp_path, "part", *overrides, f"run.resume={tmp_path / 'part/checkpoints/epoch_0003.pt'}")
    assert again.step == full.step


def test_checkpoint_rotation_keeps_last_and_best(tmp_path) -> None:
    ckpts = CheckpointDir(tmp_path, keep_last=2)
    for epoch, best in [(1, 1), (2, 2), (3, 2), (4, 2), (5, 5)]:
        ckpts.save({"epoch": epoch}, epoch, best)
        if epoch == 4:
            assert ckpts.epochs() == [2, 3, 4]  # last two + best
            assert load(tmp_path / "best.pt")["epoch"] == 2
    assert ckpts.epochs() == [4, 5]
    assert load(tmp_path / "best.pt")["epoch"] == 5
    result = run(tmp_path, "run", "schedule.epochs=3", "run.keep_last=1")
    names = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    kept = {"epoch_0003.pt", f"epoch_{result.best['epoch']:04d}.pt", "best.pt"}
    assert names == sorted(kept)
    state = torch.load(result.run_dir / "checkpoints/epoch_0003.pt", weights_only=True)
    assert {"model", "optimizer", "scaler", "epoch", "step", "rng", "best"} <= set(state)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ck.pt"
    save_atomic({"v": torch.ones(3)}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"v": torch.zeros(3)}, path)
    assert os.listdir(tmp_path) == ["ck.pt"]
    assert torch.equal(load(path)["v"], torch.ones(3))


def test_evaluate_standalone(tmp_path) -> None:
    config = toy_config(tmp_path, "recipe.classes=9")  # 9 classes: top-5 is not everything
    recipe = ToyRecipe(config)
    torch.manual_seed(0)
    model = recipe.build_model()
    metrics = evaluate(config, recipe, model)
    assert metrics["num_samples"] == 30 and metrics["num_failed"] == 0
    # The same figures by hand: the rank of each item's true class among the model's scores.
    data = recipe.eval_dataset(model)
    with torch.no_grad():
        scores = model.eval()(data.x)
    truth = scores.gather(1, data.labels.view(-1, 1))
    rank = (scores > truth).sum(dim=1)
    top1, top5 = 100.0 * (rank == 0).float().mean().item(), 100.0 * (rank < 5).float().mean().item()
    assert 0 < top1 < top5 < 100  # neither saturated, so a wrong k shows
    assert (metrics["top1"], metrics["top5"]) == pytest.approx((top1, top5))
