"""Bundled protocol splits and class lists, their packaging, and `ovar data splits`."""

from __future__ import annotations

import argparse
import glob
import io
import json
from pathlib import Path

import pytest

import ovar
from conftest import REPO, shared_dir
from ovar.cli.data_splits import add_splits_parser, run
from ovar.data import splits
from ovar.errors import OvarError

BUNDLED = Path(ovar.__file__).parent / "data" / "bundled"


def counts(name: str) -> dict[str, tuple[int, int]]:
    """part → (classes, videos), from the listing."""
    info = next(i for i in splits.list_splits() if i.name == name)
    return {p.name: (p.num_classes, p.num_videos) for p in info.parts}


# --- counts stated in shared/data/README.md and the Datasets issue ----------------------

def test_b2n_k400_parts_and_counts():
    c = counts("b2n/k400")
    assert list(c) == ["train_1", "train_2", "train_3", "val", "test"]
    assert c["train_1"] == (200, 3121) and c["val"] == (200, 9883) and c["test"] == (200, 9857)


@pytest.mark.parametrize("dataset, base, novel", [
    ("k400", 200, 200), ("hmdb51", 26, 25), ("ucf101", 51, 50), ("ssv2", 87, 87)])
def test_b2n_base_and_novel_class_counts(dataset, base, novel):
    c = counts(f"b2n/{dataset}")
    assert {c[p][0] for p in c if p != "test"} == {base}
    assert c["test"][0] == novel


@pytest.mark.parametrize("dataset, total", [("k400", 400), ("hmdb51", 51), ("ucf101", 101)])
def test_b2n_base_and_novel_labels_partition_the_class_folders(dataset, total):
    """Each label of val (base) and test (novel) is one class folder of the video paths;
    together they are every class of the dataset, each once."""
    folders = {}
    for part in ("val", "test"):
        split = splits.load(f"b2n/{dataset}", part)
        by_label: dict[int, set[str]] = {}
        for record in split.records:
            by_label.setdefault(record.label, set()).add(Path(record.path).parent.name)
        assert sorted(by_label) == list(range(split.num_classes))
        assert all(len(found) == 1 for found in by_label.values())
        folders[part] = {found.pop() for found in by_label.values()}
    assert not folders["val"] & folders["test"]
    assert len(folders["val"] | folders["test"]) == total


def test_b2n_hmdb51_names_partition_the_hmdb51_class_list():
    # (K400's B2N names were lightly edited upstream, e.g. "driving a car", so only HMDB compares by name.)
    base = splits.load("b2n/hmdb51", "val").class_names
    novel = splits.load("b2n/hmdb51", "test").class_names
    assert sorted(base + novel) == sorted(splits.class_names("hmdb51"))


def test_b2n_ssv2_repeated_novel_name_is_kept_and_warned():
    published = json.loads((BUNDLED / "splits/b2n/ssv2/test_idx2cls.json").read_text())
    repeated = len(published) - len(set(published.values()))
    assert repeated == 1  # FROSTER's conversion cut names at their first comma
    with pytest.warns(UserWarning, match="share the name"):
        split = splits.load("b2n/ssv2", "test")
    assert split.class_names == [published[str(i)] for i in range(len(published))]


@pytest.mark.parametrize("name, videos, classes", [
    ("cross/ucf101_split1", 3783, 101), ("cross/ucf101_split2", 3734, 101), ("cross/ucf101_split3", 3696, 101),
    ("cross/hmdb_split1", 1530, 51), ("cross/hmdb_split2", 1530, 51), ("cross/hmdb_split3", 1530, 51),
    ("cross/ucf101_full", 13320, 101), ("cross/hmdb_full", 5100, 51),
    ("cross/k600_split1", 7276, 160), ("cross/k600_split2", 7226, 160), ("cross/k600_split3", 7261, 160),
])
def test_cross_dataset_counts(name, videos, classes):
    assert counts(name) == {"test": (classes, videos)}
    split = splits.load(name)
    assert len(split.records) == videos and split.num_classes == classes


@pytest.mark.parametrize("k", [1, 2, 3])
def test_k600_cross_classes_match_the_k160_class_lists(k):
    assert splits.load(f"cross/k600_split{k}").class_names == \
        splits.class_names(f"k600_novel_splits/k160_labels_split{k}")


@pytest.mark.parametrize("dataset, full_split, full_list", [
    ("ucf101", "cross/ucf101_full", "ucf101"), ("hmdb", "cross/hmdb_full", "hmdb51")])
def test_half_class_trials(dataset, full_split, full_list):
    names = [i.name for i in splits.list_splits() if i.name.startswith(f"half/{dataset}/")]
    assert sorted(names) == [f"half/{dataset}/{trial}" for trial in range(10)]
    half = len(splits.class_names(full_list)) // 2  # Text4Vis: len(classes) // 2
    all_names = set(splits.load(full_split).class_names)
    for name in names:
        split = splits.load(name)
        assert split.num_classes == half and set(split.class_names) <= all_names
        assert {r.label for r in split.records} == set(range(half))


