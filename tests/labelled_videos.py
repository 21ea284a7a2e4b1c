"""A tiny labelled video dataset in the layout the recipes read (shared by the recipe tests)."""

from __future__ import annotations

from pathlib import Path

from ovar.config import Config, load_config
from videogen import make_video

CLASSES = ["archery", "surfing water", "playing guitar"]


def write_labelled_videos(root: Path, per_class: int, *, val_every: int | None = None) -> Path:
    """``per_class`` clips ``c{label}_{i}.mp4`` of each of :data:`CLASSES` under ``root``, with
    ``train.txt`` (every clip), ``val.txt`` (every ``val_every``-th line, when given) and
    ``classes.csv``; returns ``root``."""
    lines = []
    for label in range(len(CLASSES)):
        for i in range(per_class):
            name = f"c{label}_{i}.mp4"
            make_video(root / name, num_frames=12, fps=12, size=(72, 64))
            lines.append(f"{name} {label}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    if val_every is not None:
        (root / "val.txt").write_text("\n".join(lines[::val_every]) + "\n")
    (root / "classes.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    return root


def recipe_config(root: Path, out: Path, recipe: str, *extra: str) -> Config:
    """A run of ``recipe`` on the tiny random backbone over :func:`write_labelled_videos`'s
    lists, on the CPU; ``extra`` overrides come last."""
    return load_config(None, [
        f"recipe.name={recipe}", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'train.txt'}", f"data.val_list={root / 'val.txt'}",
        f"data.classes={root / 'classes.csv'}", "data.frames=4", "data.batch_size=3", "data.workers=0",
        "schedule.warmup_epochs=0", f"run.out_dir={out}", "run.device=cpu", *extra])
