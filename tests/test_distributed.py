"""Two CPU processes under torchrun (gloo) match one process at the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_recipe import ToyRecipe, toy_config  # noqa: E402

from ovar.train import train  # noqa: E402

HERE = Path(__file__).parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
# No dropout: masks drawn per rank cannot equal one mask over the global batch.
COMMON = ("schedule.epochs=2", "recipe.eval_items=31")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "toy_recipe.py"), str(out), *overrides]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside python")
def test_two_processes_match_one(tmp_path) -> None:
    proc = torchrun(tmp_path / "ddp", *COMMON, "data.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr
    config = toy_config(tmp_path / "single", *COMMON, "data.batch_size=8")
    single = train(config, ToyRecipe(config))
    ranks = [torch.load(tmp_path / "ddp" / f"result_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][name], ranks[1]["model"][name], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0]["model"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    # 31 evaluation items over 2 ranks: 16 + 15, each counted once, none padded.
    for result in ranks:
        assert result["metrics"]["num_samples"] == 31
        assert result["metrics"]["top1"] == pytest.approx(single.metrics["top1"])
    assert (tmp_path / "ddp" / "checkpoints" / "epoch_0002.pt").exists()
