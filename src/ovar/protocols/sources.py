"""What a protocol evaluates: a bare CLIP, a model file, a recipe's checkpoint or a model
trained inside the protocol, each behind one lazy :class:`ModelSource`.

Lazy because a resumed protocol whose parts are all finished should not load any weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import default_workers
from ..data.dataset import VideoDataset
from ..data.records import VideoRecord
from ..errors import ModelError, OvarError
from ..models.backbone import ClipBackbone
from ..video import parse_sampling, parse_views
from ..video.eval_scale import original_eval_transform, segment_position


@dataclass
class EvalSettings:
    """How every part of a protocol is evaluated (from the command line and the config)."""

    root: Path
    views: str = "1x1"
    frames: int = 8
    sampling: str = "segment"
    fusion: str | None = None
    batch_size: int = 8
    workers: int = field(default_factory=lambda: default_workers())
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    strict: bool = False
    descriptions: dict[str, str] | None = None  # class name (lower case) -> "Name: description"
    allow_outside_root: bool = False  # list paths may lead outside root (absolute, ..)
    compile: bool = False  # torch.compile the video encoder

    def torch_device(self) -> torch.device:
        from ..train.distributed import resolve_device

        return resolve_device(self.device)

    def describe(self, names: Sequence[str]) -> list[str] | None:
        """Descriptions for ``names`` (a class without one keeps its bare name), or None."""
        if not self.descriptions:
            return None
        return [self.descriptions.get(" ".join(n.lower().split()), n) for n in names]

    def report(self) -> dict[str, Any]:
        """The settings as the report shows them."""
        return {"root": str(self.root), **self.identity(), "batch_size": self.batch_size, "workers": self.workers,
                "precision": self.precision, "device": self.device}

    def identity(self) -> dict[str, Any]:
        """The settings that change scores (a resumed run must match them)."""
        return {"views": self.views, "frames": self.frames, "sampling": self.sampling, "fusion": self.fusion,
                "seed": self.seed, "descriptions": bool(self.descriptions)}


def descriptions_by_name(path: str | Path) -> dict[str, str]:
    """A FROSTER-style descriptions file keyed by its (normalised) class names, so that one
    file serves every class list of a protocol (base, novel, half-class trials)."""
    from ..text.descriptions import read_descriptions, short_name

    return {" ".join(short_name(t).lower().split()): t for t in read_descriptions(path)}


def find_backbone(model: nn.Module) -> ClipBackbone:
    """The CLIP backbone inside ``model`` (its image size and normalisation shape the input)."""
    found = next((m for m in model.modules() if isinstance(m, ClipBackbone)), None)
    if found is None:
        raise ModelError(f"{type(model).__name__}: no CLIP backbone inside; cannot build its evaluation input")
    return found


def eval_dataset(records: Sequence[VideoRecord], backbone: ClipBackbone, frames: int,
                 settings: EvalSettings, kind: str | None = None, test_scale: str | None = None,
                 test_frames: str | None = None) -> VideoDataset:
    """Evaluation clips of ``records`` under ``settings.root``: ``views`` clips x crops each, at
    the test scale of the original system ``kind`` (:mod:`ovar.video.eval_scale`)."""
    try:
        views = parse_views(settings.views)
        sampler = parse_sampling(settings.sampling, frames=frames, num_clips=views.temporal)
        if sampler.kind == "segment":
            sampler = dataclasses.replace(sampler, position=segment_position(kind, test_frames))
        transform = original_eval_transform(kind, backbone.image_size, views.spatial, backbone.mean, backbone.std,
                                            test_scale)
    except ValueError as exc:
        raise OvarError(f"views/sampling: {exc}") from None
    return VideoDataset(records, settings.root, sampler, transform, train=False, views=views,
                        seed=settings.seed, strict=settings.strict, allow_outside_root=settings.allow_outside_root)


@dataclass
class Loaded:
    """A ready scorer and what its input looks like."""

    scorer: Any  # ovar.eval.scorers.ModelScorer | RecipeScorer
    backbone: ClipBackbone
    frames: int
    kind: str | None = None  # the original system whose test scale applies (None: plain CLIP)
    test_scale: str | None = None  # a recipe config's data.test_scale
    test_frames: str | None = None  # a recipe config's data.test_frames


@dataclass
class ModelSource:
    """Builds its scorer on first use and keeps it (class texts are then cached per list)."""

    label: str  # for the report: what was evaluated
    build: Callable[[], Loaded]
    _loaded: Loaded | None = field(default=None, repr=False)

    def get(self) -> Loaded:
        if self._loaded is None:
            self._loaded = self.build()
        return self._loaded

    def release(self) -> None:
        """Drop the model (a protocol that trains several holds one at a time)."""
        self._loaded = None


def model_scorer(model: nn.Module, settings: EvalSettings, frames: int | None = None) -> Loaded:
    """A :class:`VideoTextModel` (bare CLIP or model file) scored with free-text classes."""
    from ..eval.scorers import ModelScorer

    model = model.to(settings.torch_device()).eval()
    scorer = ModelScorer(_compiled(model, settings), fusion=settings.fusion)
    return Loaded(scorer, find_backbone(model), frames or getattr(model, "frames", settings.frames),
                  getattr(model, "kind", None))


def recipe_scorer(recipe: Any, model: nn.Module, settings: EvalSettings) -> Loaded:
    """A recipe's trained model, scored the recipe's way (its views fusion, its classifier)."""
    from ..eval.scorers import RecipeScorer

    model = model.to(settings.torch_device()).eval()
    data = recipe.config.data
    scorer = RecipeScorer(recipe, model, fusion=settings.fusion)
    _compiled(scorer.model, settings)
    return Loaded(scorer, find_backbone(model), data.frames,
                  getattr(recipe, "original", None), getattr(data, "test_scale", None), getattr(data, "test_frames", None))


def _compiled(model: nn.Module, settings: EvalSettings) -> nn.Module:
    """``model`` with its video encoder compiled when ``settings.compile`` asks for it."""
    if settings.compile and hasattr(model, "encode_video"):
        from ..inference.compiling import compile_video_encoder

        compile_video_encoder(model)
    return model


def bare_clip(name: str, pretrained: str | None, settings: EvalSettings, templates: str | None) -> ModelSource:
    """The frozen CLIP baseline: mean-pooled frame embeddings against class prompts."""
    def build() -> Loaded:
        from ..models.loading import load_model

        kwargs = {"templates": templates} if templates else {}
        model = load_model(name, None if pretrained in (None, "none") else pretrained,
                           frames=settings.frames, **kwargs)
        return model_scorer(model, settings, settings.frames)

    return ModelSource(f"CLIP {name} ({pretrained or 'none'}), frozen", build)


def model_file(path: str | Path, settings: EvalSettings, clip: str | None = None,
               patch_ratio: float | None = None) -> ModelSource:
    """An ovar model file (``ovar train``'s model.pt, ``ovar convert`` output), a run folder,
    or an original codebase's checkpoint (``clip``: its CLIP file; ``patch_ratio``: patched)."""
    def build() -> Loaded:
        from ..models.loading import load_model

        model = load_model(checkpoint=path, clip=clip, patch_ratio=patch_ratio)
        return model_scorer(model, settings)

    patched = f", patched {patch_ratio}" if patch_ratio is not None else ""
    return ModelSource(f"model {path}{patched}", build)


def recipe_checkpoint(recipe_factory: Callable[[], Any], path: str | Path, settings: EvalSettings) -> ModelSource:
    """A training checkpoint (epoch_*.pt, final.pt, best.pt, averaged weights; or a run
    folder) of a recipe, scored the recipe's way; a model file is scored as :func:`model_file`."""
    def build() -> Loaded:
        from ..models.loading import is_training_checkpoint, load_model, run_model_path
        from ..models.weights_io import load_exact, load_file

        file = Path(path)
        if file.is_dir():
            file = run_model_path(file)
        payload = load_file(file, "checkpoint")
        if not is_training_checkpoint(payload):
            return model_scorer(load_model(checkpoint=file), settings)
        recipe = recipe_factory()
        model = recipe.build_model()
        load_exact(model, payload["model"], file, "the recipe's")
        return recipe_scorer(recipe, model, settings)

    return ModelSource(f"checkpoint {path}", build)
