"""Every figure a protocol reports, from fixed score tables and per-split results whose
accuracies differ per class, per split and between base and novel (nothing saturates at
100), checked against a brute-force computation here.

Score tables are put in place of an evaluation's stored scores (the evaluation then resumes
from them without scoring); per-split results are put in place of finished parts (the
protocol then aggregates them without training).  The papers' aggregates
(docs: protocols; spec §2): base and novel are each the mean over the training splits and
HM is the harmonic mean of those two means, not the mean of per-split HMs; split columns
are mean ± population std.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from ovar.cli import main
from protocol_data import CLASSES, make_protocol_data

BARE = ["--model", "tiny", "--pretrained", "none", "--workers", "0", "--batch-size", "4",
        "data.frames=2", "run.device=cpu"]
TRAIN = ["--recipe", "text4vis", "--workers", "0", "model.backbone=tiny", "model.pretrained=none",
         "data.frames=2", "data.workers=0", "schedule.epochs=1", "run.device=cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_protocol_data(tmp_path_factory.mktemp("figures"))


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    code = main(["eval", *args])
    assert code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# --- brute force ---------------------------------------------------------------------------------


def _ranked(row: list[float]) -> list[int]:
    return sorted(range(len(row)), key=lambda c: -row[c])


def _brute_metrics(table: list[list[float]], labels: list[int], num_classes: int) -> dict:
    hits1 = [_ranked(row)[0] == y for row, y in zip(table, labels)]
    hits5 = [y in _ranked(row)[:5] for row, y in zip(table, labels)]
    per_class = []
    for c in range(num_classes):
        mine = [h for h, y in zip(hits1, labels) if y == c]
        per_class.append(100.0 * sum(mine) / len(mine) if mine else None)
    present = [a for a in per_class if a is not None]
    return {"top1": 100.0 * sum(hits1) / len(labels), "top5": 100.0 * sum(hits5) / len(labels),
            "mean_class": sum(present) / len(present), "per_class": per_class}


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _hm(b: float, n: float) -> float:
    return 2 * b * n / (b + n)


def _table(labels: list[int], num_classes: int, rank_of_truth: list[int], seed: int) -> list[list[float]]:
    """A score table (N, C) where video i's true class is ranked ``rank_of_truth[i]`` (0 = top)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for y, rank in zip(labels, rank_of_truth):
        others = [c for c in torch.randperm(num_classes, generator=generator).tolist() if c != y]
        order = others[:rank] + [y] + others[rank:]
        rows.append([0.0] * num_classes)
        for position, c in enumerate(order):
            rows[-1][c] = float(num_classes - position) + 0.01 * position * position
    return rows


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_of_a_fixed_table():
    from ovar.eval import compute_metrics

    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 4]  # class 3 absent, class 5 absent
    ranks = [0, 0, 3, 1, 0, 0, 5, 2, 0, 6]
    table = _table(labels, 7, ranks, seed=0)
    m = compute_metrics(torch.tensor(table), torch.tensor(labels))
    want = _brute_metrics(table, labels, 7)
    assert (m.top1, m.top5) == pytest.approx((50.0, 80.0))  # 5 at rank 0; ranks 0..4: 8 of 10
    assert m.per_class_accuracy == pytest.approx([200 / 3, 50.0, 50.0, None, 0.0, None, None])
    assert m.mean_class_accuracy == pytest.approx((200 / 3 + 50 + 50 + 0) / 4)
    assert (m.top1, m.top5, m.mean_class_accuracy) == pytest.approx((want["top1"], want["top5"], want["mean_class"]))
    assert m.class_counts == [3, 2, 4, 0, 1, 0, 0]
    assert sum(m.confusion[c][c] for c in range(7)) == 5


def test_aggregates_by_hand():
    from ovar.eval import harmonic_mean, mean_std

    assert mean_std([60.0, 70.0, 95.0]) == pytest.approx((75.0, math.sqrt((225 + 25 + 400) / 3)))
    assert harmonic_mean(80.0, 20.0) == pytest.approx(32.0)


# --- closed set: a score table in place of the stored scores ---------------------------------------


def _replace_scores(folder: Path, table: list[list[float]]) -> list[int]:
    """Put ``table`` (list order) in place of ``folder``'s stored scores; forget its result."""
    final = folder / "scores.pt"
    stored = torch.load(final, weights_only=True)
    stored["scores"] = torch.tensor([table[i] for i in stored["indices"].tolist()])
    torch.save(stored, final)
    for name in ("result.json", "metrics.json"):
        (folder / name).unlink(missing_ok=True)
    return [int(x) for x in stored["labels"].tolist()]


