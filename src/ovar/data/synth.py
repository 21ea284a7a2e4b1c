"""SynthActions: a procedurally generated action dataset for base-to-novel experiments offline.

A class is a composition of an object (colour + shape) and an action, named in words
("a red circle moving left"). Base and novel classes hold out *compositions*: every
colour, shape and action appears among the base classes, so a novel class reuses words the
model was trained on, in a combination it never saw.

:func:`generate` writes real encoded videos and the base-to-novel layout of the real
datasets (docs/protocols.md)::

    OUT/videos/<part>/<class>/<part>_<class>_<i>.mp4
    OUT/lists/synth/train_1.csv  val.csv  test.csv  train_idx2cls.json  test_idx2cls.json
    OUT/classes.json  (all classes)   OUT/synth.json  (the spec and each class's parts)

so ``ovar eval --protocol base2novel --root OUT --lists OUT/lists --datasets synth`` runs on
it. Every clip is a pure function of ``(seed, part, class, index)``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import OvarError
from . import synth_draw as D

log = logging.getLogger(__name__)

DATASET = "synth"  # the dataset folder under lists/ (the base2novel protocol knows it)
_PARTS = {"train_1": 0, "val": 1, "test": 2}
_FPS = 8


@dataclass(frozen=True)
class SynthClass:
    """One composition: its words and its name."""

    colour: str
    shape: str
    action: str

    @property
    def object(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def name(self) -> str:
        return f"a {self.colour} {self.shape} {self.action}"

    @property
    def slug(self) -> str:
        return self.name[2:].replace(" ", "_")


@dataclass
class SynthSpec:
    """What to generate. ``novel_every``: one composition in this many is novel (held out)."""

    colours: list[str] = field(default_factory=lambda: ["red", "green", "blue", "yellow"])
    shapes: list[str] = field(default_factory=lambda: ["circle", "square", "triangle"])
    actions: list[str] = field(default_factory=lambda: list(D.ACTIONS))
    shots: int = 8  # training clips per base class
    eval_per_class: int = 4  # val clips per base class, test clips per novel class
    size: int = 64
    min_frames: int = 12
    max_frames: int = 16
    distractors: tuple[int, int] = (0, 3)  # how many, inclusive range
    novel_every: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        _check_words(self.colours, D.COLOURS, "colour")
        _check_words(self.shapes, D.SHAPES, "shape")
        _check_words(self.actions, D.ACTIONS, "action")
        if not 2 <= self.novel_every:
            raise OvarError("novel_every: must be at least 2 (some classes must stay base)")
        if not (8 <= self.min_frames <= self.max_frames <= 64):
            raise OvarError(f"frames: need 8 <= min ({self.min_frames}) <= max ({self.max_frames}) <= 64")
        if self.size < 32 or self.size % 2:
            raise OvarError(f"size: need an even number of pixels >= 32, got {self.size}")
        if self.shots < 1 or self.eval_per_class < 1:
            raise OvarError("shots and clips per class must be at least 1")
        self.distractors = tuple(self.distractors)  # type: ignore[assignment]


def _check_words(words: Sequence[str], known, what: str) -> None:
    if not words:
        raise OvarError(f"no {what}s given")
    for w in words:
        if w not in known:
            raise OvarError(f"unknown {what} '{w}' (known: {', '.join(known)})")
    if len(set(words)) != len(words):
        raise OvarError(f"duplicated {what} in {', '.join(words)}")


def classes(spec: SynthSpec) -> list[SynthClass]:
    """Every composition, objects (colour, shape) outer and actions inner."""
    return [SynthClass(c, s, a) for c in spec.colours for s in spec.shapes for a in spec.actions]


def split_classes(spec: SynthSpec) -> tuple[list[SynthClass], list[SynthClass]]:
    """Base and novel classes. A diagonal pattern over (object, action) holds out one
    composition in ``novel_every`` so that each object and each action is in both sets."""
    base, novel = [], []
    num_actions = len(spec.actions)
    for i, cls in enumerate(classes(spec)):
        obj, act = divmod(i, num_actions)
        (novel if (obj + act) % spec.novel_every == 1 else base).append(cls)
    return base, novel


def clip_rng(seed: int, part: str, class_index: int, index: int) -> np.random.Generator:
    """The generator of one clip: independent of the order clips are made in."""
    return np.random.default_rng(np.random.SeedSequence([seed, _PARTS[part], class_index, index]))


def make_clip(spec: SynthSpec, cls: SynthClass, rng: np.random.Generator) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames of ``cls`` (T between min and max frames)."""
    size = spec.size
    frames = int(rng.integers(spec.min_frames, spec.max_frames + 1))
    t = np.linspace(0.0, 1.0, frames)
    radius = float(rng.choice(list(D.SIZES.values()))) * size * rng.uniform(0.92, 1.08)
    bg = D.background(rng, size)
    clutter = D.distractors(rng, size, int(rng.integers(spec.distractors[0], spec.distractors[1] + 1)))
    states = D.trajectory(cls.action, t, rng, size, radius)
    return D.render(size, bg, clutter, cls.shape, D.object_colour(rng, cls.colour), states, t)


