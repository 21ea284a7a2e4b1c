"""Datasets of a video recipe, built from the ``data``/``eval`` sections of a config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from ..config import Config, ConfigError
from ..data.dataset import VideoDataset
from ..data.lists import read_list
from ..data.subsets import k_shot
from ..video import build_train_transform, parse_sampling, parse_views
from ..video.eval_scale import original_eval_transform, segment_position


@dataclass(frozen=True)
class Augment:
    """A recipe's training augmentation (see :class:`ovar.video.transforms.TrainTransform`)."""

    random_resized_crop: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    flip: float = 0.5
    rand_augment: tuple[int, int] | None = None
    jitter: tuple[int, int] | None = None
    short_side_ratio: float | None = None  # resize the short side to ratio x crop size first
    grayscale: float = 0.0
    interpolation: str = "bilinear"
    multi_scale_crop: tuple[float, ...] | None = None  # TSN MultiScaleCrop scales (fixed crop positions)
    color_jitter: tuple[float, float, float, float, float] | None = None  # (p, brightness, contrast, saturation, hue)
    timm_rand_augment: str | None = None  # a timm RandAugment spec, e.g. "rand-m7-n4-mstd0.5-inc1"


def class_names(config: Config) -> list[str]:
    """``data.classes``: a class-list file, or the name of a bundled list (``k400``, ``ucf101``...)."""
    from ..data import splits

    source = config.data.classes
    if not source:
        raise ConfigError("data.classes: a class list is required (id,name CSV, JSON or one name per line)")
    return splits.read_classes(source)


def few_shot_repeats(rule: str, num_full: int, shot: int, num_classes: int) -> int:
    """How many times a K-shot list is read per epoch: ``⌊N_full / (K·C)⌋`` under the
    ``"full"`` rule (Text4Vis: an epoch as long as the full set), else once."""
    if rule == "subset":
        return 1
    if rule != "full":
        raise ConfigError(f"data.shot_epoch: expected 'full' or 'subset', got {rule!r}")
    return max(1, num_full // (shot * num_classes))


def train_dataset(config: Config, image_size: int, mean: Sequence[float], std: Sequence[float],
                  augment: Augment = Augment(), few_shot_epoch: str = "subset",
                  sampling: str | None = None) -> VideoDataset:
    """``data.train_list`` under ``data.root``, K-shot when ``data.shot`` is set.

    A K-shot list is repeated per ``data.shot_epoch`` (default ``few_shot_epoch``, the
    recipe's original rule); the whole list is then repeated ``data.repeat`` times.
    ``sampling`` replaces ``data.sampling`` for training only (EVL's ``tsn_sampling``).
    """
    if not config.data.train_list:
        raise ConfigError("data.train_list: no training list given")
    num_classes = len(class_names(config))
    records = read_list(config.data.train_list, num_classes=num_classes)
    if config.data.shot:
        full = len(records)
        records = k_shot(records, config.data.shot, config.data.seed)
        records = records * few_shot_repeats(config.data.shot_epoch or few_shot_epoch, full, config.data.shot,
                                             num_classes)
    records = records * config.data.repeat
    if not config.data.augment:
        augment = Augment(random_resized_crop=False, flip=0.0)  # resize + centre crop
    flip = augment.flip if config.data.flip is None else (0.5 if config.data.flip else 0.0)
    transform = build_train_transform(image_size, random_resized_crop=augment.random_resized_crop,
                                      scale=augment.scale, flip=flip, rand_augment=augment.rand_augment,
                                      jitter=augment.jitter, interpolation=augment.interpolation,
                                      short_side=round(augment.short_side_ratio * image_size)
                                      if augment.short_side_ratio else None,
                                      grayscale=augment.grayscale, mean=mean, std=std,
                                      multi_scale_crop=augment.multi_scale_crop,
                                      color_jitter=augment.color_jitter, timm_rand_augment=augment.timm_rand_augment)
    sampler = parse_sampling(sampling or config.data.sampling, frames=config.data.frames)
    return VideoDataset(records, config.data.root, sampler, transform, train=True, seed=config.data.seed,
                        strict=config.data.strict)


def eval_transform(config: Config, kind: str | None, image_size: int, spatial: int, mean: Sequence[float],
                   std: Sequence[float]):
    """The evaluation transform of ``spatial`` crops at the test scale (``data.test_scale``, else
    the original recipe ``kind``'s; see :mod:`ovar.video.eval_scale`)."""
    try:
        return original_eval_transform(kind, image_size, spatial, mean, std, config.data.test_scale)
    except ValueError as exc:
        raise ConfigError(f"data.test_scale: {exc}") from None


def eval_dataset(config: Config, image_size: int, mean: Sequence[float], std: Sequence[float],
                 kind: str | None = None) -> VideoDataset | None:
    """``data.val_list`` with ``eval.views`` (temporal clips x spatial crops); None without a list."""
    if not config.data.val_list:
        return None
    records = read_list(config.data.val_list, num_classes=len(class_names(config)))
    views = parse_views(config.eval.views)
    transform = eval_transform(config, kind, image_size, views.spatial, mean, std)
    sampler = parse_sampling(config.data.sampling, frames=config.data.frames, num_clips=views.temporal)
    if sampler.kind == "segment":
        sampler = dataclasses.replace(sampler, position=segment_position(kind, config.data.test_frames))
    return VideoDataset(records, config.data.root, sampler, transform, train=False, views=views,
                        seed=config.data.seed, strict=config.data.strict)
