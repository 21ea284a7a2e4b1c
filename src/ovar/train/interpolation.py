"""Interpolation of weights, and test-time patching towards CLIP (``θ = r·θ_CLIP + (1 − r)·θ``).

Files of every layout of :mod:`ovar.train.weights` (and plain CLIP weights) are accepted.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..models.mixing import check_ratio, mix
from .weights import State, WeightsInfo, clip_tensors, read_any, clip_prefixes, clip_state


def interpolate_state_dicts(a: Mapping[str, Any], b: Mapping[str, Any], ratio: float) -> State:
    """``ratio * a + (1 - ratio) * b`` for the floating tensors in both; all else from ``b``."""
    check_ratio(ratio)
    out: State = {}
    for key, value in b.items():
        other = a.get(key)
        if isinstance(value, Tensor) and value.is_floating_point() and isinstance(other, Tensor):
            out[key] = mix(other, value, ratio, key)
        else:
            out[key] = value
    return out


def patch_towards_clip(state: Mapping[str, Any], clip: Mapping[str, Any], ratio: float) -> State:
    """``state[P + k] = ratio * clip[k] + (1 - ratio) * state[P + k]`` for every CLIP key ``k`` and
    student CLIP prefix ``P`` of ``state`` (test-time patching); other keys unchanged."""
    check_ratio(ratio)
    prefixes = clip_prefixes(state)
    if not prefixes:
        raise ModelError("no CLIP weights found to patch")
    out = dict(state)
    for prefix in prefixes:
        for key, value in clip_tensors(clip).items():
            if prefix + key not in state:
                raise ModelError(f"CLIP key '{key}' is missing under '{prefix}'")
            out[prefix + key] = mix(value, state[prefix + key], ratio, prefix + key)
    return out


def patch_module(module: nn.Module, clip: Mapping[str, Any], ratio: float) -> int:
    """:func:`patch_towards_clip` in place on ``module``'s student CLIP; returns the tensors patched."""
    check_ratio(ratio)
    tensors = module.state_dict(keep_vars=True)
    prefixes = clip_prefixes(tensors)
    if not prefixes:
        raise ModelError(f"no CLIP found in the {type(module).__name__} to patch")
    done: set[int] = set()
    with torch.no_grad():
        for prefix in prefixes:
            for key, value in clip_tensors(clip).items():
                target = tensors.get(prefix + key)
                if target is None:
                    raise ModelError(f"CLIP key '{key}' is missing under '{prefix}'")
                if id(target) in done:  # one module registered under two names
                    continue
                done.add(id(target))
                target.copy_(mix(value, target.detach(), ratio, prefix + key))
    return len(done)


def _openai_metadata(clip: State) -> dict[str, Tensor]:
    """OpenAI's int scalars, recomputed from the shapes: they mark the file as QuickGELU CLIP."""
    needed = ("visual.conv1.weight", "visual.positional_embedding", "positional_embedding", "token_embedding.weight")
    if not all(k in clip for k in needed):
        return {}
    conv, pos = clip["visual.conv1.weight"], clip["visual.positional_embedding"]
    grid = round((pos.shape[0] - 1) ** 0.5)
    return {"input_resolution": torch.tensor(int(conv.shape[-1]) * grid),
            "context_length": torch.tensor(int(clip["positional_embedding"].shape[0])),
            "vocab_size": torch.tensor(int(clip["token_embedding.weight"].shape[0]))}


def _wrap(layout: str, payload: dict | None, state: State) -> dict:
    if layout == "model-file":
        return {k: (state if k == "state_dict" else v) for k, v in payload.items()}
    return {"model_state": state} if layout == "original" else {"model": state}


def interpolate_files(a_path: str | os.PathLike, b_path: str | os.PathLike,
                      ratio: float) -> tuple[dict, WeightsInfo]:
    """``ratio * A + (1 - ratio) * B``; each file may be CLIP weights or a checkpoint of any layout.

    With one CLIP side, its weights are mapped onto the other side's CLIP prefix (patching) and
    the result has the checkpoint's layout; two checkpoints give B's layout; two CLIPs a plain
    state dict.
    """
    check_ratio(ratio)
    la, pa, sa, openai_a = read_any(a_path)
    lb, pb, sb, openai_b = read_any(b_path)
    if la == "clip" and lb == "clip":
        ca, cb = clip_state(sa, str(a_path)), clip_state(sb, str(b_path))
        try:
            state = interpolate_state_dicts(ca, cb, ratio)
        except ModelError as exc:
            raise ModelError(f"{a_path} vs {b_path}: {exc}") from None
        if openai_a or openai_b:  # keep the marker that selects QuickGELU when the file is loaded
            state.update(_openai_metadata(state))
        mixed = sum(1 for k, v in cb.items() if k in ca and v.is_floating_point())
        return state, WeightsInfo(layout="clip", tensors=mixed, with_clip=True)
    if "clip" in (la, lb):
        # The CLIP side is mapped onto the checkpoint's CLIP prefix: test-time patching.
        if la == "clip":
            clip, base, r, layout, payload, base_path = clip_state(sa, str(a_path)), sb, ratio, lb, pb, b_path
        else:
            clip, base, r, layout, payload, base_path = clip_state(sb, str(b_path)), sa, 1.0 - ratio, la, pa, a_path
        try:
            state = patch_towards_clip(base, clip, r)
        except ModelError as exc:
            raise ModelError(f"{base_path}: {exc}") from None
        mixed = len(clip_tensors(clip)) * len(clip_prefixes(base))
        return _wrap(layout, payload, state), WeightsInfo(layout=layout, tensors=mixed, with_clip=True)
    shared = [k for k, v in sb.items()
              if isinstance(v, Tensor) and v.is_floating_point() and isinstance(sa.get(k), Tensor)]
    if not shared:
        raise ModelError(f"{a_path} and {b_path}: no weights in common to interpolate")
    try:
        state = interpolate_state_dicts(sa, sb, ratio)
    except ModelError as exc:
        raise ModelError(f"{a_path} vs {b_path}: {exc}") from None
    return _wrap(lb, pb, state), WeightsInfo(layout=lb, tensors=len(shared))
