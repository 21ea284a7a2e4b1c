"""ovar: open-vocabulary action recognition with CLIP.

``ovar.predict(video, labels)`` classifies videos against free-text action names;
``ovar.load_model`` and ``ovar.load_backbone`` build the models behind it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import LabelError, ModelError, OvarError, VideoDecodeError

__version__ = "0.1.0"

# Heavy modules (torch, open_clip) load on first use, so `ovar --help` stays fast.
_LAZY = {
    "predict": "ovar.inference.api",
    "VideoPrediction": "ovar.inference.results",
    "LabelScore": "ovar.inference.results",
    "load_model": "ovar.models.loading",
    "VideoTextModel": "ovar.models.zero_shot",
    "load_backbone": "ovar.models.backbone",
    "list_models": "ovar.models.backbone",
    "build_classifier": "ovar.text.classifier",
    "open_video": "ovar.video",
}

__all__ = ["LabelError", "ModelError", "OvarError", "VideoDecodeError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ovar' has no attribute '{name}'")