@pytest.mark.parametrize("dataset, size", [
    ("k400", 400), ("k600", 600), ("k700", 700), ("ucf101", 101), ("hmdb51", 51), ("ssv2", 174),
    ("activitynet", 200)])
def test_bundled_class_lists(dataset, size):
    names = splits.class_names(dataset)
    assert len(names) == size == len(set(names))
    assert splits.class_names(f"classes/{dataset}") == names


@pytest.mark.filterwarnings("ignore:.*share the name:UserWarning")  # b2n/ssv2, tested above
def test_listed_counts_equal_loaded_records():
    for info in splits.list_splits():
        for part in info.parts:
            split = splits.load(info.name, part.name)
            assert (split.num_classes, len(split)) == (part.num_classes, part.num_videos), (info.name, part.name)
            assert max(r.label for r in split.records) < split.num_classes


# --- API behaviour ----------------------------------------------------------------------

def test_load_returns_fresh_lists():
    first = splits.load("cross/hmdb_split1")
    first.records.clear()
    first.class_names.clear()
    again = splits.load("cross/hmdb_split1")
    assert len(again.records) == 1530 and len(again.class_names) == 51
    assert again.records[0].path.endswith(".avi") and again.name == "cross/hmdb_split1" and again.part == "test"


@pytest.mark.parametrize("call, words", [
    (lambda: splits.load("b2n/k40"), "did you mean: b2n/k400"),
    (lambda: splits.load("hmdb_split1"), "cross/hmdb_split1"),
    (lambda: splits.load("classes/k400"), "class_names()"),
    (lambda: splits.load("b2n/k400", "train"), "parts: train_1, train_2, train_3, val, test"),
    (lambda: splits.class_names("k40"), "did you mean: k400"),
    (lambda: splits.load("nothing-like-it"), "ovar data splits"),
])
def test_unknown_names(call, words):
    with pytest.raises(OvarError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


# --- packaging --------------------------------------------------------------------------

def bundled_files() -> list[Path]:
    return sorted(p for p in BUNDLED.rglob("*") if p.is_file())


def test_bundled_root_is_the_package_folder():
    root = splits.bundled_root()
    assert root.is_dir() and (root / "labels").is_dir() and (root / "splits").is_dir()
    assert Path(str(root)).resolve() == BUNDLED.resolve()


def test_bundled_copy_equals_shared_data_byte_for_byte():
    data = shared_dir() / "data"
    if not data.is_dir():
        pytest.skip("shared data folder not available")
    shipped = {p.relative_to(BUNDLED) for p in bundled_files()}
    expected = {p.relative_to(data) for folder in ("labels", "splits") for p in (data / folder).rglob("*")
                if p.is_file()} | {Path("README.md")}
    assert shipped == expected
    different = [str(rel) for rel in sorted(shipped) if (BUNDLED / rel).read_bytes() != (data / rel).read_bytes()]
    assert different == []


def test_package_data_globs_cover_every_bundled_file():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["ovar"]
    package = REPO / "src" / "ovar"
    # setuptools expands package-data patterns with glob(recursive=True) inside the package.
    covered = {Path(p).resolve() for pattern in patterns for p in glob.glob(str(package / pattern), recursive=True)}
    missing = [str(p.relative_to(BUNDLED)) for p in bundled_files() if p.resolve() not in covered]
    assert missing == [] and "models/configs/*.json" in patterns


# --- ovar data splits -------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_splits_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["splits", *argv])


def test_cli_table():
    out = io.StringIO()
    args = parse("b2n/hmdb")
    assert args.handler is run and run(args, out) == 0
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert rows == [["split", "part", "classes", "videos"], ["b2n/hmdb51", "train_1", "26", "416"],
                    ["val", "26", "780"], ["test", "25", "750"]]


def test_cli_json_lists_splits_and_class_lists():
    out = io.StringIO()
    run(parse("--format", "json"), out)
    payload = json.loads(out.getvalue())
    by_name = {s["name"]: s for s in payload["splits"]}
    assert len(by_name) == 4 + 11 + 20
    assert by_name["cross/ucf101_split2"]["parts"] == [{"part": "test", "num_classes": 101, "num_videos": 3734}]
    lists = {c["name"]: c["num_classes"] for c in payload["class_lists"]}
    assert lists["classes/k700"] == 700 and lists["classes/ssv2"] == 174


def test_cli_filter_without_match_is_an_error():
    with pytest.raises(OvarError, match="no bundled split or class list matches 'zzz'"):
        run(parse("zzz"), io.StringIO())
