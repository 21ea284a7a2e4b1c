"""torchrun integration: detect the launch, set up the process group, wrap, shut down cleanly.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without
them everything runs in one process and every helper here is a no-op.  Backend: NCCL on
GPUs, gloo on CPU.

Clean shutdown matters: a gloo process that reaches interpreter exit with its process
group (or DataLoader workers) still alive can die in a C++ destructor with
"terminate called without an active exception" and a non-zero status.  :func:`session`
therefore ends with a barrier and ``destroy_process_group`` while everything is alive.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun's environment variables describe more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this process's GPU if there is one, else CPU (see :mod:`ovar.devices`)."""
    from ..devices import resolve_device as resolve

    return resolve(name, local_rank)


def context(device: str = "auto") -> DistContext:
    """The current process's :class:`DistContext` (process group initialised or not)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)
    return DistContext(local_rank=local_rank, device=dev)


@contextlib.contextmanager
def session(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """Initialise the process group if torchrun launched us (and nobody did yet); on leaving,
    barrier and destroy it.  Re-entrant: an inner session reuses the outer one's group."""
    owns = False
    if launched_by_torchrun() and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
        owns = True
    try:
        yield context(device)
    finally:
        if owns:
            shutdown()


def shutdown() -> None:
    """Barrier, then destroy the process group (every rank must call it)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext, *, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed, else unchanged."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids,
                                   find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]``; ``[obj]`` when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