def encode(frames: np.ndarray, path: Path, fps: int = _FPS) -> None:
    """Write frames as an MPEG-4 Part 2 video in an MP4 file.

    FFmpeg's own ``mpeg4`` encoder is in every FFmpeg build and, on one thread, gives the
    same pictures every time (libx264 was seen to vary between processes).
    """
    import av

    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.qmax = 3  # near-lossless: colours and edges survive
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    os.replace(tmp, path)


def rgb_to_yuv420p(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB -> the ``(3H/2, W)`` planar YUV 4:2:0 array PyAV takes (BT.601,
    limited range: what decoders assume for an untagged stream).

    Converted here rather than by FFmpeg's scaler, whose SIMD paths round differently with
    the memory alignment of the input: the same clip would not always encode the same.
    """
    rgb = img.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    h, w = y.shape

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y.ravel(), half(u).ravel(), half(v).ravel()]
    return np.clip(np.rint(np.concatenate(planes)), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


@dataclass
class SynthDataset:
    """Where a generated dataset is, and what it holds."""

    root: Path
    spec: SynthSpec
    base: list[SynthClass]
    novel: list[SynthClass]

    @property
    def lists(self) -> Path:
        return self.root / "lists"

    @property
    def split_dir(self) -> Path:
        return self.lists / DATASET

    def list_file(self, part: str) -> Path:
        return self.split_dir / f"{part}.csv"


def _plan(spec: SynthSpec) -> tuple[list[SynthClass], list[SynthClass], dict[str, list[tuple[str, int, int, int]]]]:
    """Per list part, its clips as (relative path, label in the part's classes, class index, i)."""
    all_classes = classes(spec)
    index = {c: i for i, c in enumerate(all_classes)}
    base, novel = split_classes(spec)
    plan: dict[str, list[tuple[str, int, int, int]]] = {}
    for part, names, count in (("train_1", base, spec.shots), ("val", base, spec.eval_per_class),
                               ("test", novel, spec.eval_per_class)):
        plan[part] = [(f"videos/{part}/{c.slug}/{part}_{c.slug}_{i:03d}.mp4", label, index[c], i)
                      for label, c in enumerate(names) for i in range(count)]
    return base, novel, plan


def generate(out: str | Path, spec: SynthSpec, progress: Callable[[int, int], None] | None = None) -> SynthDataset:
    """Write the dataset into ``out``; clips already there (from the same spec) are kept."""
    root = Path(out)
    meta_path = root / "synth.json"
    wanted = {"format": "ovar-synth-actions", "version": 1, "spec": asdict(spec)}
    wanted["spec"]["distractors"] = list(spec.distractors)
    if meta_path.is_file():
        found = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: found.get(k) for k in wanted} != wanted:
            raise OvarError(f"{root} holds SynthActions generated with other settings; use another folder or delete it")
    base, novel, plan = _plan(spec)
    all_classes = classes(spec)
    jobs = [(part, *item) for part, items in plan.items() for item in items]
    done = 0
    for part, rel, _label, class_index, i in jobs:
        path = root / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            encode(make_clip(spec, all_classes[class_index], clip_rng(spec.seed, part, class_index, i)), path)
        done += 1
        if progress is not None:
            progress(done, len(jobs))
    dataset = SynthDataset(root, spec, base, novel)
    dataset.split_dir.mkdir(parents=True, exist_ok=True)
    for part, items in plan.items():
        lines = "".join(f"{rel},{label}\n" for rel, label, _, _ in items)
        dataset.list_file(part).write_text(lines, encoding="utf-8")
    _write_classes(dataset.split_dir / "train_idx2cls.json", base)
    _write_classes(dataset.split_dir / "test_idx2cls.json", novel)
    _write_classes(root / "classes.json", all_classes)
    meta = {**wanted, "base": [asdict(c) | {"name": c.name} for c in base],
            "novel": [asdict(c) | {"name": c.name} for c in novel]}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    log.info("SynthActions: %d base and %d novel classes, %d clips in %s", len(base), len(novel), len(jobs), root)
    return dataset


def _write_classes(path: Path, names: Sequence[SynthClass]) -> None:
    path.write_text(json.dumps({str(i): c.name for i, c in enumerate(names)}, indent=1) + "\n", encoding="utf-8")


def class_parts(root: str | Path) -> dict[str, SynthClass]:
    """Name -> composition of every class of the dataset generated in ``root``."""
    meta = json.loads((Path(root) / "synth.json").read_text(encoding="utf-8"))
    return {c["name"]: SynthClass(c["colour"], c["shape"], c["action"]) for c in meta["base"] + meta["novel"]}
