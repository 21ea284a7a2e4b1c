"""`ovar export`: a trained run -> safetensors + config.json + card, loaded back from a
folder and from the Hugging Face Hub cache (offline), with the same scores."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

import ovar
from ovar.cli import main
from ovar.config import load_config
from ovar.hub import load_model
from ovar.recipes import get_recipe
from ovar.train import train
from videogen import make_video

CLASSES = ["archery", "surfing water", "playing guitar"]
LABELS = ["juggling balls", "archery", "rowing a boat", "surfing water"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch text4vis run on the tiny backbone (it writes model.pt + config.yaml)."""

    root = tmp_path_factory.mktemp("videos")
    lines = []
    for label in range(len(CLASSES)):
        for i in range(2):
            make_video(root / f"c{label}_{i}.mp4", num_frames=10, fps=10, size=(72, 64))
            lines.append(f"c{label}_{i}.mp4 {label}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    out = tmp_path_factory.mktemp("run")
    config = load_config(None, [
        "recipe.name=text4vis", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'train.txt'}", f"data.classes={root / 'classes.csv'}", "data.frames=4",
        "data.batch_size=3", "data.workers=0", "schedule.epochs=1", "schedule.warmup_epochs=0",
        "optim.lr=1e-2", f"run.out_dir={out}", "run.device=cpu", "eval.every_n_epochs=0"])
    assert train(config, get_recipe("text4vis")(config)).completed
    return out, root / "c1_0.mp4"


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", str(run[0]), str(out)]) == 0
    return out


def _scores(model, video):
    result = ovar.predict(video, LABELS, model=model, views="2x1")
    return {p.label: p.score for p in result.predictions}


def test_export_writes_weights_config_and_card(run, exported):
    from safetensors.torch import load_file

    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((exported / "config.json").read_text())
    assert config["format"] == "ovar-model" and config["kind"] == "text4vis"
    assert config["class_names"] == CLASSES and config["frames"] == 4
    assert config["recipe"]["name"] == "text4vis" and config["backbone"]["name"] == "tiny"
    # The tensors are exactly the trained ones (the run's model file, read independently).
    trained = torch.load(run[0] / "model.pt", weights_only=True)["state_dict"]
    tensors = load_file(str(exported / "model.safetensors"))
    assert tensors.keys() == trained.keys()
    for key, value in trained.items():
        assert torch.equal(tensors[key], value), key
    card = (exported / "README.md").read_text()
    assert "text4vis" in card and "surfing water" in card and "hf-hub:" in card


def test_round_trip_folder_gives_the_same_scores(run, exported):
    original = load_model(checkpoint=run[0])
    from_folder = load_model(pretrained=str(exported))
    via_checkpoint = load_model(checkpoint=exported)
    assert from_folder.class_names == CLASSES and from_folder.frames == 4
    expected = _scores(original, run[1])
    assert max(expected.values()) < 0.99  # a ranking, not a one-hot: scores can differ
    for model in (from_folder, via_checkpoint):
        got = _scores(model, run[1])
        assert got.keys() == expected.keys()
        for label, score in expected.items():
            assert got[label] == pytest.approx(score, abs=1e-6), label


def _hub_cache(tmp_path, exported, repo: str):
    """The Hub cache layout huggingface_hub reads offline: refs/main -> snapshots/<commit>/files."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    shutil.copytree(exported, folder / "snapshots" / commit)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return tmp_path / "hub"


def test_hf_hub_loads_from_the_local_cache_offline(run, exported, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    cache = _hub_cache(tmp_path, exported, "acme/tiny-text4vis")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model(pretrained="hf-hub:acme/tiny-text4vis")
    expected = _scores(load_model(checkpoint=run[0]), run[1])
    got = _scores(model, run[1])
    for label, score in expected.items():
        assert got[label] == pytest.approx(score, abs=1e-6), label
    # A repository that is not cached, offline: one line, exit 2.
    code = main(["predict", str(run[1]), "--labels", "a, b", "--pretrained", "hf-hub:acme/missing"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ovar: error: hf-hub:acme/missing: not in the local Hugging Face cache")
    assert len(err.splitlines()) == 1


def test_hf_hub_without_huggingface_hub_is_a_clear_error(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed
    code = main(["predict", str(run[1]), "--labels", "a, b", "--pretrained", "hf-hub:acme/x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "needs the huggingface_hub package" in err and len(err.splitlines()) == 1


def test_export_refuses_what_is_not_a_model(run, tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)  # neither a model file nor a run checkpoint
    assert main(["export", str(other), str(tmp_path / "x")]) == 2
    assert "not an ovar model file" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "x")]) == 2
    assert "no model.pt" in capsys.readouterr().err


def test_version_is_defined_once(capsys):
    from importlib.metadata import PackageNotFoundError, version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ovar {ovar.__version__}"
    try:
        assert version("ovar") == ovar.__version__  # pyproject reads the same attribute
    except PackageNotFoundError:
        pytest.skip("ovar is not installed as a distribution here")


@pytest.mark.slow
def test_serve_an_exported_model(run, exported, tmp_path):
    """`ovar serve --pretrained EXPORTED`: the trained model's answers, its classes as a label set."""
    pytest.importorskip("fastapi", reason="ovar serve needs the serve extra (fastapi)")
    httpx = pytest.importorskip("httpx", reason="the server test talks HTTP with httpx")
    from serve_process import running_server

    expected = _scores(load_model(checkpoint=run[0]), run[1])
    with running_server(["--pretrained", str(exported), "--root", str(run[1].parent)], tmp_path / "server.log",
                        tmp_path / "cache") as base:
        models = httpx.get(f"{base}/v1/models", timeout=60).json()["models"]
        answer = httpx.post(f"{base}/v1/classify", data={"path": run[1].name, "labels": ", ".join(LABELS),
                                                         "views": "2x1"}, timeout=120)
        named = httpx.post(f"{base}/v1/classify", data={"path": run[1].name, "label_set": "model"}, timeout=120)
    assert models[0]["kind"] == "text4vis" and models[0]["label_sets"] == {"model": CLASSES}
    assert answer.status_code == 200, answer.text
    got = {p["label"]: p["score"] for p in answer.json()[0]["predictions"]}
    assert got == pytest.approx(expected, abs=1e-5)
    assert sorted(p["label"] for p in named.json()[0]["predictions"]) == sorted(CLASSES)
