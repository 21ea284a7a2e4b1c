"""Gathering a batch from every process, with or without gradients (for losses over the
global batch); without a process group these return their input."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's slice of the summed gradient.

    Every rank computes the same loss over the gathered batch; summing the ranks' gradients
    w.r.t. each slice, then DDP's averaging of parameter gradients, gives exactly the
    gradient of that loss in one process over the concatenated batch.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        sizes = _gather_sizes(tensor)
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat(_gather_padded(tensor.contiguous(), sizes))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        sizes, longest = ctx.sizes, max(ctx.sizes)
        padded = grad.new_zeros((len(sizes), longest, *grad.shape[1:]))
        for r, part in enumerate(grad.split(sizes)):
            padded[r, :part.shape[0]] = part
        dist.all_reduce(padded)
        return padded[ctx.rank, :sizes[ctx.rank]]


def _gather_sizes(tensor: torch.Tensor) -> list[int]:
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Each rank's ``tensor`` (ranks may hold different batch sizes)."""
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return [part[:n] for part, n in zip(out, sizes)]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, differentiable (see
    :class:`_GatherWithGrad`); ``tensor`` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (e.g. labels) concatenated along dim 0 in rank order."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return torch.cat(_gather_padded(tensor.detach().contiguous(), _gather_sizes(tensor)))
