"""`ovar eval --protocol ...` end to end on a tiny generated dataset (tests/protocol_data.py)
with the tiny backbone; the report's numbers are recomputed here from the saved per-video
scores (top-1 by argmax, mean ± std with numpy, HM by formula)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ovar.cli import main
from protocol_data import CLASSES, MISSING, make_protocol_data

BARE = ["--model", "tiny", "--pretrained", "none", "--workers", "0", "--batch-size", "2",
        "data.frames=4", "run.device=cpu"]
TRAIN = ["--recipe", "text4vis", "--workers", "0", "--batch-size", "2", "model.backbone=tiny",
         "model.pretrained=none", "data.frames=4", "data.batch_size=2", "data.workers=0", "schedule.epochs=1",
         "schedule.warmup_epochs=0", "run.device=cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_protocol_data(tmp_path_factory.mktemp("protocol"))


def _eval(capsys, *args: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["eval", *args])
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1]) if code in (0, 1) else {}
    return code, out, captured.err


def _stored(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-video scores (N, C) and labels (N,) from a part's score store."""
    from ovar.eval.scores import read_scores

    stored = read_scores(folder)
    return stored["scores"].numpy(), stored["labels"].numpy()


def _top1(folder: Path) -> float:
    scores, labels = _stored(folder)
    return 100.0 * float(np.mean(scores.argmax(1) == labels))


def _report(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert md.startswith("# ") and "| " in md
    for png in report.get("plots", []) or (out / "plots").glob("*.png"):
        assert Path(out / "plots" / Path(png).name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "plots").glob("*.png"))
    return report


def test_cross_dataset(data, tmp_path, capsys):
    out = tmp_path / "cross"
    code, printed, _ = _eval(capsys, "--protocol", "cross-dataset", "--root", str(data.root),
                             "--lists", str(data.lists / "cross"), "--out", str(out), *BARE)
    assert code == 1  # one listed video is missing: the numbers are not over the whole list
    report = _report(out)
    assert printed["summary"] == report["summary"]
    assert printed["scored"]["ucf101/split1"] == {"scored": 2 * len(CLASSES), "listed": 2 * len(CLASSES) + 1,
                                                  "missing": 1, "failed": 0}
    assert printed["scored"]["ucf101/split2"]["missing"] == 0 and report["scored"] == printed["scored"]
    assert f"ucf101/split1 ({data.lists / 'cross'}" in (out / "report.md").read_text()
    ucf = [_top1(out / "ucf101" / f"split{s}") for s in (1, 2, 3)]
    hmdb = [_top1(out / "hmdb51" / f"split{s}") for s in (1, 2)]
    k600 = [_top1(out / "k600" / f"split{s}") for s in (1, 2)]
    for name, values in (("UCF", ucf), ("HMDB", hmdb), ("K600", k600)):
        assert report["summary"][name]["mean"] == pytest.approx(np.mean(values))
        assert report["summary"][name]["std"] == pytest.approx(np.std(values))
    assert report["summary"]["UCF*"]["top1"] == pytest.approx(_top1(out / "ucf101" / "full"))
    assert "HMDB*" not in report["summary"]  # no hmdb_full in these lists
    assert report["tables"][0]["columns"] == ["model", "UCF", "HMDB", "K600", "UCF*"]
    md = (out / "report.md").read_text()
    assert f"{np.mean(ucf):.2f} ± {np.std(ucf):.2f}" in md
    # The one missing video is counted, listed and skipped; the split scores the rest.
    split1 = next(p for p in report["parts"] if p["key"] == "ucf101/split1")
    assert split1["missing"] == [MISSING] and split1["num_videos"] == 2 * len(CLASSES)
    assert MISSING in md and list(report["failures"]["missing"].values()) == [[MISSING]]
    # K600 splits use their own class lists (2 classes each).
    assert _stored(out / "k600" / "split1")[0].shape[1] == 2


