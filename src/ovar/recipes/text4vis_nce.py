"""Text4Vis's ``train_nce.py`` baseline: both towers trained with a video-text contrastive loss.

It is ActionCLIP's training with Text4Vis's prompt, augmentation and test procedure; the
loss is ``recipe.loss``: ``nce`` (ActionCLIP's symmetric KL), ``ds`` (dual-softmax
re-weighted) or ``ce`` (one positive per row), over the batch of every process.
``recipe.fix_text`` freezes the text tower (the original's ``fix_text``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


from ..config import rule
from .actionclip import ActionCLIPOptions, ActionCLIPRecipe
from ..train.recipe import Trainable
from .video_data import Augment


@dataclass
class Text4VisNCEOptions(ActionCLIPOptions):
    """``recipe.*`` keys: ActionCLIP's, with Text4Vis's prompt, plus the loss and ``fix_text``."""

    templates: str = "text4vis"
    loss: str = field(default="nce", metadata=rule(choices=("nce", "ds", "ce")))
    fix_text: bool = False
    rand_augment: tuple[int, int] | None = field(default=(2, 9), metadata=rule(low=0))


class Text4VisNCERecipe(ActionCLIPRecipe):
    original = "text4vis"  # test scale and test frames
    # Text4Vis averages the views' video features, then scores; the model it builds carries
    # the rule (ActionCLIPModel's own is mean_softmax), so predict fuses as evaluation does.
    view_fusion = "features"
    few_shot_epoch = "full"
    options_class = Text4VisNCEOptions

    def __init__(self, config) -> None:
        super().__init__(config)
        self.loss_mode = self.opts.loss

    def augment(self, image_size: int) -> Augment:
        ra = tuple(self.opts.rand_augment) if self.opts.rand_augment else None
        return Augment(short_side_ratio=256 / 224, flip=0.5, grayscale=0.2, rand_augment=ra)

    def trainable(self) -> list[Trainable]:
        # ActionCLIP's groups; with fix_text the text group (text tower, embeddings and
        # logit scale) is left out, so it stays frozen.
        groups = super().trainable()
        return [g for g in groups if g.name != "text"] if self.opts.fix_text else groups
