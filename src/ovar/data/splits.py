"""Protocol splits and class lists bundled with ovar, found from the folder layout.

Under ``ovar/data/bundled/splits`` every folder that holds ``*.csv`` list files is a split,
named by its path (``b2n/k400``, ``cross/ucf101_split1``, ``half/hmdb/3``); each list file
is a part (``train_1``, ``val``, ``test``). The class list of a part is found by naming
rules, nearest first:

1. ``<role>_idx2cls.json`` in the folder, role ``test`` for ``test*`` parts and ``train``
   otherwise (base-to-novel: train and val use the base classes, test the novel ones);
2. ``index2cls.json`` in the folder;
3. ``<dataset>*-index2cls.json`` in an enclosing folder, where ``<dataset>`` is the split's
   first name after the protocol up to ``_`` (``cross/hmdb_split1`` → ``hmdb51-index2cls.json``).

Class lists under ``bundled/labels`` are named by path without suffix (``k400``,
``k600_novel_splits/k160_labels_split1``), also reachable as ``classes/<name>``.
Everything is read lazily and cached.

Known upstream flaw, kept so results match the published protocol: FROSTER's
``b2n/ssv2`` class maps cut SSv2 names at their first comma (``"Putting something"``), and
novel classes 30 and 32 came out identical. The bundled files are byte copies of the
release, so :func:`load` returns the names as published and warns about repeated names.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OvarError
from .labels import parse_class_names, read_class_names
from .lists import parse_list
from .records import VideoRecord

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

CLASS_PREFIX = "classes/"


class UnknownSplitError(OvarError):
    """A split, part or class list name that is not bundled."""


@dataclass(frozen=True)
class PartInfo:
    """One list file of a split: its name and how many classes and videos it has."""

    name: str
    num_classes: int
    num_videos: int


@dataclass(frozen=True)
class SplitInfo:
    """A bundled split and its parts, in the order train*, val*, test*, others."""

    name: str
    parts: tuple[PartInfo, ...]

    @property
    def part_names(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts)

    def part(self, name: str) -> PartInfo:
        for part in self.parts:
            if part.name == name:
                return part
        raise UnknownSplitError(f"split '{self.name}' has no part '{name}' (parts: {', '.join(self.part_names)})")


@dataclass
class Split:
    """The videos of one part of a split, with the class names its labels index."""

    name: str
    part: str
    records: list[VideoRecord]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.records)


def bundled_root() -> Traversable:
    """The folder of bundled data (a real directory for normal and editable installs)."""
    return files("ovar.data") / "bundled"


def list_splits() -> list[SplitInfo]:
    """Every bundled split with its parts' class and video counts, sorted by name."""
    return [_info(name) for name in sorted(_registry())]


def list_class_lists() -> list[str]:
    """Names of the bundled class lists (``k400``, ``ucf101``, ...), sorted."""
    return sorted(_class_lists())


def load(name: str, part: str = "test") -> Split:
    """The records and class names of ``part`` of the bundled split ``name``."""
    parts = _lookup(name)
    if part not in parts:
        raise UnknownSplitError(f"split '{name}' has no part '{part}' (parts: {', '.join(parts)})")
    list_file, class_file = parts[part]
    names = _read_class_names(class_file)
    _warn_repeated(names, class_file)
    return Split(name=name, part=part, records=list(_read_records(list_file, len(names))),
                 class_names=list(names))


def class_names(dataset: str) -> list[str]:
    """The bundled class list of ``dataset`` (``k400``, ``k600``, ``k700``, ``ucf101``,
    ``hmdb51``, ``ssv2``, ``activitynet``, ...), in label order."""
    key = dataset[len(CLASS_PREFIX):] if dataset.startswith(CLASS_PREFIX) else dataset
    lists = _class_lists()
    if key not in lists:
        raise UnknownSplitError(f"unknown class list '{dataset}'{_suggest(key, list(lists))}")
    names = _read_class_names(lists[key])
    _warn_repeated(names, lists[key])
    return list(names)


def read_classes(source: str | os.PathLike) -> list[str]:
    """A class-list file, or else the name of a bundled class list (``k400``, ``ucf101``...)."""
    if not Path(source).exists() and str(source) in list_class_lists():
        return class_names(str(source))
    return read_class_names(source)


# --- discovery -------------------------------------------------------------------------