def test_half_classes_and_closed(data, tmp_path, capsys):
    out = tmp_path / "half"
    code, _, _ = _eval(capsys, "--protocol", "half-classes", "--root", str(data.root),
                       "--lists", str(data.lists / "half"), "--out", str(out), *BARE)
    assert code == 0
    report = _report(out)
    trials = [_top1(out / "ucf101" / f"trial{t}") for t in range(3)]
    assert report["summary"]["UCF"]["values"] == pytest.approx(trials)
    assert report["summary"]["UCF"]["mean"] == pytest.approx(np.mean(trials))
    assert report["summary"]["UCF"]["std"] == pytest.approx(np.std(trials))
    assert report["summary"]["UCF full"]["top1"] == pytest.approx(_top1(out / "ucf101" / "full"))

    closed = tmp_path / "closed"
    few = data.lists / "fewshot"
    code, printed, _ = _eval(capsys, "--protocol", "closed", "--root", str(data.root), "--list", str(few / "test.csv"),
                             "--classes", str(few / "classes.csv"), "--out", str(closed), *BARE)
    assert code == 0
    scores, labels = _stored(closed / "closed" / "test")
    top5 = 100.0 * np.mean([label in np.argsort(-row)[:5] for row, label in zip(scores, labels)])
    assert printed["summary"]["test"]["top1"] == pytest.approx(100.0 * np.mean(scores.argmax(1) == labels))
    assert printed["summary"]["test"]["top5"] == pytest.approx(top5)

    # A bundled class list by name serves as --classes too (labels index UCF101's 101 classes).
    from ovar.data import splits

    ucf = splits.class_names("ucf101")
    listed = tmp_path / "ucf_test.csv"
    listed.write_text("".join(f"{p},{ucf.index(c)}\n" for c in CLASSES for p in data.videos[c][:1]))
    code, printed, _ = _eval(capsys, "--protocol", "closed", "--root", str(data.root), "--list", str(listed),
                             "--classes", "ucf101", "--out", str(tmp_path / "bundled"), *BARE)
    assert code == 0 and _stored(tmp_path / "bundled" / "closed" / "ucf_test")[0].shape == (len(CLASSES), 101)


