"""`ovar.hub`: the one table of what ovar builds, and one loader that takes any model or
checkpoint file ovar writes (and a run folder) in every command, with the same scores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import ovar
from ovar import hub
from ovar.cli import main
from ovar.config import load_config
from ovar.models.model_file import load_model_file
from ovar.recipes import Recipe, get_recipe
from ovar.train import train
from videogen import make_video

CLASSES = ["archery", "surfing water", "playing guitar"]
LABELS = ["juggling balls", "archery", "rowing a boat", "surfing water"]


def test_the_tables_name_what_they_build():
    for kind, entry in hub.MODEL_KINDS.items():
        assert hub.model_class(kind).kind == kind, entry
    for name in hub.RECIPES:
        assert issubclass(get_recipe(name), Recipe) and get_recipe(name) is hub.recipe_class(name)
    for source in hub.CHECKPOINT_SOURCES:
        assert callable(hub.converter(source))
    import ovar.models.convert as convert

    assert convert.SOURCES == tuple(hub.CHECKPOINT_SOURCES)
    assert all(hub.converter(source) is getattr(convert, f"convert_{source.replace('-', '_')}")
               for source in convert.SOURCES if source != "mmaction2-actionclip")
    assert hub.converter("mmaction2-actionclip") is convert.convert_mmaction2
    assert not hasattr(convert, "CONVERTERS")  # one table: the hub's


def test_the_hub_table_imports_no_torch():
    code = "import sys, ovar.hub; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch text4vis run evaluated once (so it writes best.pt), plus an
    averaged-weights file of its one epoch: six spellings of the same weights."""
    root = tmp_path_factory.mktemp("videos")
    lines = []
    for label in range(len(CLASSES)):
        for i in range(2):
            make_video(root / f"c{label}_{i}.mp4", num_frames=10, fps=10, size=(72, 64))
            lines.append(f"c{label}_{i}.mp4 {label}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))  # header-less
    out = tmp_path_factory.mktemp("run")
    config = load_config(None, [
        "recipe.name=text4vis", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'train.txt'}", f"data.val_list={root / 'train.txt'}",
        f"data.classes={root / 'classes.csv'}", "data.frames=4", "data.batch_size=3", "data.workers=0",
        "schedule.epochs=1", "schedule.warmup_epochs=0", "optim.lr=2e-2", f"run.out_dir={out}",
        "run.device=cpu", "eval.every_n_epochs=1"])
    assert train(config, get_recipe("text4vis")(config)).completed
    averaged = out / "averaged.pt"
    assert main(["weights", "average", str(out / "checkpoints" / "epoch_0001.pt"), "--from-epoch", "1",
                 "--out", str(averaged)]) == 0
    return out, root


def _sources(out):
    return {"run folder": out, "final.pt": out / "final.pt", "best.pt": out / "checkpoints" / "best.pt",
            "epoch": out / "checkpoints" / "epoch_0001.pt", "averaged": out / "averaged.pt",
            "model file": out / "model.pt"}


def test_every_file_a_run_writes_loads_with_the_same_scores(run, capsys):
    out, root = run
    for path in _sources(out).values():
        assert path.exists(), path
    video = root / "c1_0.mp4"
    reference = ovar.predict(video, LABELS, model=load_model_file(out / "model.pt"))
    expected = {p.label: p.score for p in reference.predictions}
    assert len(set(expected.values())) > 1  # a trained model, not a uniform one
    for name, path in _sources(out).items():
        capsys.readouterr()
        assert main(["predict", str(video), "--labels", ", ".join(LABELS), "--checkpoint", str(path),
                     "--format", "json", "--device", "cpu", "--workers", "0"]) == 0, name
        (result,) = json.loads(capsys.readouterr().out)
        got = {p["label"]: p["score"] for p in result["predictions"]}
        assert got.keys() == expected.keys(), name
        for label, score in expected.items():
            assert got[label] == pytest.approx(score, abs=1e-5), (name, label)


def test_eval_takes_every_file_a_run_writes(run, capsys):
    out, _ = run
    metrics = {}
    for name, path in _sources(out).items():
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(path), "data.workers=0"]) == 0, name
        metrics[name] = json.loads(capsys.readouterr().out)
    first = metrics["model file"]
    assert first["num_samples"] == 2 * len(CLASSES)
    for name, found in metrics.items():
        assert found["top1"] == pytest.approx(first["top1"]), name


def test_export_takes_a_run_checkpoint(run, tmp_path):
    out, root = run
    assert main(["export", str(out / "final.pt"), str(tmp_path / "exported")]) == 0
    video = root / "c2_1.mp4"
    a = ovar.predict(video, LABELS, model=hub.load_model(pretrained=str(tmp_path / "exported")))
    b = ovar.predict(video, LABELS, model=load_model_file(out / "model.pt"))
    assert [(p.label, round(p.score, 5)) for p in a.predictions] == [(p.label, round(p.score, 5)) for p in b.predictions]


def test_a_folder_without_a_model_is_one_line(tmp_path, capsys):
    make_video(tmp_path / "x.mp4", num_frames=4, fps=4, size=(32, 32))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(tmp_path / "x.mp4"), "--labels", "a, b", "--checkpoint", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no model.pt" in err and len(err.splitlines()) == 1


def test_weights_of_another_recipe_are_refused(run, tmp_path):
    out, _ = run
    state = torch.load(out / "final.pt", weights_only=True)
    state["model"] = {k: v for k, v in list(state["model"].items())[1:]}  # one tensor short
    broken = out / "checkpoints" / "broken.pt"
    torch.save(state, broken)
    try:
        with pytest.raises(ovar.errors.OvarError, match="weights do not match"):
            hub.load_model(checkpoint=broken)
    finally:
        broken.unlink()
