"""CLIP backbones and the video models built on them."""

from .backbone import ClipBackbone, list_models, list_pretrained, load_backbone
from .video_encoder import MeanPoolVideoEncoder
from .loading import load_model
from .zero_shot import VideoTextModel

__all__ = ["ClipBackbone", "MeanPoolVideoEncoder", "VideoTextModel", "list_models", "list_pretrained",
           "load_backbone", "load_model"]
