"""EVL checkpoints (``{'model': {'module.decoder.*', 'module.proj.*'}}``) + a CLIP file -> EVLModel.

The original checkpoint holds no backbone (it is frozen and kept out of the state dict),
so the CLIP file the model was trained on is required. Every size is read from the
tensors. The decoder's head count is not recorded by any shape: it is taken from EVL's
released presets when the decoder matches one (width 768: 12 heads, 1024: 16), and must be
given otherwise (a wrong count loads without error but changes every score).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ...errors import ModelError
from ..evl import EVLModel
from ..weights_io import load_exact, read_weights
from .actionclip import PathLike, build_backbone, read_checkpoint, section, strip_prefix

_PREFIXES = {"decoder.": "video_encoder.decoder.", "proj.": "head."}
# EVL's released decoders: {width (= qkv dim): attention heads} (ViT-B/16, ViT-L/14).
_PRESET_HEADS = {768: 12, 1024: 16}


def convert_evl(checkpoint: PathLike, clip: PathLike | None, *, num_heads: int | None = None,
                class_names: Sequence[str] | None = None, frames: int | None = None) -> EVLModel:
    """The released decoder/head from ``checkpoint`` on the frozen image tower of ``clip``.

    ``class_names`` label the head rows (default ``class_0``, ``class_1``, ...). ``frames``
    is read from the temporal position embedding; pass it only for checkpoints without one.
    """
    if num_heads is not None and num_heads < 1:
        raise ModelError(f"the decoder needs at least one attention head, got {num_heads}")
    if clip is None:
        raise ModelError(f"{checkpoint}: EVL checkpoints hold no backbone; pass the original CLIP weights with --clip")
    state = strip_prefix(section(read_checkpoint(checkpoint), "model", checkpoint), "module.")
    unknown = [k for k in state if not k.startswith(tuple(_PREFIXES))]
    if unknown:
        raise ModelError(f"{checkpoint}: unknown key '{unknown[0]}' (expected decoder.*, proj.*)")
    if "proj.2.weight" not in state or "decoder.cls_token" not in state:
        raise ModelError(f"{checkpoint}: not an EVL checkpoint (missing decoder.cls_token or proj.2.weight)")
    state = {k: v.float() for k, v in state.items()}
    width, args = _arguments(state, checkpoint, num_heads)
    if frames is not None:
        if args["temporal_pos_embed"] and frames != args["num_frames"]:
            raise ModelError(f"{checkpoint}: the model was trained on {args['num_frames']} frames, not {frames}")
        args["num_frames"] = frames
    num_classes = int(state["proj.2.weight"].shape[0])
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ModelError(f"{checkpoint}: the head has {num_classes} classes but {len(names)} class names were given")
    clip_state, _ = read_weights(clip)
    backbone = build_backbone(clip_state, clip)
    if int(backbone.clip.visual.class_embedding.shape[-1]) != width:
        raise ModelError(f"{checkpoint}: decoder width {width} does not match the CLIP image "
                         f"tower of {clip} (width {backbone.clip.visual.class_embedding.shape[-1]})")
    if args["num_layers"] > len(backbone.clip.visual.transformer.resblocks):
        raise ModelError(f"{checkpoint}: {args['num_layers']} decoder layers but {clip} has only "
                         f"{len(backbone.clip.visual.transformer.resblocks)} blocks")
    model = EVLModel(backbone, class_names=names, **args)
    renamed = {}
    for key, value in state.items():
        prefix = next(p for p in _PREFIXES if key.startswith(p))
        renamed[_PREFIXES[prefix] + key[len(prefix):]] = value
    # The backbone's own (already loaded) weights complete the dict for a strict, checked load.
    frozen = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(_PREFIXES.values()))}
    load_exact(model, {**frozen, **renamed}, checkpoint, "EVL")
    return model.eval()


def _preset_heads(width: int, qkv_dim: int, checkpoint: PathLike) -> int:
    """The head count of EVL's released decoder of this size; refused for any other size."""
    if qkv_dim == width and width in _PRESET_HEADS:
        return _PRESET_HEADS[width]
    raise ModelError(f"{checkpoint}: cannot tell the decoder's attention heads from the checkpoint (width "
                     f"{width}, qkv width {qkv_dim} match no released EVL preset); give them when converting: "
                     f"`ovar convert --from evl --heads N` (num_heads=N)")


def _arguments(state: dict[str, torch.Tensor], checkpoint: PathLike, num_heads: int | None) -> tuple[int, dict]:
    """The decoder width and EVLModel arguments, from tensor shapes and which optional modules exist."""
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("decoder.decoder_layers.")})
    if not layers or layers != list(range(len(layers))):
        raise ModelError(f"{checkpoint}: no decoder layers found (decoder.decoder_layers.<i>.*)")
    width = int(state["decoder.cls_token"].shape[-1])
    qkv_dim = int(state["decoder.decoder_layers.0.attn.q_proj.weight"].shape[0])
    hidden = int(state["decoder.decoder_layers.0.mlp.fc1.weight"].shape[0])
    pos = state.get("decoder.temporal_pos_embed.0")
    heads = num_heads or _preset_heads(width, qkv_dim, checkpoint)
    if qkv_dim % heads:
        raise ModelError(f"{checkpoint}: decoder qkv width {qkv_dim} is not divisible by {heads} heads")
    return width, {
        "num_layers": len(layers), "num_frames": int(pos.shape[0]) if pos is not None else 8,
        "num_heads": heads, "qkv_dim": qkv_dim, "mlp_factor": hidden / width,
        "temporal_conv": "decoder.temporal_conv.0.weight" in state,
        "temporal_pos_embed": pos is not None,
        "temporal_cross_attention": "decoder.cross_attention.0.w1" in state,
    }
