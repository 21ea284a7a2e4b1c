"""Training inside a protocol (base-to-novel splits, few-shot K): one recipe run per
training list, reused when the protocol is run again.

Each run lives in ``OUT/runs/<key>/`` with the exact training list and class list it used
(``train_list.csv``, ``classes.json``); the recipe's config is the user's (``--config``
and KEY=VALUE overrides) with ``data.root``, ``data.train_list``, ``data.classes`` and
``run.out_dir`` set by the protocol. A run that finished (``final.pt``) with the same
settings is loaded, not retrained; an interrupted one continues from its last checkpoint
(``run.resume=auto``); see :func:`train_source`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..config import Config, Override, load_config, parse_section, to_dict
from ..data.lists import write_list
from ..data.records import VideoRecord
from ..errors import OvarError
from ..train.preflight import clear_run_dir
from ..train.resume import BOOKKEEPING, changed_settings
from .sources import EvalSettings, ModelSource, recipe_checkpoint, recipe_scorer

logger = logging.getLogger(__name__)
IDENTITY_FILE = "training.json"  # what the run in the folder was trained with


@dataclass
class RecipeSpec:
    """The recipe and configuration a protocol trains with (``--recipe/--config/KEY=VALUE``)."""

    config_file: str | None = None
    overrides: Sequence[str] = ()
    recipe: str | None = None
    extra: list[Override] = field(default_factory=list)  # typed overrides the protocol adds (seed, device)

    def config(self, *more: Override) -> Config:
        for text in self.overrides:
            if isinstance(text, str) and "=" not in text:
                raise OvarError(f"'{text}': overrides are KEY=VALUE (e.g. optim.lr=1e-5)")
        return load_config(self.config_file, [*self.overrides, *self.extra, *more])

    def name(self, config: Config) -> str:
        name = self.recipe or config.recipe.get("name")
        if not name:
            raise OvarError("no recipe: pass --recipe NAME or set recipe.name in the config")
        return name

    def check(self, config: Config) -> None:
        """ConfigError for a recipe name or ``recipe.*`` option the recipe cannot take, before
        a protocol writes anything (the recipe itself is built per dataset later)."""
        from ..recipes import load_recipe

        options = getattr(load_recipe(self.name(config)), "options_class", None)
        if options is not None:
            parse_section(options, {k: v for k, v in config.recipe.items() if k != "name"}, "recipe")

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
    evaluations all finished does not touch the run.  What the run was trained with is
    recorded in ``run_dir/training.json`` and checked at once: a finished run is reused only
    when every training setting, the training list and the class list match (otherwise an
    error, since the protocol's scores came from it); an unfinished one continues from its
    checkpoint when they match and is started afresh when they do not (or when it left no
    checkpoint), so a failed first attempt never blocks a corrected one.
    """
    more: list[Override] = [("data.root", settings.root), ("data.train_list", run_dir / "train_list.csv"),
                            ("data.classes", run_dir / "classes.json"), ("data.val_list", None), ("data.shot", None),
                            ("run.out_dir", run_dir), ("run.resume", None)]
    config = spec.config(*more)
    if few_shot is not None:
        repeat = few_shot_repeat(spec, config, few_shot[0], few_shot[1], len(class_names))
        config = spec.config(*more, ("data.repeat", repeat * config.data.repeat))
    identity = _identity(config, records, class_names)
    recorded = _recorded(run_dir)
    same = recorded == identity
    if not same and (run_dir / "final.pt").is_file():
        differs = changed_settings(recorded.get("settings", {}), identity["settings"], ignore=()) if recorded else []
        differs += [k for k in ("train_list_sha256", "classes") if recorded and recorded.get(k) != identity[k]]
        what = ", ".join(differs) if differs else "settings not recorded"
        raise OvarError(f"{run_dir} holds a model trained with other settings ({what}); "
                        f"use another --out or delete it")

    def build():
        from ..train.checkpoint import CheckpointDir, load
        from ..train.loop import train

        final = run_dir / "final.pt"
        if same and final.is_file():  # finished before: the state after finalize() was saved here
            recipe = spec.build(config)
            model = recipe.build_model()
            model.load_state_dict(load(final)["model"])
            return recipe_scorer(recipe, model, settings)
        resume = same and CheckpointDir(run_dir / "checkpoints", 0).latest() is not None
        if not resume and run_dir.is_dir():
            if recorded is not None:
                logger.warning("%s: starting its training afresh (%s)", run_dir,
                               "other settings than before" if not same else "no checkpoint left")
            clear_run_dir(run_dir)  # a failed or different earlier attempt: nothing of it is kept
        run_dir.mkdir(parents=True, exist_ok=True)
        write_list(records, run_dir / "train_list.csv")
        classes = run_dir / "classes.json"
        classes.write_text(json.dumps({str(i): n for i, n in enumerate(class_names)}, indent=1), encoding="utf-8")
        (run_dir / IDENTITY_FILE).write_text(json.dumps(identity, indent=1) + "\n", encoding="utf-8")
        run_config = replace(config, run=replace(config.run, resume="auto" if resume else None))
        recipe = spec.build(run_config)
        result = train(run_config, recipe)
        if not result.completed:
            why = f"stopped by {result.stopped}" if result.stopped else "stopped before its last epoch"
            raise OvarError(f"{run_dir}: training {why}; run the protocol again to continue it")
        return recipe_scorer(recipe, result.model, settings)

    return ModelSource(label, build)


def _identity(config: Config, records: Sequence[VideoRecord], class_names: Sequence[str]) -> dict[str, Any]:
    """What decides the trained weights: the settings (less bookkeeping), the list, the classes."""
    flat = {k: v for k, v in _flat(to_dict(config)).items() if k not in BOOKKEEPING}
    digest = hashlib.sha256()
    for record in records:
        digest.update(f"{record.path}\t{record.label}\t{record.num_frames}\n".encode())
    return json.loads(json.dumps({"settings": flat, "train_list_sha256": digest.hexdigest(),
                                  "classes": list(class_names)}))


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        out.update(_flat(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def _recorded(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: treated as another run's
