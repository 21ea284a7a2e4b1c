"""Evaluation protocols of the papers, one function each, all writing into one output folder.

``OUT/`` holds ``protocol.json`` (what was evaluated, checked when the command runs again),
one folder per evaluated list (``OUT/<dataset>/<split>/``: the per-video score store and
``result.json``), the runs trained inside the protocol (``OUT/runs/<key>/``) and the report
(``report.md``, ``report.json``, plots). Running the same command again resumes: a list
whose ``result.json`` exists is not evaluated again (not even its model is loaded), a
partly scored list continues after its last scored video, a finished training run is
loaded instead of retrained.

The protocols (definitions in :mod:`ovar.protocols.defs`, docs/protocols.md):
``closed``, ``cross-dataset``, ``half-classes``, ``base2novel``, ``few-shot``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data.subsets import k_shot
from ..errors import OvarError
from .defs import B2N, EvalPart, b2n_datasets, b2n_parts, b2n_train_splits, cross_parts, half_parts
from .lists import FileLists, ListSource, PartLists
from .sources import EvalSettings, ModelSource, eval_dataset
from ..eval.metrics import harmonic_mean, mean_std
from .report import Table, write_report
from .training import RecipeSpec, train_source

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
_SINGLE = ("*", " full")  # report columns of one list, not mean ± std


@dataclass
class PartResult:
    """The metrics of one evaluated list, and which of its videos were missing or failed."""

    key: str
    dataset: str
    group: str
    source: str  # the list file (or bundled split) evaluated
    top1: float
    top5: float
    mean_class: float | None
    num_videos: int  # scored
    num_listed: int  # in the list
    num_classes: int
    missing: list[str] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)  # [path, reason]
    mean_ap: float | None = None
    frames: int | None = None  # frames per clip the part was scored with


class ProtocolRun:
    """One protocol's output folder: evaluates parts (resumably) and writes the report."""

    def __init__(self, protocol: str, out: str | Path, settings: EvalSettings, what: dict[str, Any]) -> None:
        self.protocol = protocol
        self.out = Path(out)
        self.settings = settings
        self.results: list[PartResult] = []
        self.training_missing: dict[str, list[str]] = {}  # training list -> its missing videos
        self._identity = {"protocol": protocol, **what, "settings": settings.identity()}
        self._check_out()

    def _check_out(self) -> None:
        # Resuming into a folder scored with other settings would mix incomparable numbers.
        path = self.out / "protocol.json"
        if path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
            flat_before, flat_now = _flatten(before), _flatten(json.loads(json.dumps(self._identity)))
            differs = sorted(k for k in flat_before.keys() | flat_now.keys() if flat_before.get(k) != flat_now.get(k))
            if differs:
                raise OvarError(f"{self.out} holds an evaluation with other settings ({', '.join(differs)}); "
                                f"use another --out or delete it")

    def claim(self) -> None:
        """Create the output folder and its ``protocol.json``: called just before the first
        thing is written, so that a run stopped by a user error (a list whose videos are
        not under the root) leaves nothing behind."""
        path = self.out / "protocol.json"
        if not path.is_file():
            self.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self._identity, indent=1) + "\n", encoding="utf-8")

    def evaluate(self, part: EvalPart, lists: ListSource, model: ModelSource) -> PartResult:
        """Metrics of ``part``; reused from its ``result.json`` when it finished before."""
        folder = self.out / part.key
        done = folder / RESULT_FILE
        if done.is_file():
            result = PartResult(**json.loads(done.read_text(encoding="utf-8")))
            _status(f"{part.key}: done before, top-1 {result.top1:.2f}")
        else:
            data = lists.load(part.split, part.part, self.settings.root,
                              allow_outside=self.settings.allow_outside_root)
            missing = f", {len(data.missing)} missing under the root" if data.missing else ""
            _status(f"{part.key}: {len(data.records)} videos, {len(data.class_names)} classes ({data.source}{missing})")
            self.claim()
            result = self._score(part, data, model, folder)
            _status(f"{part.key}: top-1 {result.top1:.2f}, top-5 {result.top5:.2f}"
                    + (f", {len(result.failed)} failed to decode" if result.failed else ""))
            folder.mkdir(parents=True, exist_ok=True)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(result), indent=1) + "\n", encoding="utf-8")
            tmp.replace(done)  # written last: its presence means the part is complete
        self.results.append(result)
        return result

    def _score(self, part: EvalPart, data: PartLists, model: ModelSource, folder: Path) -> PartResult:
        from ..eval.runner import evaluate_set

        loaded = model.get()
        dataset = eval_dataset(data.records, loaded.backbone, loaded.frames, self.settings, loaded.kind,
                               loaded.test_scale, loaded.test_frames)
        s = self.settings
        evaluated = evaluate_set(loaded.scorer, dataset, data.class_names, folder, batch_size=s.batch_size,
                                 workers=s.workers, precision=s.precision,
                                 descriptions=s.describe(data.class_names), resume=True)
        m = evaluated.metrics
        failed = [[str(f[0]), str(f[1])] for f in evaluated.failures]
        if not evaluated.num_videos:
            raise OvarError(f"{data.source}: no video could be decoded ({len(failed)} failed; first: "
                            f"{failed[0][0] if failed else '-'}: {failed[0][1] if failed else '-'})")
        return PartResult(part.key, part.dataset, part.group, data.source, float(m.top1), float(m.top5),
                          float(m.mean_class_accuracy), int(evaluated.num_videos), data.total,
                          len(data.class_names), data.missing, failed, _maybe_float(m.mean_ap),
                          dataset.sampler.frames)

    def finish(self, title: str, model_label: str, tables: list[Table], summary: dict[str, Any],
               grouped: tuple | None = None) -> dict[str, Any]:
        """Write report.md / report.json / plots; returns the JSON report.  ``grouped`` adds a
        bar chart ``(file name, title, groups, {series: values})``."""
        self.claim()
        return write_report(self.out, title=title, protocol=self.protocol, model=model_label, tables=tables,
                            summary=summary, parts=[asdict(r) for r in self.results],
                            settings=self._settings_used(), training_missing=self.training_missing,
                            grouped=grouped)

    def _settings_used(self) -> dict[str, Any]:
        """The settings as the report shows them, with the frame count the clips really had
        (a model file brings its own; parts scored with different counts list each)."""
        report = self.settings.report()
        used = sorted({r.frames for r in self.results if r.frames is not None})
        if used:
            report["frames"] = used[0] if len(used) == 1 else used
        return report


