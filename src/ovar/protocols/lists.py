"""Where a protocol's video lists and class lists come from: the bundled splits or a folder.

A protocol names its lists as ``(split, part)`` pairs, e.g. ``("hmdb_split1", "test")`` or
``("k400", "train_1")``. :class:`BundledLists` reads them from ``ovar/data/bundled/splits/
<protocol folder>/``; :class:`FolderLists` from a user folder with the same layout
(``--lists DIR``), so a dataset with its own lists runs every protocol.

Layout of a lists folder (the bundled one is the same)::

    DIR/<split>/<part>.csv        # or .txt: any list format ovar reads (path,label / path label / ...)
    class list of a part, nearest first:
      DIR/<split>/<role>_idx2cls.json   role = "test" for test* parts, "train" for the others
      DIR/<split>/index2cls.json
      <folder>/<dataset>*-index2cls.json in any folder from DIR/<split> up to DIR, where
      <dataset> is the split's first path component cut at "_" (hmdb_split1 -> hmdb51-index2cls.json)

Class files may be JSON ``{"0": "name"}``, an ``id,name`` CSV or one name a line (any of
``.json``/``.csv``/``.txt`` for the file names above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data import splits
from ..data.labels import read_class_names
from ..data.lists import read_list, resolve
from ..data.records import VideoRecord
from ..errors import OvarError

_LIST_SUFFIXES = (".csv", ".txt")
_CLASS_SUFFIXES = (".json", ".csv", ".txt")


class ProtocolDataError(OvarError):
    """A protocol's list or class file that is missing, or a list none of whose videos exist."""


@dataclass
class PartLists:
    """The videos of one list (those present under the root) and the class names they index."""

    source: str  # the list as named in messages: a file path or "bundled b2n/k400 val"
    records: list[VideoRecord]
    class_names: list[str]
    missing: list[str] = field(default_factory=list)  # list paths with no file under the root
    total: int = 0


class ListSource:
    """Reads ``(split, part)`` lists; subclasses say where from."""

    def has(self, split: str, part: str) -> bool:
        raise NotImplementedError

    def parts(self, split: str) -> list[str]:
        """The part names of ``split`` (``train_1``, ``val``, ``test`` ...), sorted."""
        raise NotImplementedError

    def read(self, split: str, part: str) -> tuple[str, list[VideoRecord], list[str]]:
        """``(source name, records, class names)``."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def load(self, split: str, part: str, root: str | Path, *, allow_outside: bool = False) -> PartLists:
        """The part's records whose video exists under ``root``; the others listed as missing.

        A list none of whose videos exist is an error naming the list and the root (a wrong
        ``--root`` would otherwise produce a report of empty results).
        """
        if not self.has(split, part):
            raise ProtocolDataError(f"{self.describe()}: no list '{split}/{part}'")
        source, records, names = self.read(split, part)
        present, missing = [], []
        for record in records:
            (present if resolve(record, root, allow_outside=allow_outside).exists() else missing).append(record)
        if not present:
            raise ProtocolDataError(f"{source}: none of its {len(records)} videos exist under --root {root} "
                                    f"(first: {resolve(records[0], root, allow_outside=allow_outside)}); check --root, or pick datasets with --datasets")
        return PartLists(source, present, names, [r.path for r in missing], len(records))


class BundledLists(ListSource):
    """The split lists shipped with ovar under ``splits/<folder>`` (``b2n``, ``cross``, ``half``)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def _known(self) -> dict[str, tuple[str, ...]]:
        prefix = self.folder + "/"
        return {info.name[len(prefix):]: info.part_names for info in splits.list_splits()
                if info.name.startswith(prefix)}

    def has(self, split: str, part: str) -> bool:
        return part in self._known().get(split, ())

    def parts(self, split: str) -> list[str]:
        return sorted(self._known().get(split, ()))

    def read(self, split: str, part: str) -> tuple[str, list[VideoRecord], list[str]]:
        loaded = splits.load(f"{self.folder}/{split}", part)
        return f"bundled {self.folder}/{split}/{part}", loaded.records, loaded.class_names

    def describe(self) -> str:
        return f"bundled splits/{self.folder}"


class FolderLists(ListSource):
    """Lists in a user folder laid out like the bundled ``splits/<folder>`` (module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ProtocolDataError(f"--lists {directory}: not a folder")

    def _list_file(self, split: str, part: str) -> Path | None:
        return next((p for s in _LIST_SUFFIXES if (p := self.directory / split / (part + s)).is_file()), None)

    def has(self, split: str, part: str) -> bool:
        return self._list_file(split, part) is not None

    def parts(self, split: str) -> list[str]:
        folder = self.directory / split
        if not folder.is_dir():
            return []
        return sorted({p.stem for p in folder.iterdir() if p.is_file() and p.suffix in _LIST_SUFFIXES})

    def class_file(self, split: str, part: str) -> Path:
        """The class list of ``split/part`` by the naming rules of the module docstring."""
        folder = self.directory / split
        role = "test" if part.startswith("test") else "train"
        for stem in (f"{role}_idx2cls", "index2cls"):
            for suffix in _CLASS_SUFFIXES:
                if (folder / (stem + suffix)).is_file():
                    return folder / (stem + suffix)
        dataset = split.split("/")[0].split("_")[0]
        here = folder
        while True:
            for candidate in sorted(here.glob("*-index2cls.*")):
                prefix = candidate.name.split("-index2cls.")[0]
                if candidate.suffix in _CLASS_SUFFIXES and (prefix.startswith(dataset) or dataset.startswith(prefix)):
                    return candidate
            if here == self.directory or here.parent == here:
                break
            here = here.parent
        raise ProtocolDataError(f"{folder}: no class list for part '{part}' (expected {role}_idx2cls.json, "
                                f"index2cls.json, or {dataset}*-index2cls.json in a folder above)")

    def read(self, split: str, part: str) -> tuple[str, list[VideoRecord], list[str]]:
        path = self._list_file(split, part)
        assert path is not None
        names = read_class_names(self.class_file(split, part))
        return str(path), read_list(path, num_classes=len(names)), names

    def describe(self) -> str:
        return f"--lists {self.directory}"


class FileLists(ListSource):
    """Lists named on the command line (``--list FILE --classes FILE``): split ``""``, part = name."""

    def __init__(self, entries: dict[str, tuple[str | Path, str | Path]]) -> None:
        self.entries = {name: (Path(lst), cls) for name, (lst, cls) in entries.items()}

    def has(self, split: str, part: str) -> bool:
        return part in self.entries

    def parts(self, split: str) -> list[str]:
        return sorted(self.entries)

    def read(self, split: str, part: str) -> tuple[str, list[VideoRecord], list[str]]:
        lst, cls = self.entries[part]
        names = splits.read_classes(cls)  # a file, or a bundled list's name (k400, ucf101...)
        return str(lst), read_list(lst, num_classes=len(names)), names

    def describe(self) -> str:
        return "--list"
