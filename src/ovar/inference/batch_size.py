"""How many clips each forward pass of :func:`ovar.predict` takes when the caller does not say.

On a CPU a batch only needs enough frames to keep torch's threads busy: larger ones add
memory and delay the first results without speeding anything up, so it is small and
fixed.  On a CUDA GPU throughput grows with the batch until the GPU is busy, so the
batch is sized from the memory one clip really takes (measured with a two-clip probe
forward) and the memory that is free, up to a cap beyond which a bigger batch gains
nothing but latency.
"""

from __future__ import annotations

import logging
import torch

from ..devices import autocast

log = logging.getLogger(__name__)

CPU_BATCH = 8
"""Clips per pass on a CPU (8 clips of 8 frames: 64 images, plenty for the intra-op threads)."""
OTHER_BATCH = 16
"""Clips per pass on devices whose free memory cannot be asked (MPS, ...)."""
CUDA_MAX_BATCH = 64
"""The most clips per pass on a CUDA GPU."""
CUDA_MEMORY_SHARE = 0.5
"""The share of the GPU's free memory a batch may use (the rest: allocator slack, other work)."""
PROBE_CLIPS = 2


def batch_for_memory(free_bytes: int, clip_bytes: float, cap: int = CUDA_MAX_BATCH,
                     share: float = CUDA_MEMORY_SHARE) -> int:
    """The largest batch whose clips fit in ``share`` of ``free_bytes``, between 1 and ``cap``."""
    if clip_bytes <= 0:
        return cap
    return max(1, min(cap, int(free_bytes * share // clip_bytes)))


def default_batch_size(model, frames: int, device: torch.device, precision: str = "fp32") -> int:
    """Clips per forward pass for ``model`` on ``device``, for clips of ``frames`` frames in
    ``precision`` (resolved: fp32, fp16 or bf16)."""
    if device.type == "cpu":
        return CPU_BATCH
    if device.type != "cuda":
        return OTHER_BATCH
    clip_bytes = _probe_clip_bytes(model, frames, device, precision)
    free, _ = torch.cuda.mem_get_info(device)
    batch = batch_for_memory(free, clip_bytes)
    log.info("batch size %d: %.0f MiB per clip, %.0f MiB free on %s", batch, clip_bytes / 2**20,
             free / 2**20, device)
    return batch


@torch.no_grad()
def _probe_clip_bytes(model, frames: int, device: torch.device, precision: str) -> float:
    """Peak memory of one clip's forward pass, from a :data:`PROBE_CLIPS`-clip forward.

    The per-batch constants are divided among the probe's clips too, which errs on the
    safe side.
    """
    size = model.image_size
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    clips = torch.zeros(PROBE_CLIPS, frames, 3, size, size, device=device)  # counted: a batch holds its input
    with autocast(precision, device):
        model.encode_video(clips)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / PROBE_CLIPS
