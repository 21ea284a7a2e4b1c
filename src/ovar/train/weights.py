"""Weight averaging over epoch checkpoints (SWA), and reading the checkpoints of every layout
(interpolation towards CLIP: :mod:`ovar.train.interpolation`).

Checkpoint layouts (detected from the loaded dict):

- ``original``: Open-VCLIP / FROSTER, ``{"model_state": {"model.<clip key>", ...}, "epoch", ...}``;
- ``run``: ovar run checkpoints, ``{"model": state_dict, "epoch", ...}`` (``epoch_NNNN.pt``, ``final.pt``);
- ``model-file``: ovar model files, ``{"format": "ovar-model", ..., "state_dict": ...}``;
- ``clip`` (interpolation and ``clip=`` only): a CLIP weights file (OpenAI archive, state dict,
  safetensors).

A *CLIP prefix* of a state dict is a ``P`` ("" or ending in ".") such that ``P + "visual.conv1.weight"``
or ``P + "token_embedding.weight"`` is a key. A prefix belongs to a frozen teacher when one of its
dotted parts contains ``"teacher"`` or is ``"raw_model"`` (FROSTER); every other prefix is the student.
An ovar model may hold its one CLIP under two names (``model.backbone.clip.`` and
``model.video_encoder.backbone.clip.``): both are treated alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import ModelError
from ..models.model_file import is_model_file
from ..models.weights_io import (OPENAI_METADATA_KEYS, is_torchscript_archive, load_file, read_weights,
                                 unwrap_state_dict)

LAYOUTS = ("original", "run", "model-file")
_ANCHORS = ("visual.conv1.weight", "token_embedding.weight")
# FROSTER's tool also averages these non-CLIP keys of the original checkpoints.
_EXTRA_MARKERS = ("projector", "adapter", "post_prompt")
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pyth")

State = dict[str, Any]


@dataclass
class WeightsInfo:
    """What an average or interpolation did, for the one-line summary."""

    layout: str
    tensors: int
    ids: list[int] = field(default_factory=list)
    with_clip: bool = False


# --- naming and selection -------------------------------------------------------------------


def checkpoint_id(path: str | os.PathLike) -> int:
    """The integer after the last ``_`` of the file name before its first ``.``
    (``checkpoint_epoch_00005.pyth`` -> 5, ``epoch_0005.pt`` -> 5)."""
    stem = Path(path).name.split(".", 1)[0]
    tail = stem.rsplit("_", 1)[-1]
    if "_" not in stem or not tail.isdigit():
        raise ModelError(f"{path}: cannot tell the checkpoint's epoch from its name "
                         f"(expected e.g. checkpoint_epoch_00005.pyth or epoch_0005.pt)")
    return int(tail)


def _has_id(path: Path) -> bool:
    try:
        checkpoint_id(path)
    except ModelError:
        return False
    return True


def expand_checkpoint_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a directory stands for its checkpoint files (those of its
    ``checkpoints/`` folder for an ovar run directory). ``best.pt``-style names are skipped."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.append(path)
            continue
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        found = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.name.endswith(_CHECKPOINT_SUFFIXES) and _has_id(p))
        if not found:
            raise ModelError(f"{path}: no epoch checkpoints found in {folder}")
        out.extend(found)
    return out


def _id_range(start: int, end: int | None) -> str:
    return f"{start}..{end}" if end is not None else f">= {start}"


def select_for_average(paths: Sequence[str | os.PathLike], start: int = 2, end: int | None = None) -> list[Path]:
    """The checkpoints with ``start <= id <= end`` (``end`` None: up to the last), by id."""
    by_id: dict[int, Path] = {}
    for raw in paths:
        path = Path(raw)
        ident = checkpoint_id(path)
        if ident in by_id:
            raise ModelError(f"{path}: checkpoint id {ident} given twice (also {by_id[ident]})")
        by_id[ident] = path
    chosen = [by_id[i] for i in sorted(by_id) if i >= start and (end is None or i <= end)]
    if not chosen:
        names = ", ".join(Path(p).name for p in paths) or "no files"
        raise ModelError(f"no checkpoints with ids {_id_range(start, end)} among {names}")
    return chosen


# --- CLIP keys ------------------------------------------------------------------------------


def is_teacher_key(key: str) -> bool:
    """True for a key inside a frozen teacher (a dotted part containing "teacher", or "raw_model")."""
    return any("teacher" in part or part == "raw_model" for part in key.split(".")[:-1])


def clip_prefixes(keys: Iterable[str], include_teacher: bool = False) -> list[str]:
    """The CLIP prefixes among ``keys`` in first-seen order (students only unless asked)."""
    found: list[str] = []
    for key in keys:
        for anchor in _ANCHORS:
            if key.endswith(anchor):
                prefix = key[: -len(anchor)]
                if (prefix == "" or prefix.endswith(".")) and prefix not in found \
                        and (include_teacher or not is_teacher_key(prefix + "x")):
                    found.append(prefix)
    return found


def clip_state(state: Mapping[str, Any], name: str = "state dict") -> State:
    """The student CLIP of ``state`` with its prefix removed (OpenAI metadata scalars dropped)."""
    prefixes = clip_prefixes(state)
    if not prefixes:
        raise ModelError(f"{name}: no CLIP weights found (no '...visual.conv1.weight' or "
                         f"'...token_embedding.weight' key)")
    prefix = prefixes[0]
    return {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix) and isinstance(v, Tensor) and k[len(prefix):] not in OPENAI_METADATA_KEYS}


def clip_tensors(clip: Mapping[str, Any]) -> dict[str, Tensor]:
    """The floating-point tensors of a CLIP state dict (OpenAI metadata entries left out)."""
    return {k: v for k, v in clip.items()
            if k not in OPENAI_METADATA_KEYS and isinstance(v, Tensor) and v.is_floating_point()}


# --- reading --------------------------------------------------------------------------------


def _layout(payload: Any) -> str | None:
    if is_model_file(payload) and isinstance(payload.get("state_dict"), dict):
        return "model-file"
    if isinstance(payload, dict) and isinstance(payload.get("model_state"), dict):
        return "original"
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        return "run"
    return None


def _state_of(layout: str, payload: dict) -> State:
    return payload[{"model-file": "state_dict", "original": "model_state", "run": "model"}[layout]]


def read_checkpoint(path: str | os.PathLike) -> tuple[str, dict, State]:
    """``(layout, payload, state_dict)`` of an original checkpoint, ovar run checkpoint or model file."""
    payload = load_file(path, "checkpoint")
    layout = _layout(payload)
    if layout is None:
        raise ModelError(f"{path}: not a checkpoint (expected an Open-VCLIP/FROSTER checkpoint, "
                         f"an ovar run checkpoint or an ovar model file)")
    return layout, payload, _state_of(layout, payload)


def read_any(path: str | os.PathLike) -> tuple[str, dict | None, State, bool]:
    """``(layout, payload, state, openai)``: a checkpoint, or layout "clip" for a CLIP weights file."""
    path = Path(path)
    if path.suffix == ".safetensors" or (path.is_file() and is_torchscript_archive(path)):
        state, openai = read_weights(path)
        return "clip", None, state, openai
    payload = load_file(path, "weights file")
    layout = _layout(payload)
    if layout is not None:
        return layout, payload, _state_of(layout, payload), False
    state = unwrap_state_dict(payload, path)
    openai = any(k in state for k in OPENAI_METADATA_KEYS)
    return "clip", None, {k: v for k, v in state.items() if k not in OPENAI_METADATA_KEYS}, openai


def load_clip(path: str | os.PathLike) -> State:
    """The (unprefixed) student CLIP held by any supported file: CLIP weights or a checkpoint."""
    _, _, state, _ = read_any(path)
    return clip_state(state, str(path))


# --- averaging ------------------------------------------------------------------------------


def average_state_dicts(states: Sequence[Mapping[str, Any]], keys: Iterable[str] | None = None,
                        names: Sequence[str] | None = None) -> State:
    """Uniform mean (float32, stacked then averaged) of every floating tensor under ``keys``
    (default: the keys of the last state); other values come from the last state."""
    if not states:
        raise ModelError("nothing to average")
    names = list(names) if names is not None else [f"state {i}" for i in range(len(states))]
    keys = list(states[-1]) if keys is None else list(keys)
    out: State = {}
    for key in keys:
        values = []
        for state, name in zip(states, names):
            if key not in state:
                raise ModelError(f"{name}: key '{key}' is missing, cannot average it")
            values.append(state[key])
        last = values[-1]
        if not (isinstance(last, Tensor) and last.is_floating_point()):
            out[key] = last
            continue
        for value, name in zip(values, names):
            if not isinstance(value, Tensor) or value.shape != last.shape:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ModelError(f"{name}: key '{key}' has shape {shape}, expected {tuple(last.shape)}")
        out[key] = torch.stack([v.float() for v in values]).mean(0)
    return out


def _average_original(states: list[State], names: list[str], clip: State | None, with_clip: bool) -> State:
    """The original tool: 'model.' + CLIP keys (CLIP order), then FROSTER's extra keys."""
    last = states[-1]
    if clip is not None:
        clip_keys = ["model." + k for k in clip_tensors(clip)]
    else:
        clip_keys = [k for k in last if k.startswith("model.")]
        if not clip_keys:
            raise ModelError(f"{names[-1]}: no CLIP keys ('model.*') found")
    taken = set(clip_keys)
    extra = [k for k in last if k not in taken and any(m in k for m in _EXTRA_MARKERS)]
    sources, source_names = states, names
    if with_clip:  # the CLIP is id 0: first in the stack; it has no extra keys
        sources = [{"model." + k: v for k, v in clip_tensors(clip).items()}, *states]
        source_names = ["CLIP", *names]
    averaged = average_state_dicts(sources, clip_keys, source_names)
    averaged.update(average_state_dicts(states, extra, names))
    return averaged


