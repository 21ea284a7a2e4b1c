"""ActionCLIP checkpoints (original training code and MMAction2's port) -> ActionCLIPModel.

Also holds the helpers the other CLIP-fine-tuning converters share: safe checkpoint
reading, building a backbone from an OpenAI-layout dict, and mapping fusion-module keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from ...errors import ModelError
from ..backbone import ClipBackbone
from ..actionclip import ActionCLIPModel
from ..weights_io import (OPENAI_METADATA_KEYS, infer_clip_config, is_openai_layout, load_exact,
                                 load_file)

PathLike = str | os.PathLike


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """A training checkpoint of the original code (a dict), read safely."""
    obj = load_file(path, "checkpoint")
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: checkpoint is not a dict")
    return obj


def section(obj: dict[str, Any], key: str, path: PathLike) -> dict[str, torch.Tensor]:
    """``obj[key]`` as a tensor dict, or a ModelError naming the file and the key."""
    value = obj.get(key)
    if not isinstance(value, dict):
        raise ModelError(f"{path}: missing key '{key}' (found: {', '.join(map(str, obj)) or 'nothing'})")
    return {k: v for k, v in value.items() if isinstance(v, torch.Tensor)}


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from the keys that carry it (DataParallel's ``module.``)."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def arch_name(config: dict[str, Any]) -> str:
    """A readable architecture name such as ``ViT-B-16`` for an inferred config."""
    vision = config["vision_cfg"]
    size = {768: "B", 1024: "L", 1280: "H"}.get(vision["width"], f"W{vision['width']}")
    return f"ViT-{size}-{vision['patch_size']}"


def build_backbone(clip_state: dict[str, torch.Tensor], path: PathLike) -> ClipBackbone:
    """An fp32 backbone from an OpenAI-layout CLIP dict (OpenAI-trained: QuickGELU)."""
    state = {k: v for k, v in clip_state.items() if k not in OPENAI_METADATA_KEYS and not k.endswith("attn_mask")}
    if not is_openai_layout(state):
        missing = next(k for k in ("visual.conv1.weight", "visual.proj", "token_embedding.weight",
                                   "positional_embedding", "text_projection", "ln_final.weight",
                                   "visual.class_embedding", "visual.positional_embedding") if k not in state)
        raise ModelError(f"{path}: not an OpenAI-layout ViT CLIP (missing key '{missing}')")
    config = infer_clip_config(state, quick_gelu=True)
    clip = open_clip.model.CLIP(**config)
    # Released checkpoints keep many weights in fp16: up-cast before loading.
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(clip.logit_scale.shape)
    load_exact(clip, state, path, "CLIP")
    return ClipBackbone(clip, name=arch_name(config), pretrained=str(path)).eval()


def infer_fusion(fusion_state: dict[str, torch.Tensor]) -> str:
    """ActionCLIP's ``sim_header`` from the keys of its fusion-module dict."""
    keys = list(fusion_state)
    if any(k.startswith("transformer.cls_token") or "transformer_enc" in k for k in keys):
        return "Transf_cls"
    if any(k.startswith("transformer.resblocks.") for k in keys):
        return "Transf"
    if any(k.startswith("lstm_visual.") for k in keys):
        return "LSTM"
    if "shift.weight" in fusion_state:
        return "Conv_1D"
    if not keys or keys == ["frame_position_embeddings.weight"]:
        return "meanP"
    raise ModelError(f"cannot tell the fusion type from keys such as '{keys[0]}' (pass --fusion)")


