"""``ovar demo``: the base-to-novel benchmark end to end, offline, on a CPU.

1. generate SynthActions (:mod:`ovar.data.synth`);
2. pretrain the ``tiny`` CLIP on single frames and captions without motion words
   (:mod:`ovar.train.pretrain_tiny`);
3. run the base2novel protocol with that CLIP frozen (the baseline) and with every recipe
   trained on the base classes;
4. write a table (Base / Novel / HM, plus what the predictions get right: the object and,
   given the object, the action), a report with plots, and the best open-vocabulary model.

Everything lands in one folder; running again reuses what is there (the data, the CLIP,
finished trainings and evaluations).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..data.synth import DATASET, SynthSpec, class_parts, generate
from ..errors import OvarError
from ..train.pretrain_tiny import PretrainOptions

log = logging.getLogger(__name__)

SYSTEMS = ("frozen", "actionclip", "text4vis", "evl", "open_vclip", "froster")
CLOSED_SET = ("evl",)  # a linear head over the training classes: no score for a novel class

# Per recipe, the differences from its defaults for a tiny model trained for minutes: learning
# rates ten times the defaults (a few dozen steps must move the temporal modules, which start
# from scratch), with the pretrained image tower kept close to where it is (its frame
# embeddings already say where the object is; the motion is in how they change).
_RECIPE_OVERRIDES: dict[str, list[str]] = {
    "actionclip": ["recipe.fusion=Transf", "optim.lr=1e-3", "optim.weight_decay=0.05", "recipe.visual_lr_ratio=0.1"],
    "text4vis": ["recipe.fusion=Transf", "optim.lr=1e-2", "optim.backbone_lr_ratio=0.01"],
    "evl": ["recipe.num_layers=2", "optim.lr=1e-2", "recipe.rand_augment=null"],
    "open_vclip": ["optim.lr=1e-3", "recipe.average_from_epoch=null"],
    "froster": ["optim.lr=1e-3", "recipe.average_from_epoch=null"],
}


@dataclass
class DemoPlan:
    """How big the demo is: the data, the pretraining and the recipe trainings."""

    spec: SynthSpec = field(default_factory=SynthSpec)
    pretrain: PretrainOptions = field(default_factory=PretrainOptions)
    epochs: int = 3
    batch_size: int = 8
    frames: int = 8
    systems: tuple[str, ...] = SYSTEMS
    threads: int | None = None

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("threads")
        return json.loads(json.dumps(data))


def default_plan(seed: int = 0, quick: bool = False) -> DemoPlan:
    """The full demo, or ``quick``: a smaller one (24 classes: 6 objects x the 4 directions of
    motion, short clips, fewer steps)."""
    if quick:
        spec = SynthSpec(colours=["red", "green", "blue"], shapes=["circle", "square"],
                         actions=["moving left", "moving right", "moving up", "moving down"], shots=12,
                         eval_per_class=3, min_frames=8, max_frames=10, seed=seed)
        return DemoPlan(spec, PretrainOptions(colours=spec.colours, shapes=spec.shapes, steps=300, batch_size=48,
                                              seed=seed), epochs=3)
    spec = SynthSpec(colours=["red", "green", "blue"], shapes=["circle", "square", "triangle"],
                     actions=["moving left", "moving right", "moving up", "moving down", "rotating clockwise",
                              "rotating anticlockwise", "growing", "shrinking"], shots=10, eval_per_class=3, seed=seed)
    return DemoPlan(spec, PretrainOptions(colours=spec.colours, shapes=spec.shapes, steps=600, batch_size=64,
                                          seed=seed), epochs=3)


@dataclass
class SystemResult:
    """One row of the table."""

    system: str
    base: float
    novel: float | None
    hm: float | None
    breakdown: dict[str, dict[str, float]]  # part -> object / action_given_object / chance...
    model_file: str | None = None


@dataclass
class DemoResult:
    out: Path
    rows: list[SystemResult]
    best: str | None
    model: Path | None
    labels: Path
    report: Path
    seconds: dict[str, float]


Progress = Callable[[str], None]


def run_demo(out: str | Path, plan: DemoPlan, progress: Progress = log.info) -> DemoResult:
    """Run (or resume) the demo in ``out``."""
    import torch

    out = Path(out)
    _check_plan(out, plan)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    seconds: dict[str, float] = {}
    start = time.monotonic()

    progress(f"[1/3] SynthActions in {out / 'data'}")
    last = [0.0]

    def data_progress(done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            progress(f"      clips {done}/{total}")

    data = generate(out / "data", plan.spec, data_progress)
    seconds["data"] = time.monotonic() - start

    clip_file = out / "clip_tiny.pt"
    t0 = time.monotonic()
    if clip_file.is_file():
        progress(f"[2/3] tiny CLIP: reusing {clip_file}")
    else:
        progress(f"[2/3] pretraining the tiny CLIP ({plan.pretrain.steps} steps of {plan.pretrain.batch_size} "
                 f"captioned frames)")
        from ..train.pretrain_tiny import pretrain

        def pt_progress(step: int, total: int, loss: float) -> None:
            if step == total or step % 50 == 0:
                progress(f"      step {step}/{total}, loss {loss:.3f}, {time.monotonic() - t0:.0f} s")

        pretrain(plan.pretrain, clip_file, pt_progress)
    seconds["pretrain"] = time.monotonic() - t0

    rows = []
    for system in plan.systems:
        t0 = time.monotonic()
        progress(f"[3/3] base2novel: {system}")
        rows.append(_run_system(out, system, data.root, clip_file, plan))
        seconds[system] = time.monotonic() - t0
        r = rows[-1]
        progress(f"      {system}: base {r.base:.1f}, novel {_fmt(r.novel)}, HM {_fmt(r.hm)} "
                 f"({seconds[system]:.0f} s)")

    best = max((r for r in rows if r.model_file and r.hm is not None), key=lambda r: r.hm, default=None)
    model = None
    if best is not None:
        model = out / "model.pt"
        shutil.copyfile(best.model_file, model)
    labels = data.root / "classes.json"
    seconds["total"] = time.monotonic() - start
    from .report import write_demo_report

    report = write_demo_report(out, rows, plan, best.system if best else None, seconds)
    return DemoResult(out, rows, best.system if best else None, model, labels, report, seconds)


def _check_plan(out: Path, plan: DemoPlan) -> None:
    path = out / "demo.json"
    identity = plan.identity()
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")) != identity:
            raise OvarError(f"{out} holds a demo run with other settings (seed, size or --quick); "
                            f"use another --out or delete it")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=1) + "\n", encoding="utf-8")


def _settings(root: Path, plan: DemoPlan):
    from ..protocols.sources import EvalSettings

    return EvalSettings(root=root, views="1x1", frames=plan.frames, sampling="segment", batch_size=32, workers=0,
                        precision="fp32", device="cpu", seed=plan.spec.seed)


def _recipe_overrides(system: str, clip_file: Path, plan: DemoPlan) -> list[str]:
    seed = plan.spec.seed
    return ["model.backbone=tiny", f"model.pretrained={clip_file.resolve()}", f"data.frames={plan.frames}",
            f"data.batch_size={plan.batch_size}", "data.workers=0", "data.flip=false",
            "data.augment=false",
            f"schedule.epochs={plan.epochs}", "schedule.warmup_epochs=0.3", "eval.every_n_epochs=0",
            "run.precision=fp32", "run.device=cpu", "run.keep_last=1", f"run.seed={seed}", f"data.seed={seed}",
            *_RECIPE_OVERRIDES[system]]


def _run_system(out: Path, system: str, root: Path, clip_file: Path, plan: DemoPlan) -> SystemResult:
    from ..protocols import run as P
    from ..protocols.defs import b2n_parts
    from ..protocols.lists import FolderLists
    from ..protocols.sources import bare_clip
    from ..protocols.training import RecipeSpec, train_source

    settings = _settings(root, plan)
    lists = FolderLists(root / "lists")
    folder = out / "b2n" / system
    if system == "frozen":
        source = bare_clip("tiny", str(clip_file.resolve()), settings, None)
        run = P.ProtocolRun("base2novel", folder, settings, {"model": source.label, "lists": lists.describe()})
        report = P.run_base2novel(run, lists, [DATASET], model=source)
        parts = {"base": folder / DATASET / "base", "novel": folder / DATASET / "novel"}
        model_file = None
    else:
        spec = RecipeSpec(None, _recipe_overrides(system, clip_file, plan), system)
        run = P.ProtocolRun("base2novel", folder, settings, {"model": f"recipe {system}", "lists": lists.describe()})
        if system in CLOSED_SET:
            # Trained and scored on the base classes only; the report says why novel is absent.
            train = lists.load(DATASET, "train_1", root)
            source = train_source(spec, folder / "runs" / DATASET / "split1", train.records, train.class_names,
                                  settings, f"{system} trained")
            base = run.evaluate(b2n_parts(DATASET, 1)[0], lists, source)
            report = {"summary": {DATASET: {"base": base.top1, "novel": None, "hm": None}}}
        else:
            report = P.run_base2novel(run, lists, [DATASET], spec=spec, splits=[1])
        parts = {"base": folder / DATASET / "split1" / "base", "novel": folder / DATASET / "split1" / "novel"}
        model_file = folder / "runs" / DATASET / "split1" / "model.pt"
    s = report["summary"][DATASET]
    breakdown = {name: breakdown_of(path, root) for name, path in parts.items() if (path / "scores.pt").is_file()}
    hm = s["hm"] if s["novel"] is not None else None
    usable = model_file is not None and model_file.is_file() and system not in CLOSED_SET
    return SystemResult(system, s["base"], s["novel"], hm, breakdown, str(model_file) if usable else None)


def breakdown_of(folder: Path, root: Path) -> dict[str, float]:
    """What the top-1 predictions of one evaluated list get right (%): the object (colour and
    shape), the colour, and, where the object is right, the action; with their chance levels
    for a model that guesses among the list's classes (for the action: among the classes of
    the right object)."""
    from collections import Counter

    from ..eval.scores import read_scores

    data = read_scores(folder)
    parts = class_parts(root)
    names = list(data["class_names"])
    comp = [parts[n] for n in names]
    preds = data["scores"].argmax(1).tolist()
    labels = data["labels"].tolist()
    per_object = Counter(c.object for c in comp)
    per_colour = Counter(c.colour for c in comp)
    n = len(labels)
    obj_right = [comp[p].object == comp[t].object for p, t in zip(preds, labels)]
    act_right = [comp[p].action == comp[t].action for p, t, ok in zip(preds, labels, obj_right) if ok]
    act_chance = [1 / per_object[comp[t].object] for t, ok in zip(labels, obj_right) if ok]
    return {
        "top1": 100 * sum(p == t for p, t in zip(preds, labels)) / n,
        "object": 100 * sum(obj_right) / n,
        "object_chance": 100 * sum(per_object[comp[t].object] for t in labels) / n / len(names),
        "colour": 100 * sum(comp[p].colour == comp[t].colour for p, t in zip(preds, labels)) / n,
        "colour_chance": 100 * sum(per_colour[comp[t].colour] for t in labels) / n / len(names),
        "action_given_object": 100 * sum(act_right) / max(len(act_right), 1),
        "action_chance": 100 * sum(act_chance) / max(len(act_chance), 1),
        "videos": n,
        "classes": len(names),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
