"""torchrun worker for test_global_kl.py: the global-batch ActionCLIP loss under DDP (gloo)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ovar.losses.symmetric_kl import global_symmetric_kl_loss


class TwoTowers(nn.Module):
    """A toy video tower, text tower and learnable scale (ActionCLIP's trainer, in miniature)."""

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.25))

    def forward(self, video: torch.Tensor, text: torch.Tensor):
        return self.video(video), self.text(text), self.logit_scale.exp()


def toy_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch: 8 items, classes repeated so same-label targets cross ranks."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(8, 6, generator=g), torch.randn(8, 5, generator=g), torch.tensor([3, 1, 3, 0, 1, 2, 3, 0])


SPLIT = (5, 3)  # rank 0 holds 5 items, rank 1 holds 3 (unequal batches gather too)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = TwoTowers()
    ddp = DistributedDataParallel(model)
    video, text, labels = (t.split(SPLIT)[rank] for t in toy_batch())
    v, t, scale = ddp(video, text)
    loss = global_symmetric_kl_loss(v, t, labels, scale)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads}, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
