"""A tiny dataset laid out like the real ones, with ``--lists`` folders for every protocol.

``make_protocol_data(base)`` writes::

    base/root/<Class>/v_<Class>_<i>.mp4            generated videos (64x48, 8 frames)
    base/lists/cross/ucf101_split{1,2,3}/test.csv  + ucf101-index2cls.json, ucf101_full/test.csv
    base/lists/cross/hmdb_split{1,2}/test.csv      + hmdb51-index2cls.json (no full: optional)
    base/lists/cross/k600_split{1,2}/test.csv      + index2cls.json in each (2 of the classes)
    base/lists/half/ucf101/{0,1,2}/test.csv        + index2cls.json (half of the classes), ucf101/full/
    base/lists/b2n/ucf101/train_{1,2}.csv, val.csv, test.csv, train_idx2cls.json, test_idx2cls.json
    base/lists/fewshot/train.csv, test.csv, classes.csv

``ucf101_split1/test.csv`` also names one video that does not exist (``MISSING``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from videogen import make_video

CLASSES = ["Archery", "Surfing", "PlayingGuitar", "Biking"]
VIDEOS_PER_CLASS = 4
MISSING = "Archery/v_Archery_99.mp4"


@dataclass
class ProtocolData:
    root: Path
    lists: Path  # holds cross/, half/, b2n/, fewshot/
    videos: dict[str, list[str]] = field(default_factory=dict)  # class -> relative paths


def _write_list(path: Path, rows: list[tuple[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p},{label}\n" for p, label in rows), encoding="utf-8")


def _write_classes(path: Path, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(i): n for i, n in enumerate(names)}), encoding="utf-8")


def make_protocol_data(base: Path) -> ProtocolData:
    data = ProtocolData(base / "root", base / "lists")
    for c, name in enumerate(CLASSES):
        data.videos[name] = []
        for i in range(VIDEOS_PER_CLASS):
            rel = f"{name}/v_{name}_{i}.mp4"
            (data.root / name).mkdir(parents=True, exist_ok=True)
            # Different lengths per class give the untrained model something to tell apart.
            make_video(data.root / rel, num_frames=8 + 2 * c, fps=8, size=(64, 48))
            data.videos[name].append(rel)

    def rows(classes: list[str], picks: slice, labels: list[str] | None = None) -> list[tuple[str, int]]:
        order = labels or classes
        return [(p, order.index(c)) for c in classes for p in data.videos[c][picks]]

    cross = data.lists / "cross"
    _write_classes(cross / "ucf101-index2cls.json", CLASSES)
    _write_classes(cross / "hmdb51-index2cls.json", CLASSES)
    for s, picks in enumerate((slice(0, 2), slice(1, 3), slice(2, 4)), 1):
        extra = [(MISSING, 0)] if s == 1 else []
        _write_list(cross / f"ucf101_split{s}" / "test.csv", rows(CLASSES, picks) + extra)
    _write_list(cross / "ucf101_full" / "test.csv", rows(CLASSES, slice(0, 4)))
    for s, picks in enumerate((slice(0, 2), slice(2, 4)), 1):
        _write_list(cross / f"hmdb_split{s}" / "test.csv", rows(CLASSES, picks))
    for s, subset in enumerate((CLASSES[:2], CLASSES[2:]), 1):
        _write_classes(cross / f"k600_split{s}" / "index2cls.json", subset)
        _write_list(cross / f"k600_split{s}" / "test.csv", rows(subset, slice(0, 3)))

    half = data.lists / "half" / "ucf101"
    for trial, subset in enumerate(([0, 1], [1, 3], [0, 2])):
        names = [CLASSES[i] for i in subset]
        _write_classes(half / str(trial) / "index2cls.json", names)
        _write_list(half / str(trial) / "test.csv", rows(names, slice(0, 4)))
    _write_classes(half / "full" / "index2cls.json", CLASSES)
    _write_list(half / "full" / "test.csv", rows(CLASSES, slice(0, 4)))

    b2n = data.lists / "b2n" / "ucf101"
    base_classes, novel_classes = CLASSES[:2], CLASSES[2:]
    _write_classes(b2n / "train_idx2cls.json", base_classes)
    _write_classes(b2n / "test_idx2cls.json", novel_classes)
    _write_list(b2n / "train_1.csv", rows(base_classes, slice(0, 1)))
    _write_list(b2n / "train_2.csv", rows(base_classes, slice(1, 2)))
    _write_list(b2n / "val.csv", rows(base_classes, slice(2, 4)))
    _write_list(b2n / "test.csv", rows(novel_classes, slice(2, 4)))

    few = data.lists / "fewshot"
    _write_list(few / "train.csv", rows(CLASSES, slice(0, 3)))
    _write_list(few / "test.csv", rows(CLASSES, slice(3, 4)))
    (few / "classes.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    return data
