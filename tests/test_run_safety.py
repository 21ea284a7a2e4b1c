"""Training runs are never mixed or overwritten: folder checks, validation before writing,
resume fallbacks, mid-epoch checkpoints and preemption (SIGTERM, kill -9), with the toy
recipe (tests/toy_recipe.py) on CPU."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ovar.cli import main
from ovar.train.checkpoint import CheckpointDir, save_atomic
from ovar.train.logging import read_metrics

TESTS = str(Path(__file__).resolve().parent)
TOY = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=3",
       "schedule.warmup_epochs=1", "optim.lr=0.05", "run.device=cpu", "run.log_every=1", "recipe.dropout=0.3"]


def _train(capsys, out: Path, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", "--out", str(out), *TOY, *args])
    return code, capsys.readouterr().err


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "final.pt", weights_only=True)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _train_records(run: Path) -> list[tuple[int, float, float]]:
    return [(r["step"], r["loss"], r["lr"]) for r in read_metrics(run, "train")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted seeded run (3 epochs of 8 steps) to compare resumed runs against."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", "--out", str(out), *TOY]) == 0
    return out


# --- the run folder ---------------------------------------------------------------------


def test_new_run_refuses_a_folder_holding_a_run_and_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, _ = _train(capsys, out, "schedule.epochs=2")
    assert code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, err = _train(capsys, out, "schedule.epochs=1")
    assert code == 2 and "--overwrite" in err and "--resume" in err and str(out) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    code, _ = _train(capsys, out, "schedule.epochs=1", "--overwrite")
    assert code == 0
    # Nothing of the two-epoch run is left: one epoch's checkpoint, one epoch's metrics.
    assert CheckpointDir(out / "checkpoints", 2).epochs() == [1]
    assert {r["epoch"] for r in read_metrics(out, "epoch")} == {1}
    # --resume and --overwrite together contradict each other.
    code, err = _train(capsys, out, "--resume", "--overwrite")
    assert code == 2 and "--overwrite" in err


@pytest.mark.parametrize("args, named", [
    (["data.frames=0"], "data.frames"),
    (["optim.lr=-1"], "optim.lr"),
    (["data.sampling=zigzag"], "data.sampling"),
    (["run.device=tpu"], "run.device"),
    (["train.save_every=-3"], "train.save_every"),
    (["--resume", "/nonexistent/epoch_0007.pt"], "run.resume"),
    (["--resume"], "run.resume"),  # a folder without a checkpoint: an error, not a fresh run
])
def test_invalid_options_stop_before_anything_is_written(tmp_path, capsys, args, named):
    out = tmp_path / "run"
    code, err = _train(capsys, out, *args)
    assert code == 2, err
    assert err.startswith("ovar: error: ") and named in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_resume_of_a_damaged_file_is_an_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    code, err = _train(capsys, tmp_path / "run", "--resume", str(bad))
    assert code == 2 and "not a readable checkpoint" in err and not (tmp_path / "run").exists()


# --- resuming ---------------------------------------------------------------------------


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys, caplog, reference):
    from ovar.config import load_config
    from ovar.recipes import load_recipe
    from ovar.train import train

    out = tmp_path / "run"
    config = load_config(None, [*TOY[2:], f"run.out_dir={out}", "run.keep_last=3"])
    result = train(config, load_recipe("toy_recipe:toy")(config), stop_after_epoch=2)
    assert not result.completed and result.epochs_completed == 2
    ckpts = out / "checkpoints"
    # The newest checkpoint is torn (a crash while copying it); writes left temporaries.
    newest = ckpts / "epoch_0002.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    stale = [ckpts / ".epoch_0003.pt.x1y2.tmp", out / "config.yaml.tmp", out / ".final.pt.a9.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    # The killed run had logged epoch 2 and some of epoch 3 already.
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"kind": "train", "step": 17, "loss": 9.0, "lr": 0.1}) + "\n")
        f.write('{"kind": "train", "st')  # torn by the crash

    code, err = _train(capsys, out, "run.keep_last=3", "--resume")
    assert code == 0, err
    assert any("epoch_0002.pt is damaged" in r.getMessage() for r in caplog.records)
    assert "resumed from" in err and "epoch_0001.pt" in err
    assert not any(p.exists() for p in stale)
    _assert_same_weights(_weights(out), _weights(reference))
    # Epoch 2 was replayed from epoch 1's checkpoint: each step is logged once, as in one run.
    assert _train_records(out) == _train_records(reference)
    assert [r["epoch"] for r in read_metrics(out, "epoch")] == [1, 2, 3]


def test_checkpoints_get_plain_file_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_atomic({"v": torch.ones(2)}, tmp_path / "a.pt")
        os.umask(0o027)
        save_atomic({"v": torch.ones(2)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.pt").stat().st_mode) == 0o640


def test_save_every_changes_nothing_and_leaves_no_mid_epoch_file(tmp_path, capsys, reference):
    out = tmp_path / "run"
    code, _ = _train(capsys, out, "train.save_every=3", "run.keep_last=1")
    assert code == 0
    assert CheckpointDir(out / "checkpoints", 1).mid_epoch() == []  # superseded by epoch checkpoints
    _assert_same_weights(_weights(out), _weights(reference))
    assert _train_records(out) == _train_records(reference)


@pytest.mark.parametrize("batch, accumulate, call, step", [(8, 1, 13, 13), (4, 2, 23, 12)])
def test_sigterm_mid_epoch_then_resume_is_bit_identical(tmp_path, capsys, batch, accumulate, call, step):
    """The toy recipe sends SIGTERM to this process at its ``call``-th training step; the run
    stops after that optimiser step (with accumulation: after the group it is in)."""
    shape = [f"data.batch_size={batch}", f"optim.accumulate={accumulate}"]
    code, _ = _train(capsys, tmp_path / "whole", *shape)
    assert code == 0
    out = tmp_path / "run"
    code, err = _train(capsys, out, *shape, f"recipe.sigterm_at_call={call}")
    assert code == 128 + signal.SIGTERM and "stopped by SIGTERM" in err and "Traceback" not in err
    assert not (out / "final.pt").exists()
    assert CheckpointDir(out / "checkpoints", 2).mid_epoch() == [(1, step)]
    state = torch.load(out / "checkpoints" / f"epoch_0001_step_{step:08d}.pt", weights_only=True)
    assert state["step"] == step and state["batch"] == (step - 8) * accumulate and state["epoch"] == 1
    assert _logged_step(out) == step

    code, err = _train(capsys, out, *shape, "--resume")
    assert code == 0, err
    assert f"step {step}" in err
    _assert_same_weights(_weights(out), _weights(tmp_path / "whole"))
    assert _train_records(out) == _train_records(tmp_path / "whole")


def _subprocess_train(out: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ovar", "train", "--out", str(out), *TOY, *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _subprocess_run(out: Path, *args: str) -> str:
    """Train to the end in a subprocess; returns its stderr."""
    proc = _subprocess_train(out, *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return err


@pytest.fixture(scope="module")
def reference_subprocess(tmp_path_factory) -> Path:
    """The uninterrupted run, in a subprocess like the interrupted ones (same thread count)."""
    out = tmp_path_factory.mktemp("reference_subprocess") / "run"
    _subprocess_run(out)
    return out


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training did not get there in time")
        time.sleep(0.01)


def _logged_step(out: Path) -> int:
    try:
        return max((r["step"] for r in read_metrics(out, "train")), default=0)
    except (json.JSONDecodeError, OSError):
        return 0  # a line being written


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_resume_is_bit_identical(tmp_path, reference_subprocess):
    out = tmp_path / "run"
    proc = _subprocess_train(out, "recipe.step_sleep=0.15")
    _wait_for(proc, lambda: _logged_step(out) >= 10)  # inside epoch 2 (steps 9..16)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "final.pt").exists()
    (epoch, step), = CheckpointDir(out / "checkpoints", 2).mid_epoch()
    state = torch.load(out / "checkpoints" / f"epoch_{epoch:04d}_step_{step:08d}.pt", weights_only=True)
    assert epoch == 1 and 10 <= step < 16 and state["batch"] == step - 8 and state["step"] == step

    _subprocess_run(out, "--resume")
    _assert_same_weights(_weights(out), _weights(reference_subprocess))
    assert _train_records(out) == _train_records(reference_subprocess)


@pytest.mark.slow
def test_kill_after_a_save_every_checkpoint_resumes_bit_identically(tmp_path, reference_subprocess):
    out = tmp_path / "run"
    proc = _subprocess_train(out, "recipe.step_sleep=0.15", "train.save_every=5")
    saved = out / "checkpoints" / "epoch_0001_step_00000010.pt"
    _wait_for(proc, lambda: saved.exists() and _logged_step(out) >= 12)
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed
    proc.communicate(timeout=60)
    assert not (out / "final.pt").exists() and _logged_step(out) >= 12

    err = _subprocess_run(out, "train.save_every=5", "--resume")
    assert "step 10" in err or "step 15" in err  # the newest save that completed before the kill
    _assert_same_weights(_weights(out), _weights(reference_subprocess))
    assert _train_records(out) == _train_records(reference_subprocess)  # steps after the save logged once


# --- training inside a protocol ---------------------------------------------------------


@pytest.mark.slow
def test_protocol_retrains_only_with_the_same_settings(tmp_path, capsys):
    from protocol_data import make_protocol_data

    data = make_protocol_data(tmp_path / "data")
    few, out = data.lists / "fewshot", tmp_path / "few"
    args = ["eval", "--protocol", "few-shot", "--root", str(data.root), "--train-list", str(few / "train.csv"),
            "--list", str(few / "test.csv"), "--classes", str(few / "classes.csv"), "--shots", "1",
            "--out", str(out), "--recipe", "text4vis", "--workers", "0", "--batch-size", "2",
            "model.backbone=tiny", "model.pretrained=none", "data.frames=4", "data.batch_size=2",
            "data.workers=0", "schedule.epochs=1", "schedule.warmup_epochs=0", "run.device=cpu"]
    run = out / "runs" / "shots1"

    def attempt(*more: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([*args, *more])
        return code, capsys.readouterr().err

    # A first attempt that fails (a bad learning rate), after an earlier crash left a log
    # and a config but no checkpoint: neither blocks the corrected attempt.
    code, err = attempt("optim.lr=-1")
    assert code == 2 and "optim.lr" in err
    assert not out.exists()  # refused when the configuration is read: nothing written
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 5, "loss": 7.0}\n')
    (run / "config.yaml").write_text("run: {seed: 99}\n")
    code, err = attempt()
    assert code == 0, err
    assert (run / "final.pt").is_file()
    assert all(r.get("loss") != 7.0 for r in read_metrics(run))  # nothing of the failed attempts
    assert "seed: 99" not in (run / "config.yaml").read_text()

    # Other training settings: the finished run (and the scores made with it) is not reused.
    final = (run / "final.pt").read_bytes()
    code, err = attempt("schedule.epochs=2")
    assert code == 2 and "schedule.epochs" in err and len(err.strip().splitlines()) == 1
    assert (run / "final.pt").read_bytes() == final
