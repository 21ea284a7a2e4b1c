"""Text4Vis's K600 zero-shot class lists (bundled) and its video lists as a cross-dataset source."""

from __future__ import annotations

import json

import pytest

from ovar.cli import main
from ovar.data import splits
from ovar.protocols.defs import cross_parts
from ovar.protocols.lists import FolderLists
from ovar.protocols.text4vis_k600 import Text4VisK600Lists, class_list_name, cross_lists
from videogen import make_video


@pytest.mark.parametrize("split", [1, 2, 3])
def test_bundled_k160_lists_have_the_specs_sizes(split):
    names = splits.read_classes(f"k600_novel_splits/k160_labels_split{split}")
    assert len(names) == 160 == len(set(names))
    assert splits.class_names(f"classes/{class_list_name(split)}") == names
    # Spec §2.3: each partition lies in K600 minus K400.
    assert set(names) <= set(splits.class_names("k600")) and not set(names) & set(splits.class_names("k400"))
    # The bundled cross-dataset K600 lists index the same names in the same order.
    assert splits.load(f"cross/k600_split{split}", "test").class_names == names


def test_the_three_partitions_cover_217_classes():
    union = set()
    for split in (1, 2, 3):
        union |= set(splits.class_names(class_list_name(split)))
    assert len(union) == 217


@pytest.fixture()
def text4vis_folder(tmp_path):
    """Text4Vis's lists/k600 layout for two partitions, videos under root/."""
    root, lists = tmp_path / "root", tmp_path / "k600"
    root.mkdir(), lists.mkdir()
    for name in ("a", "b", "c"):
        make_video(root / f"{name}.mp4", num_frames=8, fps=8, size=(48, 40))
    (lists / "test_split1_exist.txt").write_text("a.mp4 3\nb.mp4 159\n")
    (lists / "test_split2_exist.txt").write_text("c.mp4 17\na.mp4 0\nb.mp4 42\n")
    return root, lists


def test_text4vis_lists_read_with_the_bundled_classes(text4vis_folder):
    _, folder = text4vis_folder
    lists = cross_lists(folder)
    assert isinstance(lists, Text4VisK600Lists)
    assert [lists.has(f"k600_split{n}", "test") for n in (1, 2, 3)] == [True, True, False]
    assert not lists.has("k600_split1", "val") and not lists.has("ucf101_split1", "test")
    source, records, names = lists.read("k600_split2", "test")
    assert source.endswith("test_split2_exist.txt")
    assert [(r.path, r.label) for r in records] == [("c.mp4", 17), ("a.mp4", 0), ("b.mp4", 42)]
    assert names == splits.class_names("k600_novel_splits/k160_labels_split2")
    parts = cross_parts(lists, None)
    assert [(p.key, p.split, p.group) for p in parts] == [("k600/split1", "k600_split1", "K600"),
                                                           ("k600/split2", "k600_split2", "K600")]
    # A class file beside the lists wins over the bundled one.
    (folder / "k160_labels_split1.csv").write_text("id,name\n" + "".join(f"{i},class {i}\n" for i in range(160)))
    assert lists.read("k600_split1", "test")[2][:2] == ["class 0", "class 1"]
    assert isinstance(cross_lists(folder.parent), FolderLists)  # the usual layout otherwise


def test_cross_dataset_protocol_runs_on_text4vis_k600_lists(text4vis_folder, tmp_path, capsys):
    root, folder = text4vis_folder
    out = tmp_path / "out"
    code = main(["eval", "--protocol", "cross-dataset", "--root", str(root), "--lists", str(folder),
                 "--datasets", "k600", "--out", str(out), "--model", "tiny", "--pretrained", "none",
                 "--templates", "plain",  # one prompt per class: 160 classes encode quickly
                 "--workers", "0", "--batch-size", "2", "data.frames=4", "run.device=cpu"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert printed["scored"]["k600/split1"]["scored"] == 2 and printed["scored"]["k600/split2"]["scored"] == 3
    assert set(printed["summary"]) == {"K600"}
    from ovar.eval.scores import read_scores

    stored = read_scores(out / "k600" / "split2")
    assert stored["scores"].shape == (3, 160) and stored["labels"].tolist() == [17, 0, 42]
