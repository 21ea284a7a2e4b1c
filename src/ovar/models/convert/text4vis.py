"""Text4Vis checkpoints (``visual.*`` + ``fusion_model.*`` + ``logit_scale``) -> Text4VisModel.

The checkpoint holds no text tower: the classifier comes from the original CLIP file
(``clip``), whose text tower stays frozen.
"""

from __future__ import annotations

from ...errors import ModelError
from ..text4vis import Text4VisModel
from ..weights_io import load_exact, read_weights
from .actionclip import (PathLike, attach_fusion, build_backbone, fusion_arguments, infer_fusion,
                         read_checkpoint, section)


def convert_text4vis(checkpoint: PathLike, clip: PathLike | None, *, fusion: str | None = None,
                     frames: int | None = None, templates: str = "text4vis") -> Text4VisModel:
    """Fine-tuned image tower and fusion from ``checkpoint``, text tower from ``clip``."""
    if clip is None:
        raise ModelError(f"{checkpoint}: Text4Vis checkpoints hold no text tower; pass the original CLIP "
                         f"weights with --clip")
    obj = read_checkpoint(checkpoint)
    # The original loader removes every 'module.' from the keys, wherever it appears.
    state = {k.replace("module.", ""): v for k, v in section(obj, "model_state_dict", checkpoint).items()}
    unknown = [k for k in state if not k.startswith(("visual.", "fusion_model.")) and k != "logit_scale"]
    if unknown:
        raise ModelError(f"{checkpoint}: unknown key '{unknown[0]}' (expected visual.*, fusion_model.*, logit_scale)")
    clip_state, _ = read_weights(clip)
    backbone = build_backbone(clip_state, clip)
    visual = {k[len("visual."):]: v.float() for k, v in state.items() if k.startswith("visual.")}
    load_exact(backbone.clip.visual, visual, checkpoint, "image-tower")
    if "logit_scale" in state:
        backbone.clip.logit_scale.data.copy_(state["logit_scale"].float().reshape(backbone.clip.logit_scale.shape))
    fusion_state = {k[len("fusion_model."):]: v for k, v in state.items() if k.startswith("fusion_model.")}
    try:
        kind = fusion or infer_fusion(fusion_state)
    except ModelError as exc:
        raise ModelError(f"{checkpoint}: {exc}") from None
    args = fusion_arguments(kind, fusion_state, int(clip_state["ln_final.weight"].shape[0]))
    model = Text4VisModel(backbone, fusion=kind, frames=frames or 8, templates=templates, fusion_args=args)
    attach_fusion(model, kind, fusion_state, checkpoint)
    return model.eval()