def _part_order(part: str) -> tuple[int, str]:
    rank = next((i for i, prefix in enumerate(("train", "val", "test")) if part.startswith(prefix)), 3)
    return rank, part


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict[str, tuple[str, str]]]:
    """split name → part → (list file, class file), paths relative to the bundled root."""
    registry: dict[str, dict[str, tuple[str, str]]] = {}

    def walk(folder: Traversable, rel: tuple[str, ...], maps: tuple[tuple[str, str], ...]) -> None:
        entries = sorted(folder.iterdir(), key=lambda e: e.name)
        # Label maps named "<dataset>-index2cls.json" serve every split below this folder.
        here = tuple((e.name[: -len("-index2cls.json")], "/".join((*rel, e.name))) for e in entries
                     if e.is_file() and e.name.endswith("-index2cls.json"))
        maps = here + maps  # nearest first
        lists = [e.name[:-4] for e in entries if e.is_file() and e.name.endswith(".csv")]
        if lists and len(rel) > 1:
            name = "/".join(rel[1:])
            registry[name] = {part: ("/".join((*rel, part + ".csv")),
                                     _class_file(name, part, rel, {e.name for e in entries}, maps))
                              for part in sorted(lists, key=_part_order)}
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                walk(entry, (*rel, entry.name), maps)

    walk(bundled_root() / "splits", ("splits",), ())
    return registry


def _class_file(name: str, part: str, rel: tuple[str, ...], names_here: set[str],
                maps: tuple[tuple[str, str], ...]) -> str:
    role = "test" if part.startswith("test") else "train"
    for candidate in (f"{role}_idx2cls.json", "index2cls.json"):
        if candidate in names_here:
            return "/".join((*rel, candidate))
    dataset = name.split("/")[1].split("_")[0] if "/" in name else name
    for prefix, path in maps:
        if prefix.startswith(dataset) or dataset.startswith(prefix):
            return path
    # Only reachable if the bundled data is broken, so fail when the registry is built.
    raise OvarError(f"bundled split '{name}' part '{part}': no class list found next to it")


@lru_cache(maxsize=1)
def _class_lists() -> dict[str, str]:
    """class list name → path relative to the bundled root."""
    found: dict[str, str] = {}

    def walk(folder: Traversable, rel: tuple[str, ...]) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, (*rel, entry.name))
            elif entry.name.endswith((".csv", ".txt", ".json")):
                stem = entry.name.rsplit(".", 1)[0]
                found["/".join((*rel, stem))] = "/".join(("labels", *rel, entry.name))

    walk(bundled_root() / "labels", ())
    return found


def _lookup(name: str) -> dict[str, tuple[str, str]]:
    registry = _registry()
    if name not in registry:
        hint = "; it is a class list: use class_names()" if name.startswith(CLASS_PREFIX) else ""
        raise UnknownSplitError(f"unknown split '{name}'{hint or _suggest(name, list(registry))}")
    return registry[name]


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    if not close:  # "k400" or "hmdb": show the splits that mention it
        close = [k for k in known if name.lower() in k.lower()][:5]
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    return f" (known: {', '.join(sorted(known)[:5])}, ...; `ovar data splits` lists all)"


# --- cached reading --------------------------------------------------------------------

def _read_text(rel: str) -> str:
    return bundled_root().joinpath(*rel.split("/")).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _read_class_names(rel: str) -> tuple[str, ...]:
    # unique=False: a published list with a repeated name must still load (see the module doc).
    return tuple(parse_class_names(_read_text(rel), source=rel, kind=rel.rsplit(".", 1)[-1], unique=False))


def _warn_repeated(names: tuple[str, ...], rel: str) -> None:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        key = " ".join(name.lower().split())
        if key in first:
            warnings.warn(f"{rel}: classes {first[key]} and {index} share the name '{name}' "
                          f"(as published upstream); a text classifier cannot tell them apart",
                          stacklevel=3)
        first.setdefault(key, index)


@lru_cache(maxsize=16)  # a loaded K400 list is ~10k records; keep a protocol's worth, not all
def _read_records(rel: str, num_classes: int) -> tuple[VideoRecord, ...]:
    # A tuple, copied into a fresh list per load(), so callers cannot edit the cache.
    return tuple(parse_list(_read_text(rel), source=rel, fmt="comma", num_classes=num_classes))


@lru_cache(maxsize=None)
def _count_records(rel: str) -> int:
    # Same skip rules as parse_list, without parsing: listing all splits stays cheap.
    return sum(1 for line in _read_text(rel).splitlines()
               if line.strip() and not line.lstrip().startswith("#"))


def _info(name: str) -> SplitInfo:
    return SplitInfo(name, tuple(PartInfo(part, len(_read_class_names(classes)), _count_records(lst))
                                 for part, (lst, classes) in _registry()[name].items()))
