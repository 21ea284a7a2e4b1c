"""Dataset class lists (index → class name) and turning identifiers into natural names.

A class list defines the label indices of a dataset, so its reader is strict: every index
0..C-1 appears exactly once and no name appears twice. Accepted files:

- ``.csv``: ``id,name`` rows after an optional ``id,name`` header, in any order. A name may hold
  commas (everything after the first comma is the name) or be double-quoted.
- ``.json``: ``{"0": "name", ...}`` or a list of names.
- anything else (``.txt``): one name per line, line number = index + 1; unless its content
  is JSON or starts with the ``id,name`` header, then it is read as such.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..errors import LabelError

__all__ = ["read_class_names", "parse_class_names", "humanize", "read_descriptions"]

_INDEX = re.compile(r"[0-9]+")


def __getattr__(name: str) -> object:
    # Lazy re-export: importing ovar.text loads torch, which listing splits must not pay for.
    if name == "read_descriptions":
        from ..text.descriptions import read_descriptions
        return read_descriptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_class_names(path: str | Path) -> list[str]:
    """Class names in index order; errors name the file (and line for text formats)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: class list not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not a UTF-8 text file (byte {exc.start})") from exc
    return parse_class_names(text, source=str(path), kind=_kind(path, text))


def _kind(path: Path, text: str) -> str:
    """``csv``/``json`` by suffix, else by content (a label file may be named anything)."""
    kind = path.suffix.lower().lstrip(".")
    if kind in ("csv", "json"):
        return kind
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "json"
    first = stripped.split("\n", 1)[0]
    return "csv" if first.replace(" ", "").strip().lower() == "id,name" else kind


def parse_class_names(text: str, *, source: str = "<classes>", kind: str = "txt",
                      unique: bool = True) -> list[str]:
    """Parse the text of a class list; ``kind`` is ``csv``, ``json`` or anything else for lines.

    ``unique=False`` lets a name repeat (only for reproducing published lists that have
    such a flaw; a text classifier cannot tell the repeated classes apart).
    """
    seen: dict[str, int] | None = {} if unique else None
    if kind == "csv":
        names = _parse_csv(text, source, seen)
    elif kind == "json":
        names = _parse_json(text, source, seen)
    else:
        names = _parse_lines(text, source, seen)
    if not names:
        raise LabelError(f"{source}: the class list is empty")
    return names


def _parse_lines(text: str, source: str, seen: dict[str, int] | None) -> list[str]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless; inner ones shift indices
        lines.pop()
    names: list[str] = []
    for number, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise LabelError(f"{source}:{number}: empty class name (line {number} is class {number - 1})")
        _check_unique(name, f"{source}:{number}", seen, number)
        names.append(name)
    return names


def _parse_csv(text: str, source: str, seen: dict[str, int] | None) -> list[str]:
    by_index: dict[int, tuple[str, int]] = {}
    header_possible = True
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        index_text, sep, name = (part.strip() for part in line.partition(","))
        if header_possible and index_text.lower() == "id" and name.lower() == "name":
            header_possible = False
            continue  # the header
        header_possible = False
        if not sep:
            raise LabelError(f"{where}: expected 'id,name', got {line.strip()!r}")
        if not _INDEX.fullmatch(index_text):
            raise LabelError(f"{where}: class index {index_text!r} is not a non-negative integer")
        if name.startswith('"'):
            name = _unquote(name, where)
        if not name:
            raise LabelError(f"{where}: empty class name")
        index = int(index_text)
        if index in by_index:
            raise LabelError(f"{where}: duplicate class index {index} (first on line {by_index[index][1]})")
        _check_unique(name, where, seen, number)
        by_index[index] = (name, number)
    return _in_order({i: name for i, (name, _) in by_index.items()}, source)


def _parse_json(text: str, source: str, seen: dict[str, int] | None) -> list[str]:
    def no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:  # json.loads would silently keep the last one
                raise LabelError(f"{source}: duplicate class index \"{key}\"")
            seen.add(key)
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{source}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
    if isinstance(data, list):
        items = dict(enumerate(data))
    elif isinstance(data, dict):
        items = {}
        for key, value in data.items():
            if not _INDEX.fullmatch(key.strip()):
                raise LabelError(f"{source}: key \"{key}\" is not a class index 0..C-1")
            index = int(key)
            if index in items:  # "1" and "01"
                raise LabelError(f"{source}: duplicate class index {index}")
            items[index] = value
    else:
        raise LabelError(f"{source}: expected a JSON object {{\"0\": \"name\", ...}} or a list of names")
    for index in sorted(items):
        value = items[index]
        if not isinstance(value, str) or not value.strip():
            raise LabelError(f"{source}: class {index} has no name (got {json.dumps(value)[:40]})")
        items[index] = value.strip()
        _check_unique(items[index], f"{source}: class {index}", seen, index, unit="class")
    return _in_order(items, source)


def _unquote(field: str, where: str) -> str:
    try:
        values = next(csv.reader([field]))
    except csv.Error as exc:
        raise LabelError(f"{where}: bad quoting ({exc})") from exc
    if len(values) != 1:
        raise LabelError(f"{where}: text after the quoted class name")
    return values[0].strip()


def _check_unique(name: str, where: str, first: dict[str, int] | None, position: int,
                  unit: str = "line") -> None:
    if first is None:
        return
    # Case-insensitive: CLIP's tokenizer lowercases, so "Archery"/"archery" are one text class.
    key = " ".join(name.lower().split())
    if key in first:
        raise LabelError(f"{where}: duplicate class name '{name}' (first at {unit} {first[key]})")
    first[key] = position


def _in_order(by_index: dict[int, str], source: str) -> list[str]:
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise LabelError(f"{source}: class index {missing[0]} is missing (indices must be "
                         f"0..{len(by_index) - 1} for {len(by_index)} classes; highest is {max(by_index)})")
    return [by_index[i] for i in range(len(by_index))]


# Word boundaries inside an identifier: "yY" ("YoYo"), "y3" ("Top10"), and the end of a
# capital or digit run before a capitalised word ("TVShow" → "TV Show", "3DPrint").
_HUMP = re.compile(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[A-Z0-9])(?=[A-Z][a-z])")


def humanize(name: str) -> str:
    """A natural-language class name for a dataset identifier.

    Names that already contain a space are returned unchanged ("acting in play",
    "backflip (human)", "Applying sunscreen"). Any other name is an identifier: it is
    split at underscores and at case humps, and lowercased. A run of capitals stays one
    word and the last capital of the run starts the next word when a lowercase letter
    follows ("TVShow" → "tv show"); digits split from the letters before them
    ("Top10" → "top 10"). Examples: ``ApplyEyeMakeup`` → "apply eye makeup",
    ``brush_hair`` → "brush hair", ``YoYo`` → "yo yo", ``abseiling`` unchanged.
    """
    if any(ch.isspace() for ch in name.strip()):
        return name
    words = _HUMP.sub(" ", name.replace("_", " "))
    return " ".join(words.split()).lower()


def read_labels_file(path: str | Path) -> list[str]:
    """Class names from a class-list file or a bundled list's name (``k400``): the reader
    of ``data.classes`` and ``--classes`` (``id,name`` CSV with or without its header, JSON
    list or ``{"0": name}``, one name per line), then the label checks."""
    from ..text.templates import check_labels
    from .splits import read_classes

    return check_labels(read_classes(path), str(path))
