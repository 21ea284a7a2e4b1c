"""A video encoder that fuses raw per-frame CLIP features with a temporal module."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .backbone import ClipBackbone
from .temporal import build_fusion
from .zero_shot import VideoTextModel


class FusionVideoEncoder(nn.Module):
    """Frames through ``backbone.encode_image`` -> (B, T, E) raw features -> ``fusion`` -> (B, E).

    Unlike the zero-shot mean pool, the frame features are *not* normalised before fusion
    (ActionCLIP and Text4Vis fuse the projected features as they come).
    """

    def __init__(self, backbone: ClipBackbone, fusion: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) normalised frames -> (B, T, E) image embeddings."""
        batch, frames = video.shape[:2]
        return self.backbone.encode_image(video.flatten(0, 1)).view(batch, frames, -1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, E) video embeddings (not normalised)."""
        return self.fusion(self.frame_features(video))


class FusedVideoTextModel(VideoTextModel):
    """A :class:`VideoTextModel` whose video encoder is CLIP frames + a fusion module.

    ``fusion_args`` are the typed arguments of :func:`~ovar.models.temporal.build_fusion`;
    ``build_args`` records what is needed to rebuild the model from a model file.
    """

    def __init__(self, backbone: ClipBackbone, *, fusion: str = "Transf", frames: int = 8,
                 templates: str | Sequence[str] = "open_vclip", fusion_args: dict[str, Any] | None = None) -> None:
        fusion_args = dict(fusion_args or {})
        if fusion == "Transf" and "heads" not in fusion_args:
            # The originals size the fusion heads by CLIP's text width: 8 for B models, 12 for L/14.
            fusion_args["heads"] = max(1, int(backbone.clip.ln_final.weight.shape[0]) // 64)
        module = build_fusion(fusion, backbone.embed_dim, frames=frames, **fusion_args)
        super().__init__(backbone, FusionVideoEncoder(backbone, module), frames=frames, templates=templates)
        self.fusion_type = fusion
        self.build_args = {"fusion": fusion, "frames": frames, "fusion_args": fusion_args,
                           "templates": templates if isinstance(templates, str) else list(templates)}

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, T, E) per-frame embeddings before fusion."""
        return self.video_encoder.frame_features(clips)
