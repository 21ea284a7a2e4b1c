"""EVL: a temporal decoder + linear head trained on a frozen CLIP image tower.

Recipe (spec §1.2-1.3): dense sampling, RandAugment with one set of op parameters per clip
and a random resized crop, no flip; AdamW on the decoder and head only, cosine schedule
without warm-up (see ``configs/evl/k400.yaml``); cross-entropy on the head; evaluation
fuses views by the mean of per-view softmax.

Because the backbone is frozen, ``recipe.cache`` can store its features on disk: epoch
``e`` then uses the fixed augmented view ``e mod views`` of every video (seeded by the
video index and the view), the first epoch of each view fills the cache and later epochs
read features instead of decoding and encoding video.  ``recipe.fixed_views`` gives the
same view schedule without a cache (the two train identically).  The cache is opened by
:meth:`EVLRecipe.prepare`, which the engine calls once the model holds the weights it
starts from (after ``run.resume``): the cache's key is taken from those weights, and the
cache lives on the training set (``FixedViewDataset.cache``), which the trainer module
holds (``EVLTrainer.train_set``) to store the features it computes.

``recipe.finetune_backbone`` (the original's ``--finetune_backbone``) trains the image
tower too, in the decoder's optimiser at ``optim.lr`` x ``recipe.backbone_lr_scale`` (1: the
original's single AdamW group); training then runs from clips and never uses the cache.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..config import ConfigError, rule
from ..models.evl import EVLModel
from ..models.evl.backbone import USED_PREFIXES as TOWER_USED
from ..models.evl.feature_cache import FeatureCache, FeatureLayout, estimate_bytes, weights_fingerprint
from ..train.distributed import unwrap
from ..train.recipe import Trainable
from ..video.clip_augment import check_rand_augment_spec
from .clip_recipe import ClipVideoRecipe
from .video_data import Augment

TOWER = "model.backbone.clip.visual."  # the image tower's parameter names in the recipe's model

@dataclass
class CacheOptions:
    """``recipe.cache.*``: the frozen-feature cache."""

    enabled: bool = False
    dir: str | None = None  # default: <run.out_dir>/feature_cache
    # Augmented views stored per video; epoch e uses view e mod views.
    views: int = field(default=1, metadata=rule(low=1))
    max_gb: float = field(default=100.0, metadata=rule(low=0))  # caching is off (with a warning) above this estimate
    dtype: str = field(default="float16", metadata=rule(choices=("float16", "float32")))  # float32: bit-comparable


@dataclass
class EVLOptions:
    """``recipe.*`` keys of EVL."""

    num_layers: int = field(default=4, metadata=rule(low=1))
    flip: bool = False  # the original never flips
    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"  # timm RandAugment spec, as released; null: none
    tsn_sampling: bool = False  # train on one random frame per segment (test stays data.sampling)
    finetune_backbone: bool = False  # train the image tower too (no feature cache then)
    # The image tower's lr as a multiple of optim.lr (the original: one group, 1).
    backbone_lr_scale: float = field(default=1.0, metadata=rule(above=0))
    # >0: epoch e uses the seeded view e mod fixed_views (no cache needed).
    fixed_views: int = field(default=0, metadata=rule(low=0))
    cache: CacheOptions = field(default_factory=CacheOptions)


class EVLTrainer(nn.Module):
    """Wraps the model so one forward (and one DDP call) starts from packed backbone features."""

    def __init__(self, model: EVLModel, layout: FeatureLayout, from_clips: bool = False) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.from_clips = from_clips  # a trained backbone: the forward starts from the clips
        # The training set whose feature cache the training steps fill (set by
        # EVLRecipe.prepare when the cache is open); a plain attribute: never saved.
        self.train_set: FixedViewDataset | None = None

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        if self.from_clips:
            return self.model(packed)
        return self.model.forward_from_features(self.layout.unpack(packed))


class FixedViewDataset(Dataset):
    """Epoch ``e`` -> view ``e mod views`` of every video, from the cache when that view is complete.

    A video item's augmentation is seeded by (data.seed, view, index): the base dataset is
    asked for "epoch" ``view``.  Cached items carry their packed features in the ``video``
    slot, shape (elements,), so the engine's collate stacks them like clips, and say so
    with ``"packed": True`` (the batch's ``packed`` flag).
    """

    def __init__(self, base: Dataset, views: int) -> None:
        self.base, self.views = base, views
        self.cache: FeatureCache | None = None
        self.epoch = 0
        self._tried: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def view_of(self, epoch: int) -> int:
        return epoch % self.views

    def cached(self, view: int, epoch: int) -> bool:
        if self.cache is None:
            return False
        if self.cache.complete(view):
            return True
        if self._tried != (view, epoch):  # merge the journals once per epoch, not per item
            self._tried = (view, epoch)
            return self.cache.finalize(view)
        return False

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = (int(key[0]), operator.index(key[1])) if isinstance(key, tuple) else (self.epoch, key)
        view = self.view_of(epoch)
        if self.cached(view, epoch):
            features, label = self.cache.read(view, index)
            return {"video": features, "label": label, "index": index, "failures": [], "fatal": None,
                    "packed": True}
        item = self.base[(view, index)]
        item["index"] = index  # the cache slot, even when a bad video was replaced
        return item


class EVLRecipe(ClipVideoRecipe):
    model_class = EVLModel
    original = "evl"
    options_class: type = EVLOptions
    def __init__(self, config) -> None:
        super().__init__(config)
        self.opts = self.options(self.options_class)
        if self.opts.rand_augment is not None:
            try:
                check_rand_augment_spec(self.opts.rand_augment)
            except ValueError as exc:
                raise ConfigError(f"recipe.rand_augment: {exc}") from None
        if self.opts.finetune_backbone and self.opts.cache.enabled:
            raise ConfigError("recipe.finetune_backbone=true trains the image tower, so its features cannot be "
                              "cached: set recipe.cache.enabled=false")

    def augment(self, image_size: int) -> Augment:
        return Augment(random_resized_crop=True, scale=(0.08, 1.0), flip=0.5 if self.opts.flip else 0.0,
                       timm_rand_augment=self.opts.rand_augment)

    def train_sampling(self) -> str | None:
        # --tsn_sampling: TSN segments in training only, as the original (its eval stays dense).
        return f"segment:{self.config.data.frames}" if self.opts.tsn_sampling else None

    def build_model(self) -> nn.Module:
        model = EVLModel(self.backbone(), class_names=self.class_names, num_frames=self.config.data.frames,
                         num_layers=self.opts.num_layers)
        model.video_encoder.backbone.trainable = self.opts.finetune_backbone
        return self.with_trainable(EVLTrainer(model, self.layout(model), from_clips=self.opts.finetune_backbone))

    def layout(self, model: EVLModel) -> FeatureLayout:
        blocks = model.video_encoder.backbone
        heads = blocks.visual.transformer.resblocks[0].attn.num_heads
        return FeatureLayout(blocks.num_blocks, self.config.data.frames, blocks.tokens, blocks.width, heads)

    def trainable(self) -> list[Trainable]:
        # Only the decoder and head train; the CLIP towers stay frozen.  wd on every
        # trainable parameter, as released (norms, biases and the query included).  With
        # recipe.finetune_backbone the image tower's weights that reach the decoder (not
        # ln_post/proj, nor the text tower) train too, in a group of their own.
        groups = [Trainable("decoder", ("model.video_encoder.decoder.", "model.head."), decay_rule="all")]
        if self.opts.finetune_backbone:
            groups.append(Trainable("backbone", tuple(f"{TOWER}{name}" for name in TOWER_USED),
                                    lr_scale=self.opts.backbone_lr_scale, decay_rule="all"))
        return groups

    def train_dataset(self, model: nn.Module) -> Dataset:
        base = super().train_dataset(model)
        views = self.opts.cache.views if self.opts.cache.enabled else self.opts.fixed_views
        if not views:
            return base  # the original: fresh augmentation every epoch
        return FixedViewDataset(base, views)

    def prepare(self, model: nn.Module, train_set: Dataset) -> None:
        """Open the feature cache on ``train_set`` (when ``recipe.cache.enabled``) and hand it
        to the trainer ``model``.  Its key holds the image tower's weights as they are now,
        so the engine calls this after ``run.resume`` has loaded them: a checkpoint of
        another backbone gets a cache of its own, never features of other weights."""
        opts = self.opts.cache
        if not opts.enabled or not isinstance(train_set, FixedViewDataset):
            return
        trainer = unwrap(model)
        size = estimate_bytes(len(train_set), opts.views, trainer.layout, opts.dtype)
        if size > opts.max_gb * 1e9:
            warnings.warn(f"EVL feature cache disabled: it would take {size / 1e9:.1f} GB, over "
                          f"recipe.cache.max_gb={opts.max_gb}; training uses the same views without it")
            return
        train_set.cache = FeatureCache(opts.dir or Path(self.config.run.out_dir) / "feature_cache",
                                       self._cache_key(trainer.model), trainer.layout, len(train_set), opts.views,
                                       opts.dtype)
        trainer.train_set = train_set

    def _cache_key(self, model: EVLModel) -> dict[str, Any]:
        """Everything the cached features of ``model`` depend on; any change gives a new cache directory."""
        data, meta = self.config.data, model.backbone
        train_list = Path(data.train_list)
        return {"backbone": weights_fingerprint(model.video_encoder.backbone.visual),
                "frames": data.frames, "sampling": self.train_sampling() or data.sampling, "seed": data.seed,
                "shot": data.shot,
                "root": str(data.root), "list": train_list.read_bytes().hex() if train_list.stat().st_size < 1 << 20
                else f"{train_list.resolve()}:{train_list.stat().st_mtime_ns}",
                "image_size": meta.image_size, "mean": list(meta.mean), "std": list(meta.std),
                "augment": repr(self.augment(meta.image_size))}

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        video = batch["video"]
        if self.opts.finetune_backbone:  # gradients reach the image tower: no packed features
            return {"loss": F.cross_entropy(model(video), batch["label"])}
        if batch.get("packed"):  # features read from the cache
            packed = video
        else:
            trainer = unwrap(model)  # the features come from outside DDP's forward: no gradient
            with torch.no_grad():
                packed = trainer.layout.pack(trainer.model.video_encoder.block_features(video))
            _store(trainer.train_set, batch, packed)
        return {"loss": F.cross_entropy(model(packed), batch["label"])}

    @torch.no_grad()
    def evaluate_batch(self, eval_model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # EVL: softmax per view, then the mean over the views (mean_softmax); every head row.
        rows = torch.arange(len(self.class_names), device=batch["video"].device)
        return self.score_batch(eval_model, batch["video"], rows), batch["label"]

    @torch.no_grad()
    def build_cache(self, batch_size: int = 8, device: str | torch.device = "cpu") -> FeatureCache:
        """Fill every view of the cache ahead of training (``ovar cache build``)."""
        torch.manual_seed(self.config.run.seed)  # the engine builds the model from the same seed
        trainer = self.build_model().to(device)
        dataset = self.train_dataset(trainer)
        self.prepare(trainer, dataset)
        cache = trainer.train_set.cache if trainer.train_set is not None else None
        if cache is None:
            raise RuntimeError("the feature cache is not enabled (recipe.cache.enabled=true) or is over max_gb")
        for view in range(cache.views):
            if cache.complete(view):
                continue
            for start in range(0, len(dataset), batch_size):
                items = [dataset.base[(view, i)] for i in range(start, min(start + batch_size, len(dataset)))]
                video = torch.stack([it["video"] for it in items]).to(device)
                packed = trainer.layout.pack(trainer.model.video_encoder.block_features(video))
                cache.writer(view, _rank()).write(range(start, start + len(items)),
                                                  [it["label"] for it in items], packed)
            if not cache.finalize(view):
                raise RuntimeError(f"feature cache view {view} is incomplete after building")
        return cache


def _store(train_set: FixedViewDataset | None, batch: dict[str, Any], packed: torch.Tensor) -> None:
    """Write a batch's features to ``train_set``'s cache while its current view is incomplete."""
    cache = train_set.cache if train_set is not None else None
    if cache is None:
        return
    view = train_set.view_of(train_set.epoch)
    if not cache.complete(view):
        cache.writer(view, _rank()).write(batch["index"].tolist(), batch["label"].tolist(), packed)


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