def fusion_arguments(fusion: str, state: dict[str, torch.Tensor], text_width: int) -> dict[str, Any]:
    """Typed ``build_fusion`` arguments read off the weights' shapes."""
    if fusion == "Transf":
        layers = {k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")}
        rows = state.get("frame_position_embeddings.weight")
        return {"heads": max(1, text_width // 64), "layers": len(layers),
                "max_frames": int(rows.shape[0]) if rows is not None else 77}
    if fusion == "Transf_cls":
        layers = {k.split(".")[3] for k in state if k.startswith("transformer.transformer_enc.layers.")}
        return {"layers": len(layers)}
    return {}


def map_fusion_keys(fusion: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original fusion-module key names -> ovar's module's names."""
    if fusion in ("meanP", "LSTM", "Conv_1D"):
        # The original builds a position table for these too, but never uses it.
        state = {k: v for k, v in state.items() if k != "frame_position_embeddings.weight"}
    renames = {"Transf": [("transformer.resblocks.", "resblocks.")],
               "LSTM": [("lstm_visual.", "lstm.")],
               "Transf_cls": [("transformer.transformer_enc.", "encoder."), ("transformer.cls_token", "cls_token"),
                              ("transformer.pos_embed", "pos_embed")]}.get(fusion, [])
    out = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value.float()
    return out


def attach_fusion(model: nn.Module, fusion: str, state: dict[str, torch.Tensor], path: PathLike) -> None:
    """Load the original fusion weights into ``model.video_encoder.fusion`` strictly."""
    load_exact(model.video_encoder.fusion, map_fusion_keys(fusion, state), path, f"'{fusion}' fusion")


def convert_actionclip(checkpoint: PathLike, *, fusion: str | None = None, frames: int | None = None,
                       fusion_weights: PathLike | None = None, templates: str = "actionclip") -> ActionCLIPModel:
    """Original ActionCLIP ``{'model_state_dict', 'fusion_model_state_dict'}`` -> model.

    ``fusion_weights`` takes ``fusion_model_state_dict`` from another file (same CLIP).
    """
    obj = read_checkpoint(checkpoint)
    clip_state = strip_prefix(section(obj, "model_state_dict", checkpoint), "module.")
    fusion_source = checkpoint if fusion_weights is None else fusion_weights
    fusion_obj = obj if fusion_weights is None else read_checkpoint(fusion_weights)
    fusion_state = strip_prefix(section(fusion_obj, "fusion_model_state_dict", fusion_source), "module.")
    if any(k.startswith("visual.transformer.resblocks.") and ".net." in k for k in clip_state):
        raise ModelError(f"{checkpoint}: checkpoints trained with the 'tsm' in-network prompt are not supported")
    backbone = build_backbone(clip_state, checkpoint)
    try:
        kind = fusion or infer_fusion(fusion_state)
    except ModelError as exc:
        raise ModelError(f"{fusion_source}: {exc}") from None
    args = fusion_arguments(kind, fusion_state, int(clip_state["ln_final.weight"].shape[0]))
    if kind == "Transf_cls" and "transformer.pos_embed" in fusion_state:
        frames = int(fusion_state["transformer.pos_embed"].shape[1]) - 1
    model = ActionCLIPModel(backbone, fusion=kind, frames=frames or 8, templates=templates, fusion_args=args)
    attach_fusion(model, kind, fusion_state, fusion_source)
    return model.eval()


def convert_mmaction2(checkpoint: PathLike, *, frames: int | None = None,
                      templates: str = "actionclip") -> ActionCLIPModel:
    """MMAction2's ``projects/actionclip`` checkpoint (``clip.*`` + ``adapter.*``) -> model.

    The adapter is 'Transf' with num_segs position rows and standard LayerNorm (eps 1e-5).
    """
    obj = read_checkpoint(checkpoint)
    state = strip_prefix(section(obj, "state_dict", checkpoint), "module.")
    clip_state = {k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.")}
    adapter = {k[len("adapter."):]: v for k, v in state.items() if k.startswith("adapter.")}
    other = [k for k in state if not k.startswith(("clip.", "adapter."))]
    if other:
        raise ModelError(f"{checkpoint}: unknown key '{other[0]}' (expected clip.* and adapter.*)")
    if "frame_position_embeddings.weight" not in adapter:
        raise ModelError(f"{checkpoint}: missing key 'adapter.frame_position_embeddings.weight'")
    backbone = build_backbone(clip_state, checkpoint)
    args = fusion_arguments("Transf", adapter, int(clip_state["ln_final.weight"].shape[0]))
    args["layer_norm_eps"] = 1e-5
    num_segs = args["max_frames"]
    model = ActionCLIPModel(backbone, fusion="Transf", frames=frames or num_segs, templates=templates,
                            fusion_args=args)
    attach_fusion(model, "Transf", adapter, checkpoint)
    return model.eval()