def test_base2novel_trains_per_split_then_resumes_without_training(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "b2n"
    args = ["--protocol", "base2novel", "--root", str(data.root), "--lists", str(data.lists / "b2n"),
            "--out", str(out), *TRAIN]
    code, _, _ = _eval(capsys, *args)
    assert code == 0
    report = _report(out)
    splits = []
    for s in (1, 2):
        run = out / "runs" / "ucf101" / f"split{s}"
        assert (run / "final.pt").is_file() and (run / "config.yaml").is_file()
        shots = (data.lists / "b2n" / "ucf101" / f"train_{s}.csv").read_text().split()
        assert (run / "train_list.csv").read_text().split() == shots
        base, novel = _top1(out / "ucf101" / f"split{s}" / "base"), _top1(out / "ucf101" / f"split{s}" / "novel")
        assert _stored(out / "ucf101" / f"split{s}" / "novel")[0].shape[1] == 2  # the novel classes only
        splits.append((base, novel))
    base, novel = np.mean([b for b, _ in splits]), np.mean([n for _, n in splits])
    hm = 2 * base * novel / (base + novel) if base + novel else 0.0
    summary = report["summary"]["ucf101"]
    assert (summary["base"], summary["novel"], summary["hm"]) == pytest.approx((base, novel, hm))
    for got, (b, n) in zip(summary["splits"], splits):
        assert got["hm"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)
    assert report["tables"][0]["columns"] == ["model", "UCF101 Base", "UCF101 Novel", "UCF101 HM"]
    assert (out / "plots" / "base_vs_novel.png").read_bytes()[:4] == b"\x89PNG"
    assert "plots/base_vs_novel.png" in (out / "report.md").read_text()

    # A run of the protocol evaluated again from its files: as a model file (run folder) and
    # as a recipe checkpoint (final.pt); both score split 1's base list as the protocol did.
    run, b2n = out / "runs" / "ucf101" / "split1", data.lists / "b2n" / "ucf101"
    closed = ["--protocol", "closed", "--root", str(data.root), "--list", str(b2n / "val.csv"), "--classes",
              str(b2n / "train_idx2cls.json"), "--workers", "0", "--batch-size", "2"]
    base_scores = _stored(out / "ucf101" / "split1" / "base")[0]
    code, _, _ = _eval(capsys, *closed, "--checkpoint", str(run), "--out", str(tmp_path / "file"), "data.frames=4")
    assert code == 0
    np.testing.assert_allclose(_stored(tmp_path / "file" / "closed" / "val")[0], base_scores, atol=1e-5)
    code, _, _ = _eval(capsys, *closed, "--checkpoint", str(run / "final.pt"), "--out", str(tmp_path / "ckpt"),
                       *TRAIN, f"data.classes={b2n / 'train_idx2cls.json'}")
    assert code == 0
    np.testing.assert_allclose(_stored(tmp_path / "ckpt" / "closed" / "val")[0], base_scores, atol=1e-5)

    # The same command again: nothing is trained or scored, the report is the same.
    import ovar.train.loop

    monkeypatch.setattr(ovar.train.loop, "train", lambda *a, **k: pytest.fail("trained again"))
    code, again, _ = _eval(capsys, *args)
    assert code == 0 and again["summary"] == report["summary"]

    # Another split number, or other settings in the same folder: one-line usage errors.
    code, _, err = _eval(capsys, *args, "--splits", "3")
    assert code == 2 and "no training split 3" in err and len(err.strip().splitlines()) == 1
    code, _, err = _eval(capsys, *args, "--views", "2x1")
    assert code == 2 and "other settings" in err


def test_few_shot(data, tmp_path, capsys):
    from ovar.data.lists import read_list
    from ovar.data.subsets import k_shot

    out = tmp_path / "few"
    few = data.lists / "fewshot"
    code, printed, _ = _eval(capsys, "--protocol", "few-shot", "--root", str(data.root), "--train-list",
                             str(few / "train.csv"), "--list", str(few / "test.csv"), "--classes",
                             str(few / "classes.csv"), "--shots", "1,2", "--seed", "3", "--out", str(out), *TRAIN)
    assert code == 0
    report = _report(out)
    assert report["tables"][0]["columns"] == ["test list", "K=1", "K=2"]
    train = read_list(few / "train.csv")
    for k in (1, 2):
        drawn = read_list(out / "runs" / f"shots{k}" / "train_list.csv")
        assert drawn == k_shot(train, k, 3) and len(drawn) == k * len(CLASSES)
        assert printed["summary"][f"K={k}"]["mean"] == pytest.approx(_top1(out / f"shots{k}" / "test"))


def test_interrupted_evaluation_resumes_without_rescoring(data, tmp_path, capsys, monkeypatch):
    from ovar.data.dataset import VideoDataset

    args = ["--protocol", "cross-dataset", "--datasets", "hmdb51", "--root", str(data.root),
            "--lists", str(data.lists / "cross"), *BARE]
    code, reference, _ = _eval(capsys, *args, "--out", str(tmp_path / "whole"))
    assert code == 0

    original = VideoDataset.__getitem__
    calls = []

    def counting(self, key, limit=None):
        calls.append(key)
        if limit is not None and len(calls) > limit:
            raise KeyboardInterrupt
        return original(self, key)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(VideoDataset, "__getitem__", lambda self, key: counting(self, key, limit=5))
    assert main(["eval", *args, "--out", str(out)]) == 130  # stopped in split 1's third batch
    scored = len(_stored(out / "hmdb51" / "split1")[1])
    assert 2 <= scored < 8

    calls.clear()
    monkeypatch.setattr(VideoDataset, "__getitem__", lambda self, key: counting(self, key))
    code, resumed, _ = _eval(capsys, *args, "--out", str(out))
    assert code == 0
    assert len(calls) == 16 - scored  # two splits of 8 videos; none scored twice
    assert resumed["summary"] == reference["summary"]
    whole = json.loads((tmp_path / "whole" / "report.json").read_text())
    again = json.loads((out / "report.json").read_text())
    assert [(p["key"], p["top1"], p["top5"]) for p in again["parts"]] == \
        [(p["key"], p["top1"], p["top5"]) for p in whole["parts"]]


def test_usage_errors(data, tmp_path, capsys):
    empty = tmp_path / "lists"
    (empty / "hmdb_split1").mkdir(parents=True)
    (empty / "hmdb_split1" / "test.csv").write_text("nowhere/a.mp4,0\nnowhere/b.mp4,1\n")
    (empty / "hmdb51-index2cls.json").write_text(json.dumps({"0": "a", "1": "b"}))
    code, _, err = _eval(capsys, "--protocol", "cross-dataset", "--root", str(data.root), "--lists", str(empty),
                         "--out", str(tmp_path / "o1"), *BARE)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ovar: error: ")
    assert "hmdb_split1" in lines[0] and str(data.root) in lines[0] and "none of its 2 videos" in lines[0]

    code, _, err = _eval(capsys, "--protocol", "cross-dataset", "--root", str(data.root), "--lists",
                         str(data.lists / "cross"), "--datasets", "kinetics", "--out", str(tmp_path / "o2"), *BARE)
    assert code == 2 and "unknown cross-dataset dataset 'kinetics'" in err
    code, _, err = _eval(capsys, "--protocol", "few-shot", "--root", str(data.root), "--out", str(tmp_path / "o3"),
                         *BARE)
    assert code == 2 and "--recipe/--config" in err
    code, _, err = _eval(capsys, "--protocol", "cross-dataset", "--root", str(data.root), "--out",
                         str(tmp_path / "o4"), "data.frames=4")
    assert code == 2 and "--checkpoint" in err


def test_base2novel_of_a_bare_clip_with_descriptions(data, tmp_path, capsys):
    args = ["--protocol", "base2novel", "--root", str(data.root), "--lists", str(data.lists / "b2n"), *BARE]
    code, printed, _ = _eval(capsys, *args, "--out", str(tmp_path / "plain"))
    assert code == 0
    base, novel = _top1(tmp_path / "plain" / "ucf101" / "base"), _top1(tmp_path / "plain" / "ucf101" / "novel")
    summary = printed["summary"]["ucf101"]
    assert (summary["base"], summary["novel"]) == pytest.approx((base, novel))
    assert summary["hm"] == pytest.approx(2 * base * novel / (base + novel) if base + novel else 0.0)

    # One descriptions file serves the base and the novel class lists (matched by name).
    described = tmp_path / "descriptions.json"
    described.write_text(json.dumps({str(i): f"{n}: a person doing {n.lower()} outdoors"
                                     for i, n in enumerate(CLASSES)}))
    code, _, _ = _eval(capsys, *args, "--descriptions", str(described), "--out", str(tmp_path / "described"))
    assert code == 0
    plain = _stored(tmp_path / "plain" / "ucf101" / "novel")[0]
    assert not np.allclose(_stored(tmp_path / "described" / "ucf101" / "novel")[0], plain)


def test_bundled_lists_on_a_partial_copy(tmp_path, capsys):
    """The bundled HMDB51 lists against a root holding three of their videos: the rest are
    counted as missing, the report names them (report.md the first 50)."""
    from ovar.data import splits
    from videogen import make_video

    def paths(*names: str) -> set[str]:
        return set.intersection(*({r.path for r in splits.load(n, "test").records} for n in names))

    cross = sorted(paths(*(f"cross/hmdb_split{s}" for s in (1, 2, 3)), "cross/hmdb_full"))[:2]
    half = sorted(paths(*(f"half/hmdb/{t}" for t in range(10)), "cross/hmdb_full"))[:1]
    root = tmp_path / "hmdb"
    for rel in cross + half:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make_video(root / rel, num_frames=8, fps=8, size=(64, 48), codec="mpeg4")

    out = tmp_path / "cross"
    code, printed, _ = _eval(capsys, "--protocol", "cross-dataset", "--datasets", "hmdb51", "--root", str(root),
                             "--out", str(out), *BARE)
    assert code == 1 and set(printed["summary"]) == {"HMDB", "HMDB*"}
    report = _report(out)
    split1 = next(p for p in report["parts"] if p["key"] == "hmdb51/split1")
    assert split1["num_videos"] == 2 and split1["num_listed"] == 1530 and len(split1["missing"]) == 1528
    assert split1["num_classes"] == 51 and "more in report.json" in (out / "report.md").read_text()

    out = tmp_path / "half"
    code, printed, _ = _eval(capsys, "--protocol", "half-classes", "--datasets", "hmdb51", "--root", str(root),
                             "--out", str(out), *BARE)
    assert code == 1
    report = _report(out)
    assert len(printed["summary"]["HMDB"]["values"]) == 10
    full = next(p for p in report["parts"] if p["key"] == "hmdb51/full")
    assert full["num_listed"] == 5100 and full["num_videos"] == 3 and full["num_classes"] == 51
