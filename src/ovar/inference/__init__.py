"""Zero-shot prediction over videos, frame folders and folders of videos."""

from .api import predict
from .inputs import expand_inputs
from .results import LabelScore, SegmentPrediction, VideoPrediction

__all__ = ["LabelScore", "SegmentPrediction", "VideoPrediction", "expand_inputs", "predict"]