def test_closed_protocol_reports_the_figures_of_a_score_table(data, tmp_path, capsys):
    names = [*CLASSES, "Rowing", "Diving", "Fencing"]  # 7 classes: top-5 is not everything
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    rows = [(p, c) for c, name in enumerate(CLASSES) for p in data.videos[name][: c + 1]]  # 1, 2, 3, 4 videos
    (tmp_path / "list.csv").write_text("".join(f"{p},{c}\n" for p, c in rows))
    args = ["--protocol", "closed", "--root", str(data.root), "--list", str(tmp_path / "list.csv"),
            "--classes", str(tmp_path / "classes.txt"), "--out", str(tmp_path / "out"), *BARE]
    _eval(capsys, *args)
    labels = [c for _, c in rows]
    table = _table(labels, len(names), [1, 0, 6, 0, 0, 3, 0, 2, 5, 0], seed=1)
    assert _replace_scores(tmp_path / "out" / "closed" / "list", table) == labels
    printed = _eval(capsys, *args)

    want = _brute_metrics(table, labels, len(names))
    assert (want["top1"], want["top5"]) == pytest.approx((50.0, 80.0))
    assert want["mean_class"] == pytest.approx((0 + 50 + 200 / 3 + 50) / 4)
    summary = printed["summary"]["list"]
    assert (summary["top1"], summary["top5"], summary["mean_class"]) == \
        pytest.approx((want["top1"], want["top5"], want["mean_class"]))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["tables"][0]["rows"][0][1:5] == pytest.approx([10, want["top1"], want["top5"], want["mean_class"]])
    metrics = json.loads((tmp_path / "out" / "closed" / "list" / "metrics.json").read_text())
    assert metrics["per_class_accuracy"] == pytest.approx(want["per_class"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"| {want['top1']:.2f} | {want['top5']:.2f} | {want['mean_class']:.2f} |" in md


# --- base-to-novel ---------------------------------------------------------------------------------


def test_base2novel_of_one_model_from_score_tables(data, tmp_path, capsys):
    """Base and novel top-1 from their own tables; HM of the two."""
    args = ["--protocol", "base2novel", "--root", str(data.root), "--lists", str(data.lists / "b2n"),
            "--out", str(tmp_path / "out"), *BARE]
    _eval(capsys, *args)
    tops = {}
    for part, ranks in (("base", [0, 0, 0, 1]), ("novel", [1, 0, 1, 1])):
        folder = tmp_path / "out" / "ucf101" / part
        labels = json.loads((folder / "scores_meta.json").read_text())["labels"]
        table = _table(labels, 2, ranks, seed=2)
        _replace_scores(folder, table)
        tops[part] = _brute_metrics(table, labels, 2)["top1"]
    assert tops == {"base": 75.0, "novel": 25.0}
    summary = _eval(capsys, *args)["summary"]["ucf101"]
    assert (summary["base"], summary["novel"], summary["hm"]) == pytest.approx((75.0, 25.0, 37.5))


# Per training split (base top-1, novel top-1): the HM of the means (70, 55) is 61.6; the
# mean of the per-split HMs would be 59.0, and the mean of base and novel 62.5.
SPLITS = {1: (80.0, 40.0), 2: (60.0, 70.0)}


def _finished_part(out: Path, key: str, top1: float, group: str, dataset: str = "ucf101") -> None:
    from ovar.protocols.run import PartResult

    folder = out / key
    folder.mkdir(parents=True, exist_ok=True)
    result = PartResult(key, dataset, group, "given", top1, min(100.0, top1 + 10), top1 - 5, 4, 4, 2)
    (folder / "result.json").write_text(json.dumps(asdict(result)))


def test_base2novel_hm_is_of_the_mean_base_and_mean_novel(data, tmp_path, capsys, monkeypatch):
    import ovar.train.loop

    monkeypatch.setattr(ovar.train.loop, "train", lambda *a, **k: pytest.fail("nothing should train"))
    out = tmp_path / "out"
    for split, (base, novel) in SPLITS.items():
        _finished_part(out, f"ucf101/split{split}/base", base, "base")
        _finished_part(out, f"ucf101/split{split}/novel", novel, "novel")
    printed = _eval(capsys, "--protocol", "base2novel", "--root", str(data.root), "--lists", str(data.lists / "b2n"),
                    "--out", str(out), *TRAIN)

    base, base_std = _mean_std([b for b, _ in SPLITS.values()])
    novel, novel_std = _mean_std([n for _, n in SPLITS.values()])
    hm = _hm(base, novel)
    assert (base, novel, round(hm, 1)) == (70.0, 55.0, 61.6)
    assert abs(hm - sum(_hm(b, n) for b, n in SPLITS.values()) / 2) > 2  # the wrong aggregate differs
    summary = printed["summary"]["ucf101"]
    assert (summary["base"], summary["novel"], summary["hm"]) == pytest.approx((base, novel, hm))
    assert (summary["base_std"], summary["novel_std"]) == pytest.approx((base_std, novel_std))
    assert [v for s in summary["splits"] for v in (s["base"], s["novel"], s["hm"])] == \
        pytest.approx([v for b, n in SPLITS.values() for v in (b, n, _hm(b, n))])
    report = json.loads((out / "report.json").read_text())
    wide = report["tables"][0]["rows"]
    assert len(wide) == 1 and wide[0][0] == report["model"] and wide[0][1:] == pytest.approx([base, novel, hm])
    assert report["tables"][1]["rows"][0][1:] == pytest.approx([base, novel, hm])
    assert f"| {base:.2f} | {novel:.2f} | {hm:.2f} |" in (out / "report.md").read_text()


# --- cross-dataset: mean ± std over the test splits, one pass for the full list --------------------


def test_cross_dataset_mean_and_population_std(data, tmp_path, capsys):
    out = tmp_path / "out"
    given = {"ucf101/split1": (81.0, "UCF"), "ucf101/split2": (84.0, "UCF"), "ucf101/split3": (90.0, "UCF"),
             "ucf101/full": (77.0, "UCF*"), "hmdb51/split1": (40.0, "HMDB"), "hmdb51/split2": (55.0, "HMDB"),
             "k600/split1": (70.0, "K600"), "k600/split2": (64.0, "K600")}
    for key, (top1, group) in given.items():
        _finished_part(out, key, top1, group, key.split("/")[0])
    printed = _eval(capsys, "--protocol", "cross-dataset", "--root", str(data.root), "--lists",
                    str(data.lists / "cross"), "--out", str(out), *BARE)
    summary = printed["summary"]
    for column in ("UCF", "HMDB", "K600"):
        values = [v for v, g in given.values() if g == column]
        mean, std = _mean_std(values)
        assert (summary[column]["mean"], summary[column]["std"]) == pytest.approx((mean, std)), column
        assert summary[column]["values"] == values
    assert summary["UCF"]["mean"] == pytest.approx(85.0) and summary["UCF"]["std"] == pytest.approx(math.sqrt(14))
    assert summary["UCF*"] == {"top1": 77.0}
    report = json.loads((out / "report.json").read_text())
    assert report["tables"][0]["columns"] == ["model", "UCF", "HMDB", "K600", "UCF*"]
    assert report["tables"][0]["rows"][0][1] == pytest.approx({"mean": 85.0, "std": math.sqrt(14)})
    assert f"85.00 ± {math.sqrt(14):.2f}" in (out / "report.md").read_text()


# --- few-shot: one column per K, the mean ± std over the test lists --------------------------------


def test_few_shot_mean_over_test_lists(data, tmp_path, capsys, monkeypatch):
    import ovar.train.loop

    monkeypatch.setattr(ovar.train.loop, "train", lambda *a, **k: pytest.fail("nothing should train"))
    few, out = data.lists / "fewshot", tmp_path / "out"
    for name in ("first", "second"):
        (tmp_path / f"{name}.csv").write_text((few / "test.csv").read_text())
    given = {(1, "first"): 30.0, (1, "second"): 45.0, (2, "first"): 50.0, (2, "second"): 80.0}
    for (k, name), top1 in given.items():
        _finished_part(out, f"shots{k}/{name}", top1, f"K={k}", name)
    printed = _eval(capsys, "--protocol", "few-shot", "--root", str(data.root), "--train-list", str(few / "train.csv"),
                    "--list", str(tmp_path / "first.csv"), "--list", str(tmp_path / "second.csv"), "--classes",
                    str(few / "classes.csv"), "--shots", "1,2", "--out", str(out), *TRAIN)
    for k in (1, 2):
        values = [given[(k, "first")], given[(k, "second")]]
        mean, std = _mean_std(values)
        got = printed["summary"][f"K={k}"]
        assert (got["mean"], got["std"], got["values"]) == (pytest.approx(mean), pytest.approx(std), values)
    rows = json.loads((out / "report.json").read_text())["tables"][0]["rows"]
    assert rows[0] == ["first", 30.0, 50.0] and rows[1] == ["second", 45.0, 80.0]
    assert rows[2][0] == "mean" and rows[2][1:] == [pytest.approx({"mean": 37.5, "std": 7.5}),
                                                    pytest.approx({"mean": 65.0, "std": 15.0})]
