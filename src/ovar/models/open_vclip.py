"""Open-VCLIP and FROSTER models: CLIP with expanded temporal view attention.

Every frame goes through the image tower, whose blocks attend to neighbouring frames
(:mod:`ovar.models.temporal.expand_view`); the per-frame embeddings are L2-normalised and
averaged (not re-normalised), and the logits are the *unclamped* ``exp(logit_scale)``
times the dot product with the unit class embeddings — the same as averaging the
per-frame logits. FROSTER's model is the same network with its own 29 templates and
class descriptions.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ClipBackbone
from .temporal.expand_view import VARIANTS, install_expanded_view, set_frames
from .zero_shot import VideoTextModel


class ExpandedViewVideoEncoder(nn.Module):
    """(B, T, 3, S, S) -> (B, E): mean of unit per-frame embeddings of a temporal image tower.

    ``temporal="none"`` leaves the image tower per-frame (plain CLIP).
    """

    def __init__(self, backbone: ClipBackbone, temporal: str = "expand_temporal_view") -> None:
        super().__init__()
        if temporal != "none" and temporal not in VARIANTS:
            raise ValueError(f"unknown temporal modelling '{temporal}' (choose from none, {', '.join(VARIANTS)})")
        self.backbone = backbone
        self.temporal = temporal
        blocks = backbone.clip.visual.transformer.resblocks
        self._attention = [] if temporal == "none" else install_expanded_view(blocks, temporal)

    def frame_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B*T, E) per-frame embeddings, not normalised, video-major."""
        set_frames(self._attention, video.shape[1])
        return self.backbone.encode_image(video.flatten(0, 1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch, frames = video.shape[:2]
        frames_unit = F.normalize(self.frame_embeddings(video).float(), dim=-1)
        return frames_unit.view(batch, frames, -1).mean(dim=1)


class OpenVCLIPModel(VideoTextModel):
    """Open-VCLIP at test time (and the network FROSTER trains).

    Views: the original's sum of per-view logits (``sum_logits``).
    """

    kind = "open_vclip"
    view_fusion = "sum_logits"  # the original's rule, exactly

    def __init__(self, backbone: ClipBackbone, *, frames: int = 8, templates: str | Sequence[str] = "open_vclip",
                 temporal: str = "expand_temporal_view") -> None:
        super().__init__(backbone, ExpandedViewVideoEncoder(backbone, temporal), frames=frames, templates=templates)
        self.temporal = temporal

    @property
    def build_args(self) -> dict:
        templates = self.templates if isinstance(self.templates, str) else list(self.templates)
        return {"frames": self.frames, "templates": templates, "temporal": self.temporal}

    def frame_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B*T, E) per-frame embeddings (not normalised)."""
        return self.video_encoder.frame_embeddings(video)

    def logits(self, video_embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, E) mean unit frame embeddings x (C, E) -> (B, C); no re-normalisation, no clamp."""
        return self.backbone.logit_scale.float() * video_embeddings.float() @ classifier.float().t()

    def forward(self, video: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S) clips x (C, E) unit class embeddings -> (B, C) logits."""
        return self.logits(self.encode_video(video), classifier)


class FrosterModel(OpenVCLIPModel):
    """FROSTER at test time: Open-VCLIP's network with a fine-tuned text tower, prompted
    with 29 templates (the 29th is the description alone) and ``"Name: description"``
    class texts when descriptions are given."""

    kind = "froster"

    def __init__(self, backbone: ClipBackbone, *, frames: int = 8, templates: str | Sequence[str] = "froster",
                 temporal: str = "expand_temporal_view") -> None:
        super().__init__(backbone, frames=frames, templates=templates, temporal=temporal)
