"""Datasets of a video recipe, built from the ``data``/``eval`` sections of a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import Config, ConfigError
from ..data.dataset import VideoDataset
from ..data.lists import read_list
from ..data.subsets import k_shot
from ..video import build_eval_transform, build_train_transform, parse_sampling, parse_views


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


def class_names(config: Config) -> list[str]:
    """``data.classes``: a class-list file, or the name of a bundled list (``k400``, ``ucf101``...)."""
    from ..data import splits

    source = config.data.classes
    if not source:
        raise ConfigError("data.classes: a class list is required (id,name CSV, JSON or one name per line)")
    return splits.read_classes(source)


def train_dataset(config: Config, image_size: int, mean: Sequence[float], std: Sequence[float],
                  augment: Augment = Augment()) -> VideoDataset:
    """``data.train_list`` under ``data.root``, K-shot when ``data.shot`` is set."""
    if not config.data.train_list:
        raise ConfigError("data.train_list: no training list given")
    records = read_list(config.data.train_list, num_classes=len(class_names(config)))
    if config.data.shot:
        records = k_shot(records, config.data.shot, config.data.seed)
    if not config.data.augment:
        augment = Augment(random_resized_crop=False, flip=0.0)  # resize + centre crop
    transform = build_train_transform(image_size, random_resized_crop=augment.random_resized_crop,
                                      scale=augment.scale, flip=augment.flip if config.data.flip else 0.0,
                                      rand_augment=augment.rand_augment,
                                      jitter=augment.jitter, interpolation=augment.interpolation,
                                      short_side=round(augment.short_side_ratio * image_size)
                                      if augment.short_side_ratio else None,
                                      grayscale=augment.grayscale, mean=mean, std=std)
    sampler = parse_sampling(config.data.sampling, frames=config.data.frames)
    return VideoDataset(records, config.data.root, sampler, transform, train=True, seed=config.data.seed,
                        strict=config.data.strict)


def eval_dataset(config: Config, image_size: int, mean: Sequence[float], std: Sequence[float]) -> VideoDataset | None:
    """``data.val_list`` with ``eval.views`` (temporal clips x spatial crops); None without a list."""
    if not config.data.val_list:
        return None
    records = read_list(config.data.val_list, num_classes=len(class_names(config)))
    views = parse_views(config.eval.views)
    transform = build_eval_transform(image_size, crop="three" if views.spatial == 3 else "center",
                                     mean=mean, std=std)
    sampler = parse_sampling(config.data.sampling, frames=config.data.frames, num_clips=views.temporal)
    return VideoDataset(records, config.data.root, sampler, transform, train=False, views=views,
                        seed=config.data.seed, strict=config.data.strict)
