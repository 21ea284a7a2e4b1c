"""EVL (Frozen CLIP models are Efficient Video Learners): frozen CLIP + temporal decoder + linear head.

Importing this package registers the ``evl`` model-file kind.
"""

from .backbone import BlockFeatures, FrozenClipBlocks
from .decoder import EVLDecoder, TemporalCrossAttention, relative_position_index
from .model import EVLModel, EVLVideoEncoder

__all__ = ["BlockFeatures", "EVLDecoder", "EVLModel", "EVLVideoEncoder", "FrozenClipBlocks",
           "TemporalCrossAttention", "relative_position_index"]
