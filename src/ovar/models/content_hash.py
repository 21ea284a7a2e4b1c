"""Content digests of weights: what every cache of computed values is keyed by.

A cached value (class-text embeddings, frozen image features) is a function of the tensors
that compute it and of the code path through them (activation, norm epsilon, pooling...).
A digest covers both: every parameter and buffer (name, shape, dtype and raw bytes, in
name order) and the modules' ``repr``. Digests are computed from the live tensors each
time they are asked for, never stored with a model, so weights changed in place (training,
patching, averaging, loading a checkpoint) always give a new key.
"""

from __future__ import annotations

import hashlib
from itertools import chain
from typing import Iterable

import torch
from torch import nn

# CLIP tensors that take no part in encoding text: the image tower and the temperature
# (class embeddings are unit vectors; the scale is applied when scoring, never cached).
_NOT_TEXT = ("visual.", "logit_scale", "logit_bias")
# Non-tensor attributes of open_clip's CLIP that change what ``encode_text`` computes.
_TEXT_ATTRIBUTES = ("context_length", "vocab_size", "text_pool_type", "text_eos_id")


def tensors_digest(tensors: Iterable[tuple[str, torch.Tensor]], structure: str = "") -> str:
    """Hex digest of named tensors (sorted by name: names, shapes, dtypes, bytes) and ``structure``."""
    # SHA-256 runs on the SHA extensions of current x86 and ARM CPUs: about twice BLAKE2b's speed there.
    digest = hashlib.sha256()
    digest.update(structure.encode())
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        value = tensor.detach()
        digest.update(f"\0{name}:{tuple(value.shape)}:{value.dtype}\0".encode())
        # Reinterpreted as bytes, so bf16/bool/any dtype hash alike; numpy hands hashlib the buffer without a copy.
        digest.update(value.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:32]


def _named_tensors(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    # named_buffers includes non-persistent buffers (e.g. CLIP's causal mask), which state_dict omits.
    return chain(module.named_parameters(), module.named_buffers())


def module_digest(module: nn.Module) -> str:
    """Digest of every parameter and buffer of ``module`` and of its structure (``repr``)."""
    return tensors_digest(_named_tensors(module), f"{type(module).__qualname__}\n{module!r}")


def text_tower_digest(clip: nn.Module) -> str:
    """Digest of exactly what an open_clip model's ``encode_text`` depends on."""
    tensors = [(n, t) for n, t in _named_tensors(clip) if not n.startswith(_NOT_TEXT)]
    children = "\n".join(f"{name}={child!r}" for name, child in clip.named_children() if name != "visual")
    attributes = {name: getattr(clip, name, None) for name in _TEXT_ATTRIBUTES}
    return tensors_digest(tensors, f"{type(clip).__qualname__}\n{attributes}\n{children}")
