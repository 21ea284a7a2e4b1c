"""Training inside a protocol (base-to-novel splits, few-shot K): one recipe run per
training list, reused when the protocol is run again.

Each run lives in ``OUT/runs/<key>/`` with the exact training list and class list it used
(``train_list.csv``, ``classes.json``); the recipe's config is the user's (``--config``
and KEY=VALUE overrides) with ``data.root``, ``data.train_list``, ``data.classes`` and
``run.out_dir`` set by the protocol. A run that finished (``final.pt``) is loaded, not
retrained; an interrupted one continues from its last checkpoint (``run.resume=auto``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import Config, load_config
from ..data.lists import write_list
from ..data.records import VideoRecord
from ..errors import OvarError
from .protocol_models import EvalSettings, ModelSource, recipe_checkpoint, recipe_scorer


@dataclass
class RecipeSpec:
    """The recipe and configuration a protocol trains with (``--recipe/--config/KEY=VALUE``)."""

    config_file: str | None = None
    overrides: Sequence[str] = ()
    recipe: str | None = None
    extra: list[str] = field(default_factory=list)  # overrides the protocol adds (seed, device)

    def config(self, *more: str) -> Config:
        for text in self.overrides:
            if "=" not in text:
                raise OvarError(f"'{text}': overrides are KEY=VALUE (e.g. optim.lr=1e-5)")
        return load_config(self.config_file, [*self.overrides, *self.extra, *more])

    def name(self, config: Config) -> str:
        name = self.recipe or config.recipe.get("name")
        if not name:
            raise OvarError("no recipe: pass --recipe NAME or set recipe.name in the config")
        return name

    def build(self, config: Config) -> Any:
        from ..recipes import load_recipe

        return load_recipe(self.name(config))(config)

    def checkpoint(self, path: str | Path, settings: EvalSettings) -> ModelSource:
        """``--checkpoint`` with ``--config/--recipe``: a training checkpoint of this recipe."""
        config = self.config()
        return recipe_checkpoint(lambda: self.build(config), path, settings)


def few_shot_repeat(spec: RecipeSpec, config: Config, shot: int, num_full: int, num_classes: int) -> int:
    """``data.repeat`` of a K-shot run: ``⌊N_full / (K·C)⌋`` when the recipe (or
    ``data.shot_epoch``) makes a few-shot epoch as long as the full set (Text4Vis), else 1."""
    from ..recipes import load_recipe
    from ..recipes.video_data import few_shot_repeats

    rule = config.data.shot_epoch or getattr(load_recipe(spec.name(config)), "few_shot_epoch", "subset")
    return few_shot_repeats(rule, num_full, shot, num_classes)


def train_source(spec: RecipeSpec, run_dir: Path, records: Sequence[VideoRecord], class_names: Sequence[str],
                 settings: EvalSettings, label: str, few_shot: tuple[int, int] | None = None) -> ModelSource:
    """A model trained on ``records`` (labels index ``class_names``) in ``run_dir``, lazily.

    ``few_shot = (K, N_full)`` marks ``records`` as a K-shot draw from a list of ``N_full``
    videos, repeated per epoch as the recipe's original does (:func:`few_shot_repeat`).
    Nothing is trained until the model is first needed, so a protocol re-run whose
    evaluations all finished does not touch the run.
    """
    def build():
        from ..train.checkpoint import load
        from ..train.loop import train

        run_dir.mkdir(parents=True, exist_ok=True)
        train_list = write_list(records, run_dir / "train_list.csv")
        classes = run_dir / "classes.json"
        classes.write_text(json.dumps({str(i): n for i, n in enumerate(class_names)}, indent=1), encoding="utf-8")
        more = [f"data.root={settings.root}", f"data.train_list={train_list}", f"data.classes={classes}",
                "data.val_list=", "data.shot=", f"run.out_dir={run_dir}", "run.resume=auto"]
        config = spec.config(*more)
        if few_shot is not None:
            repeat = few_shot_repeat(spec, config, few_shot[0], few_shot[1], len(class_names))
            config = spec.config(*more, f"data.repeat={repeat * config.data.repeat}")
        recipe = spec.build(config)
        final = run_dir / "final.pt"
        if final.is_file():  # finished before: the state after finalize() was saved here
            model = recipe.build_model()
            model.load_state_dict(load(final)["model"])
        else:
            result = train(config, recipe)
            if not result.completed:
                raise OvarError(f"{run_dir}: training stopped before its last epoch")
            model = result.model
        return recipe_scorer(recipe, model, settings)

    return ModelSource(label, build)
