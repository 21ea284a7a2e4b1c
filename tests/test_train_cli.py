"""`ovar train` / `ovar eval` from the command line, with the toy recipe of the engine tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ovar.cli import main

TOY = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=2",
       "schedule.warmup_epochs=1", "optim.lr=0.05", "run.device=cpu"]
TESTS = str(Path(__file__).resolve().parent)


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TOY]) == 0
    assert (out / "config.yaml").is_file() and (out / "final.pt").is_file()
    assert (out / "metrics.jsonl").read_text().strip()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "final.pt"), "--out", str(out), *TOY]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # The top-1 of the saved weights on the evaluation items, by hand.
    from toy_recipe import ToyModel, ToyOptions, ToyDataset

    model = ToyModel(ToyOptions()).eval()
    model.load_state_dict(torch.load(out / "final.pt", weights_only=True)["model"])
    data = ToyDataset(ToyOptions(), ToyOptions().eval_items, seed=2, train=False)
    with torch.no_grad():
        top1 = 100.0 * (model(data.x).argmax(1) == data.labels).float().mean().item()
    assert metrics["num_samples"] == 30 and metrics["top1"] == pytest.approx(top1)


def test_bad_override_and_unknown_recipe(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), *TOY, "optim.lrr=1"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "schedule.epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_through_the_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    runs = {}
    for procs in (1, 2):
        out = tmp_path / f"p{procs}"
        batch = 8 // procs  # the same global batch
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
               f"--master_port={_free_port()}", "-m", "ovar", "train", "--out", str(out),
               *[a for a in TOY if not a.startswith("data.batch_size")], f"data.batch_size={batch}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[procs] = torch.load(out / "final.pt", weights_only=True)["model"]
    for key, value in runs[1].items():
        assert torch.allclose(value, runs[2][key], atol=1e-4), key
