"""Open-VCLIP and FROSTER checkpoints (``{'model_state': {'model.<clip key>', ...}}``) -> models.

Both originals keep the whole CLIP under ``model.`` with OpenAI's key names (expanded
view attention adds no keys). FROSTER adds ``projector_{v,t}.*`` (training-only; not
part of the inference model) and, in raw training checkpoints, a frozen ``raw_model.*``
copy of CLIP (ignored).

Open-VCLIP's classifier comes from the *original* CLIP's text tower (built when the
model is constructed; loading the checkpoint does not change it), so with ``clip`` the
converted model takes its text tower from that file. FROSTER trains its text tower, so
it is taken from the checkpoint.
"""

from __future__ import annotations

import torch

from ...errors import ModelError
from ..open_vclip import FrosterModel, OpenVCLIPModel
from ..weights_io import OPENAI_METADATA_KEYS, read_weights
from ..mixing import check_ratio, mix
from .actionclip import PathLike, build_backbone, read_checkpoint, section, strip_prefix

PREFIX = "model."
EXTRA_PREFIXES = ("projector_", "raw_model.")  # FROSTER's training-only parts


def read_model_state(checkpoint: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(clip_state, extras)`` of an original checkpoint: the CLIP keys with ``model.``
    removed, and the other keys (projectors, raw_model) as they are."""
    state = strip_prefix(section(read_checkpoint(checkpoint), "model_state", checkpoint), "module.")
    clip = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    extras = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    unknown = [k for k in extras if not k.startswith(EXTRA_PREFIXES)]
    if unknown:
        raise ModelError(f"{checkpoint}: unknown key '{unknown[0]}' (expected model.*, projector_*, raw_model.*)")
    if "visual.conv1.weight" not in clip:
        raise ModelError(f"{checkpoint}: no CLIP weights under 'model.' (is this an Open-VCLIP/FROSTER checkpoint?)")
    return clip, extras


def patch_state(state: dict[str, torch.Tensor], clip: dict[str, torch.Tensor], ratio: float,
                path: PathLike) -> dict[str, torch.Tensor]:
    """Test-time patching: every CLIP tensor -> ``ratio * clip + (1 - ratio) * state``."""
    out = dict(state)
    for key, value in clip.items():
        if key in OPENAI_METADATA_KEYS or key.endswith("attn_mask"):
            continue
        if key not in state:
            raise ModelError(f"{path}: checkpoint has no '{PREFIX}{key}' to patch with the CLIP file")
        if state[key].shape != value.shape:
            raise ModelError(f"{path}: '{PREFIX}{key}' has shape {tuple(state[key].shape)}, the CLIP file "
                             f"{tuple(value.shape)}")
        out[key] = mix(value.float(), state[key].float(), ratio, key)
    return out


def _convert(cls: type[OpenVCLIPModel], checkpoint: PathLike, clip: PathLike | None, *, frames: int | None,
             templates: str | None, temporal: str, patch_ratio: float | None, text_from_clip: bool) -> OpenVCLIPModel:
    state, _ = read_model_state(checkpoint)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    clip_state = None
    if clip is not None:
        clip_state, _ = read_weights(clip)
        clip_state = {k: v for k, v in clip_state.items() if k not in OPENAI_METADATA_KEYS and not k.endswith("attn_mask")}
    if patch_ratio is not None:
        if clip_state is None:
            raise ModelError(f"{checkpoint}: patching (ratio {patch_ratio}) needs the original CLIP file (--clip)")
        check_ratio(patch_ratio, "patch ratio")
        state = patch_state(state, clip_state, patch_ratio, checkpoint)
    if text_from_clip and clip_state is not None:
        # The original's classifier is the original CLIP's: its text tower stays as loaded.
        text = {k: v for k, v in clip_state.items() if not k.startswith("visual.") and k != "logit_scale"}
        missing = [k for k in state if not k.startswith("visual.") and k != "logit_scale" and k not in text]
        if missing:
            raise ModelError(f"{clip}: CLIP file has no '{missing[0]}' (does it match the checkpoint?)")
        state.update(text)
    backbone = build_backbone(state, checkpoint)
    kwargs = {"frames": frames or 8, "temporal": temporal}
    if templates is not None:
        kwargs["templates"] = templates
    return cls(backbone, **kwargs).eval()


def convert_open_vclip(checkpoint: PathLike, clip: PathLike | None = None, *, frames: int | None = None,
                       templates: str | None = None, temporal: str = "expand_temporal_view",
                       patch_ratio: float | None = None) -> OpenVCLIPModel:
    """An Open-VCLIP checkpoint (e.g. ``swa_2_22.pth``) as an :class:`OpenVCLIPModel`.

    ``clip``: the original CLIP file; its text tower builds the classifier, as in the
    original (without it, the checkpoint's own text tower is used: the same weights in
    released runs, whose text tower is never trained). ``patch_ratio``: interpolate every
    CLIP tensor towards ``clip`` (the released evaluation uses 0.5).
    """
    return _convert(OpenVCLIPModel, checkpoint, clip, frames=frames, templates=templates, temporal=temporal,
                    patch_ratio=patch_ratio, text_from_clip=True)


def convert_froster(checkpoint: PathLike, clip: PathLike | None = None, *, frames: int | None = None,
                    templates: str | None = None, temporal: str = "expand_temporal_view",
                    patch_ratio: float | None = None) -> FrosterModel:
    """A FROSTER checkpoint as a :class:`FrosterModel` (text tower from the checkpoint).

    ``clip`` is only needed for ``patch_ratio`` (FROSTER's own evaluation uses none).
    """
    return _convert(FrosterModel, checkpoint, clip, frames=frames, templates=templates, temporal=temporal,
                    patch_ratio=patch_ratio, text_from_clip=False)


def read_projectors(checkpoint: PathLike) -> dict[str, torch.Tensor]:
    """FROSTER's ``projector_v.*``/``projector_t.*`` weights of an original checkpoint."""
    _, extras = read_model_state(checkpoint)
    return {k: v.float() for k, v in extras.items() if k.startswith("projector_")}
