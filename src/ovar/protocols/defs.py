"""The protocols as data: which lists each dataset evaluates, and how results aggregate.

Nothing here names a file system path: a part is ``(split, part)`` in a
:class:`~ovar.protocols.lists.ListSource` (the bundled splits or ``--lists DIR``), and
videos are found under ``--root``. See docs/protocols.md for the layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lists import ListSource, ProtocolDataError


@dataclass(frozen=True)
class EvalPart:
    """One list evaluated against its own class list."""

    key: str  # output subfolder and report key, e.g. "ucf101/split1"
    dataset: str  # "ucf101"
    split: str  # split name in the list source, e.g. "ucf101_split1"
    part: str  # list name in the split, e.g. "test"
    group: str  # the report column it is averaged into: "UCF", "UCF*", "full" ...
    source: str = "main"  # which list source: "main", or "full" (half-classes' full-class list)


@dataclass(frozen=True)
class CrossDataset:
    column: str  # report column: "UCF", "HMDB", "K600"
    splits: tuple[str, ...]
    full: str | None = None  # the one-pass "full" list (column + "*")


@dataclass(frozen=True)
class HalfDataset:
    column: str
    folder: str  # folder of the trials: bundled half/<folder>/<trial>, or DIR/<folder>/<trial>
    full_split: str  # full-class list: bundled cross/<full_split>; with --lists DIR/<folder>/full


@dataclass(frozen=True)
class B2NDataset:
    column: str  # "K400", "HMDB51" ...
    train_prefix: str = "train_"  # training parts train_1, train_2 ...
    base: str = "val"  # base-class evaluation list (labels index the base classes)
    novel: str = "test"  # novel-class evaluation list (labels index the novel classes)


# Bundled folder name of each protocol's lists under ovar/data/bundled/splits.
BUNDLED_FOLDER = {"cross-dataset": "cross", "half-classes": "half", "base2novel": "b2n"}

CROSS: dict[str, CrossDataset] = {
    "ucf101": CrossDataset("UCF", ("ucf101_split1", "ucf101_split2", "ucf101_split3"), "ucf101_full"),
    "hmdb51": CrossDataset("HMDB", ("hmdb_split1", "hmdb_split2", "hmdb_split3"), "hmdb_full"),
    "k600": CrossDataset("K600", ("k600_split1", "k600_split2", "k600_split3")),
}
HALF: dict[str, HalfDataset] = {
    "ucf101": HalfDataset("UCF", "ucf101", "ucf101_full"),
    "hmdb51": HalfDataset("HMDB", "hmdb", "hmdb_full"),
}
HALF_TRIALS = 10  # Text4Vis: np.random.seed(0..9)
B2N: dict[str, B2NDataset] = {
    "k400": B2NDataset("K400"), "hmdb51": B2NDataset("HMDB51"),
    "ucf101": B2NDataset("UCF101"), "ssv2": B2NDataset("SSv2"),
}


def choose(known: dict[str, object], wanted: list[str] | None, available, what: str) -> list[str]:
    """The datasets to run: ``wanted`` (each must be known and available), or every available one."""
    if wanted:
        for name in wanted:
            if name not in known:
                raise ProtocolDataError(f"--datasets: unknown {what} dataset '{name}' (known: {', '.join(known)})")
            if not available(name):
                raise ProtocolDataError(f"--datasets: no lists for '{name}' in the list source")
        return list(wanted)
    names = [name for name in known if available(name)]
    if not names:
        raise ProtocolDataError(f"no {what} lists found (expected folders for: {', '.join(known)})")
    return names


def cross_parts(lists: ListSource, wanted: list[str] | None) -> list[EvalPart]:
    """Cross-dataset: every present split's ``test`` list, then the full list (column ``X*``)."""
    def available(name: str) -> bool:
        d = CROSS[name]
        return any(lists.has(s, "test") for s in (*d.splits, d.full) if s)

    parts = []
    for name in choose(CROSS, wanted, available, "cross-dataset"):
        d = CROSS[name]
        for i, split in enumerate(d.splits, 1):
            if lists.has(split, "test"):
                parts.append(EvalPart(f"{name}/split{i}", name, split, "test", d.column))
        if d.full and lists.has(d.full, "test"):
            parts.append(EvalPart(f"{name}/full", name, d.full, "test", d.column + "*"))
    return parts


def half_parts(lists: ListSource, full_lists: ListSource, wanted: list[str] | None,
               full_split) -> list[EvalPart]:
    """Half-classes: trials 0..9 present, then the full-class list (``full_split(dataset)``)."""
    def available(name: str) -> bool:
        return any(lists.has(f"{HALF[name].folder}/{t}", "test") for t in range(HALF_TRIALS))

    parts = []
    for name in choose(HALF, wanted, available, "half-classes"):
        d = HALF[name]
        for trial in range(HALF_TRIALS):
            if lists.has(f"{d.folder}/{trial}", "test"):
                parts.append(EvalPart(f"{name}/trial{trial}", name, f"{d.folder}/{trial}", "test", d.column))
        full = full_split(d)
        if full_lists.has(full, "test"):
            parts.append(EvalPart(f"{name}/full", name, full, "test", d.column + " full", source="full"))
    return parts


def b2n_datasets(lists: ListSource, wanted: list[str] | None) -> list[str]:
    def available(name: str) -> bool:
        d = B2N[name]
        return lists.has(name, d.base) and lists.has(name, d.novel)

    return choose(B2N, wanted, available, "base2novel")


def b2n_train_splits(lists: ListSource, dataset: str, wanted: list[int] | None) -> list[int]:
    """The training split numbers of ``dataset`` (``train_1`` -> 1), restricted to ``wanted``."""
    prefix = B2N[dataset].train_prefix
    found = sorted(int(p[len(prefix):]) for p in lists.parts(dataset)
                   if p.startswith(prefix) and p[len(prefix):].isdigit())
    if wanted:
        absent = [s for s in wanted if s not in found]
        if absent:
            raise ProtocolDataError(f"--splits: {dataset} has no training split {absent[0]} "
                                    f"(has: {', '.join(map(str, found)) or 'none'})")
        return [s for s in found if s in wanted]
    if not found:
        raise ProtocolDataError(f"{dataset}: no training lists {prefix}N in {lists.describe()}")
    return found


def b2n_parts(dataset: str, split: int | None) -> list[EvalPart]:
    """Base (``val``) and novel (``test``) evaluation of one trained model (``split`` None: no training)."""
    d = B2N[dataset]
    where = f"{dataset}/split{split}" if split is not None else dataset
    return [EvalPart(f"{where}/base", dataset, dataset, d.base, "base"),
            EvalPart(f"{where}/novel", dataset, dataset, d.novel, "novel")]
