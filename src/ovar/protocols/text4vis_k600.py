"""Text4Vis's Kinetics-600 zero-shot lists as a cross-dataset list source.

Text4Vis evaluates K600 zero-shot on three partitions of 160 novel classes with its own
video pool: ``lists/k600/test_split{n}_exist.txt`` (``<file>.mp4 <label 0..159>``)
indexing ``k160_labels_split{n}.csv``.  The class lists are bundled with ovar
(``k600_novel_splits/k160_labels_split{n}``, the same names in the same order as the
bundled ``cross/k600_split{n}`` maps); the video pools are not (they differ from the
Open-VCLIP/FROSTER pool that the bundled K600 lists hold).  Pointing ``--lists`` at a
folder holding Text4Vis's ``test_split{n}_exist.txt`` files runs the cross-dataset
protocol's K600 column on Text4Vis's videos; a ``k160_labels_split{n}.csv`` next to them
takes precedence over the bundled class list.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..data import splits
from ..data.labels import read_class_names
from ..data.lists import read_list
from ..data.records import VideoRecord
from .lists import FolderLists, ListSource

SPLITS = (1, 2, 3)
_SPLIT = re.compile(r"k600_split([123])")


def class_list_name(split: int) -> str:
    """The bundled class list of Text4Vis's K600 partition ``split`` (1..3)."""
    return f"k600_novel_splits/k160_labels_split{split}"


def is_text4vis_k600(directory: str | Path) -> bool:
    """Whether ``directory`` holds Text4Vis's K600 video lists (``test_split{n}_exist.txt``)."""
    return any((Path(directory) / f"test_split{n}_exist.txt").is_file() for n in SPLITS)


class Text4VisK600Lists(ListSource):
    """``k600_split{n}``/``test`` read from Text4Vis's ``test_split{n}_exist.txt`` in a folder."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _number(self, split: str) -> int | None:
        match = _SPLIT.fullmatch(split)
        return int(match.group(1)) if match else None

    def _list_file(self, split: str) -> Path | None:
        number = self._number(split)
        path = self.directory / f"test_split{number}_exist.txt"
        return path if number is not None and path.is_file() else None

    def has(self, split: str, part: str) -> bool:
        return part == "test" and self._list_file(split) is not None

    def parts(self, split: str) -> list[str]:
        return ["test"] if self._list_file(split) is not None else []

    def class_names(self, split: str) -> list[str]:
        """The folder's ``k160_labels_split{n}.csv``, else the bundled list."""
        number = self._number(split)
        local = self.directory / f"k160_labels_split{number}.csv"
        return read_class_names(local) if local.is_file() else splits.class_names(class_list_name(number))

    def read(self, split: str, part: str) -> tuple[str, list[VideoRecord], list[str]]:
        path = self._list_file(split)
        assert path is not None and part == "test"
        names = self.class_names(split)
        return str(path), read_list(path, num_classes=len(names)), names

    def describe(self) -> str:
        return f"--lists {self.directory} (Text4Vis K600 lists)"


def cross_lists(directory: str | Path) -> ListSource:
    """The cross-dataset list source of ``--lists DIR``: Text4Vis's K600 folder, or the usual layout."""
    return Text4VisK600Lists(directory) if is_text4vis_k600(directory) else FolderLists(directory)
