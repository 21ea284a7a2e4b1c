"""ovar's own model file: one ``torch.save`` dict that loads with ``weights_only=True``.

Layout (version 1)::

    {"format": "ovar-model", "version": 1, "kind": "actionclip" | "text4vis" | ...,
     "backbone": {"name", "config" (open_clip CLIP kwargs), "quick_gelu", "mean", "std"},
     "args": {typed constructor arguments of the kind's model class},
     "state_dict": {...}}

A kind's model class comes from :data:`ovar.hub.MODEL_KINDS` and is built as
``cls(backbone, **args)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transformer import QuickGELU

from ..errors import ModelError
from .backbone import OPENAI_MEAN, OPENAI_STD, ClipBackbone
from .weights_io import infer_clip_config, load_file
from .zero_shot import VideoTextModel

FORMAT = "ovar-model"
VERSION = 1
# The video encoder holds the same backbone as the model: its keys are stored once.
_SHARED_PREFIX = "video_encoder.backbone."

def backbone_config(backbone: ClipBackbone) -> tuple[dict[str, Any], bool]:
    """The open_clip config that rebuilds ``backbone``'s architecture, and its QuickGELU flag."""
    quick_gelu = isinstance(backbone.clip.transformer.resblocks[0].mlp.gelu, QuickGELU)
    return infer_clip_config(backbone.clip.state_dict(), quick_gelu), quick_gelu


def model_payload(model: VideoTextModel, where: object = "model") -> dict[str, Any]:
    """The model-file dict of ``model`` (which must define ``kind`` and ``build_args``)."""
    kind = getattr(model, "kind", None)
    args = getattr(model, "build_args", None)
    if not isinstance(kind, str) or not isinstance(args, dict):
        raise ModelError(f"{where}: a {type(model).__name__} cannot be saved (it has no kind/build_args)")
    config, quick_gelu = backbone_config(model.backbone)
    backbone = model.backbone
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if not k.startswith(_SHARED_PREFIX)}
    return {
        "format": FORMAT, "version": VERSION, "kind": kind,
        "backbone": {"name": backbone.name, "config": config, "quick_gelu": quick_gelu,
                     "mean": list(backbone.mean), "std": list(backbone.std)},
        "args": args,
        "state_dict": state,
    }


def save_model_file(path: str | os.PathLike, model: VideoTextModel) -> Path:
    """Write ``model`` (which must define ``kind`` and ``build_args``) atomically to ``path``."""
    path = Path(path)
    payload = model_payload(model, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # readers never see half a file
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> VideoTextModel:
    """Rebuild the model saved by :func:`save_model_file` (eval mode, on ``device``)."""
    path = Path(path)
    payload = load_file(path, "model file")
    if not is_model_file(payload):
        raise ModelError(f"{path}: not an ovar model file (convert checkpoints with `ovar convert`)")
    if payload["version"] > VERSION:
        raise ModelError(f"{path}: model file version {payload['version']} is newer than this ovar "
                         f"supports ({VERSION})")
    return model_from_payload(payload, path, device)


def model_from_payload(payload: dict[str, Any], path: Path, device: str | torch.device = "cpu") -> VideoTextModel:
    """Rebuild a model from the parts of a model file (``path`` names it in errors); an
    exported folder (:mod:`ovar.models.export`) holds the same parts in other files."""
    try:
        spec, kind, args, state = payload["backbone"], payload["kind"], payload["args"], payload["state_dict"]
        clip = open_clip.model.CLIP(**spec["config"])
        # A "fingerprint" entry in older files is ignored: cache keys are digests of the loaded weights.
        backbone = ClipBackbone(clip, name=spec["name"], pretrained=str(path),
                                mean=tuple(spec.get("mean", OPENAI_MEAN)), std=tuple(spec.get("std", OPENAI_STD)))
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path}: malformed model file (missing or bad {exc})") from exc
    from ..hub import model_class

    model = model_class(kind, path)(backbone, **args)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelError(f"{path}: weights do not match the '{kind}' model ({str(exc).splitlines()[-1].strip()})") from exc
    missing = [k for k in result.missing_keys if not k.startswith(_SHARED_PREFIX)]
    if missing or result.unexpected_keys:
        detail = f"missing key {missing[0]}" if missing else f"unexpected key {result.unexpected_keys[0]}"
        raise ModelError(f"{path}: weights do not match the '{kind}' model ({detail})")
    return model.to(device).eval()


def is_model_file(payload: Any) -> bool:
    """True for a loaded dict in ovar's model-file format."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT and isinstance(payload.get("version"), int)