def _status(message: str) -> None:
    logger.info("eval: %s", message)


def _maybe_float(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN -> None


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def _detail_table(results: Sequence[PartResult]) -> Table:
    rows = [[r.key, r.source, r.num_videos, len(r.missing), len(r.failed), r.top1, r.top5, r.mean_class, r.mean_ap]
            for r in results]
    return Table("Per list", ["part", "list", "videos", "missing", "failed", "top-1", "top-5", "mean class", "mAP"],
                 rows)


def _grouped(results: Sequence[PartResult]) -> OrderedDict[str, list[float]]:
    groups: OrderedDict[str, list[float]] = OrderedDict()
    for r in results:
        groups.setdefault(r.group, []).append(r.top1)
    return groups


def _group_summary(results: Sequence[PartResult]) -> tuple[list[str], list[Any], dict[str, Any]]:
    """Columns, one row of cells and the JSON summary of top-1 grouped by report column.

    A column of several lists (splits, trials) is mean ± std; a one-pass column
    (``UCF*``, ``UCF full``) is its single number.
    """
    columns, cells, summary = [], [], {}
    groups = _grouped(results)
    # As in the papers: the split columns (UCF / HMDB / K600) first, the one-pass ones after.
    for group in sorted(groups, key=lambda g: g.endswith(_SINGLE)):
        values = groups[group]
        single = group.endswith(_SINGLE)
        mean, std = mean_std(values)
        columns.append(group)
        cells.append(values[0] if single else (mean, std))
        summary[group] = {"top1": values[0]} if single else {"mean": mean, "std": std, "values": values}
    return columns, cells, summary


# --- the protocols ----------------------------------------------------------------------

def run_closed(run: ProtocolRun, lists: FileLists, model: ModelSource) -> dict[str, Any]:
    """Top-1 / top-5 / mean class accuracy of each ``--list`` against ``--classes``."""
    results = [run.evaluate(EvalPart(f"closed/{name}", name, "", name, name), lists, model)
               for name in lists.parts("")]
    rows = [[r.source, r.num_videos, r.top1, r.top5, r.mean_class, r.mean_ap] for r in results]
    table = Table("Closed-set accuracy", ["list", "videos", "top-1", "top-5", "mean class", "mAP"], rows)
    summary = {r.group: {"top1": r.top1, "top5": r.top5, "mean_class": r.mean_class, "mAP": r.mean_ap}
               for r in results}
    return run.finish("Closed-set evaluation", model.label, [table, _detail_table(results)], summary)


def run_cross(run: ProtocolRun, lists: ListSource, model: ModelSource, datasets: list[str] | None) -> dict[str, Any]:
    """Cross-dataset zero-shot: per split and mean ± std (UCF, HMDB, K600), one pass for UCF*/HMDB*."""
    results = [run.evaluate(part, lists, model) for part in cross_parts(lists, datasets)]
    columns, cells, summary = _group_summary(results)
    table = Table("Cross-dataset zero-shot top-1 (%)", ["model", *columns], [[model.label, *cells]])
    return run.finish("Cross-dataset zero-shot", model.label, [table, _detail_table(results)], summary)


def run_half(run: ProtocolRun, lists: ListSource, full_lists: ListSource, full_split, model: ModelSource,
             datasets: list[str] | None) -> dict[str, Any]:
    """Half-classes: mean ± std over the trials, and the full-class accuracy."""
    results = [run.evaluate(part, full_lists if part.source == "full" else lists, model)
               for part in half_parts(lists, full_lists, datasets, full_split)]
    columns, cells, summary = _group_summary(results)
    table = Table("Half-classes zero-shot top-1 (%)", ["model", *columns], [[model.label, *cells]])
    return run.finish("Half-classes zero-shot", model.label, [table, _detail_table(results)], summary)


def run_base2novel(run: ProtocolRun, lists: ListSource, datasets: list[str] | None, *,
                   model: ModelSource | None = None, spec: RecipeSpec | None = None,
                   splits: list[int] | None = None) -> dict[str, Any]:
    """Base-to-novel: per training split, train on the base shots (or take ``model`` as is),
    evaluate base (``val``) and novel (``test``) with their own class lists; HM of the means."""
    rows, split_rows, summary = [], [], {}
    for dataset in b2n_datasets(lists, datasets):
        per_split: list[tuple[str, float, float]] = []
        if spec is not None:
            for split in b2n_train_splits(lists, dataset, splits):
                train = lists.load(dataset, f"train_{split}", run.settings.root,
                                   allow_outside=run.settings.allow_outside_root)
                _note_training(run, f"{dataset}/split{split}/train", train)
                run.claim()
                source = train_source(spec, run.out / "runs" / dataset / f"split{split}", train.records,
                                      train.class_names, run.settings, f"{spec.recipe or 'recipe'} trained")
                base, novel = (run.evaluate(p, lists, source) for p in b2n_parts(dataset, split))
                source.release()
                per_split.append((f"split {split}", base.top1, novel.top1))
        else:
            assert model is not None
            base, novel = (run.evaluate(p, lists, model) for p in b2n_parts(dataset, None))
            per_split.append(("-", base.top1, novel.top1))
        bases, novels = [b for _, b, _ in per_split], [n for _, _, n in per_split]
        b_mean, b_std = mean_std(bases)
        n_mean, n_std = mean_std(novels)
        hm = harmonic_mean(b_mean, n_mean)
        rows.append([dataset, b_mean, n_mean, hm])
        split_rows += [[dataset, name, b, n, harmonic_mean(b, n)] for name, b, n in per_split]
        summary[dataset] = {"base": b_mean, "novel": n_mean, "hm": hm, "base_std": b_std, "novel_std": n_std,
                            "splits": [{"split": name, "base": b, "novel": n, "hm": harmonic_mean(b, n)}
                                       for name, b, n in per_split]}
    label = model.label if model is not None else f"{spec.recipe or 'recipe'} (trained per split)"
    # The papers' layout: one row per method, Base / Novel / HM under each dataset.
    wide = Table("Base-to-novel top-1 (%), mean over training splits",
                 ["model", *(f"{B2N[r[0]].column} {m}" for r in rows for m in ("Base", "Novel", "HM"))],
                 [[label, *(v for r in rows for v in r[1:])]])
    tables = [wide, Table("Per dataset", ["dataset", "Base", "Novel", "HM"], rows),
              Table("Per training split", ["dataset", "split", "Base", "Novel", "HM"], split_rows),
              _detail_table(run.results)]
    bars = {"Base": [r[1] for r in rows], "Novel": [r[2] for r in rows], "HM": [r[3] for r in rows]}
    return run.finish("Base-to-novel", label, tables, summary,
                      grouped=("base_vs_novel.png", "Base vs novel top-1 (%)", [r[0] for r in rows], bars))


def run_few_shot(run: ProtocolRun, spec: RecipeSpec, train_list: str, test_lists: Sequence[str], classes: str,
                 shots: Sequence[int]) -> dict[str, Any]:
    """All-way K-shot: for each K, train on a seeded K-shot subset of ``train_list``, evaluate
    every test list; one column per K (mean over the test lists when there are several)."""
    names = unique_names(test_lists)
    tests = FileLists({n: (path, classes) for n, path in zip(names, test_lists)})
    train = FileLists({"train": (train_list, classes)}).load("", "train", run.settings.root,
                                                                    allow_outside=run.settings.allow_outside_root)
    _note_training(run, "train", train)
    run.claim()
    by_k: dict[int, list[PartResult]] = {}
    for k in shots:
        subset = k_shot(train.records, k, run.settings.seed)
        source = train_source(spec, run.out / "runs" / f"shots{k}", subset, train.class_names, run.settings,
                              f"{spec.recipe or 'recipe'} {k}-shot", few_shot=(k, len(train.records)))
        by_k[k] = [run.evaluate(EvalPart(f"shots{k}/{n}", n, "", n, f"K={k}"), tests, source) for n in names]
        source.release()
    rows = [[n, *(by_k[k][i].top1 for k in shots)] for i, n in enumerate(names)]
    means = {k: mean_std([r.top1 for r in by_k[k]]) for k in shots}
    if len(names) > 1:
        rows.append(["mean", *(means[k] for k in shots)])
    table = Table("Few-shot top-1 (%)", ["test list", *(f"K={k}" for k in shots)], rows)
    summary = {f"K={k}": {"mean": means[k][0], "std": means[k][1], "values": [r.top1 for r in by_k[k]]}
               for k in shots}
    return run.finish("Few-shot (all-way K-shot)", f"{spec.recipe or 'recipe'} trained per K",
                      [table, _detail_table(run.results)], summary)


def _note_training(run: ProtocolRun, key: str, train: PartLists) -> None:
    """Training videos missing under the root go into the report's failure list too."""
    if train.missing:
        run.training_missing[f"{key} ({train.source})"] = train.missing


def unique_names(paths: Sequence[str]) -> list[str]:
    """Report names for list files: each file's stem, numbered from ``_2`` when stems repeat."""
    names: list[str] = []
    for path in paths:
        stem, n = Path(path).stem, 2
        name = stem
        while name in names:
            name, n = f"{stem}_{n}", n + 1
        names.append(name)
    return names