def _average_ovar(states: list[State], names: list[str], clip: State | None) -> State:
    """Every floating tensor but a teacher's, back in its own dtype; the rest from the last."""
    last = states[-1]
    keys = [k for k in last if not is_teacher_key(k)]
    mapped: State = {}
    if clip is not None:
        prefixes = clip_prefixes(last)
        if not prefixes:
            raise ModelError(f"{names[-1]}: no CLIP weights found to average with the CLIP")
        mapped = {p + k: v for p in prefixes for k, v in clip_tensors(clip).items() if p + k in last}
    with_clip = [k for k in keys if k in mapped]
    averaged = average_state_dicts([mapped, *states], with_clip, ["CLIP", *names]) if with_clip else {}
    averaged.update(average_state_dicts(states, [k for k in keys if k not in mapped], names))
    out: State = {}
    for key, value in last.items():
        new = averaged.get(key, value)
        if isinstance(value, Tensor) and value.is_floating_point():
            new = new.to(value.dtype)
        out[key] = new
    return out


def average_checkpoints(paths: Sequence[str | os.PathLike], *, clip: str | os.PathLike | None = None,
                        include_clip: bool = False, start: int = 2, end: int | None = None,
                        layout: str = "auto") -> tuple[dict, WeightsInfo]:
    """Average the checkpoints with ids ``start..end`` into one payload of their own layout.

    The CLIP (``clip``) counts as id 0, so it joins the average when ``start <= 0`` or
    ``include_clip``; it only contributes to CLIP keys. For original checkpoints the result is
    exactly what Open-VCLIP's / FROSTER's weight-average tool writes: ``{"model_state": ...}``
    with 'model.' + every CLIP key (in CLIP order; without ``clip``, every 'model.*' key) and the
    keys holding 'projector', 'adapter' or 'post_prompt', as float32; everything else dropped.
    """
    if layout not in ("auto", *LAYOUTS):
        raise ModelError(f"unknown checkpoint layout '{layout}' (expected auto, {', '.join(LAYOUTS)})")
    if include_clip and clip is None:
        raise ModelError("including the CLIP in the average needs a CLIP file (--clip)")
    chosen = select_for_average(paths, start, end)
    with_clip = clip is not None and (include_clip or (start <= 0 and (end is None or end >= 0)))
    loaded = [read_checkpoint(p) for p in chosen]
    found = loaded[-1][0]
    for path, (kind, _, _) in zip(chosen, loaded):
        if kind != found:
            raise ModelError(f"{path}: a {kind} checkpoint, but {chosen[-1]} is a {found} one")
    if layout not in ("auto", found):
        raise ModelError(f"{chosen[-1]}: a {found} checkpoint, not {layout}")
    names = [str(p) for p in chosen]
    states = [s for _, _, s in loaded]
    last_payload = loaded[-1][1]
    del loaded  # frees optimizer states and the like before the tensors are stacked
    clip_sd = load_clip(clip) if clip is not None else None
    ids = [checkpoint_id(p) for p in chosen]
    if found == "original":
        averaged = _average_original(states, names, clip_sd, with_clip)
        payload: dict = {"model_state": averaged}
    else:
        averaged = _average_ovar(states, names, clip_sd if with_clip else None)
        if found == "model-file":  # keep what rebuilds the model; swap the weights
            payload = {k: (averaged if k == "state_dict" else v) for k, v in last_payload.items()}
        else:  # no optimizer/RNG state: an average is not a point to resume from
            payload = {"model": averaged, "averaged_ids": ids}
    tensors = sum(1 for k, v in averaged.items() if isinstance(v, Tensor) and v.is_floating_point()
                  and not is_teacher_key(k))
    return payload, WeightsInfo(layout=found, tensors=tensors, ids=([0] if with_clip else []) + ids,
                                with_clip=with_clip)
