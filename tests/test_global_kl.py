"""ActionCLIP's loss over the global batch: 2 gloo processes equal one process on the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from kl_gather_worker import TwoTowers, toy_batch  # noqa: E402
from test_distributed import TORCHRUN, free_port  # noqa: E402

from ovar.losses import symmetric_kl_loss  # noqa: E402
from ovar.losses.symmetric_kl import global_symmetric_kl_loss  # noqa: E402

HERE = Path(__file__).parent


def single_process() -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    model = TwoTowers()
    video, text, labels = toy_batch()
    v, t, scale = model(video, text)
    loss = symmetric_kl_loss(v, t, labels, scale)
    loss.backward()
    per_process = sum(symmetric_kl_loss(v[s].detach(), t[s].detach(), labels[s], scale.detach())
                      for s in (slice(0, 5), slice(5, 8))) / 2
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}, per_process


def test_without_process_group_is_the_plain_loss() -> None:
    video, text, labels = toy_batch()
    scale = torch.tensor(30.0)
    assert global_symmetric_kl_loss(video[:, :4], text[:, :4], labels, scale) == \
        symmetric_kl_loss(video[:, :4], text[:, :4], labels, scale)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed beside python")
def test_two_processes_equal_one_on_the_concatenated_batch(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
           str(free_port()), str(HERE / "kl_gather_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loss, grads, per_process = single_process()
    # A per-process loss (16 x 16 at 8 x 16) is a different number: the check can fail.
    assert not torch.isclose(loss, per_process, atol=1e-4)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(result["loss"], loss, rtol=1e-5, atol=1e-6)
        for name, grad in grads.items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-6, msg=name)
