"""One option, one meaning: train's --model/--pretrained, one class-file reader for
--labels-file/--classes/data.classes, shipped configs on the tiny backbone, results on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovar.cli import build_parser, main
from ovar.config import default_workers, load_config
from ovar.errors import OvarError

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*/*.yaml"))
TOY = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=1",
       "schedule.warmup_epochs=0", "optim.lr=0.05", "run.device=cpu"]


def test_train_takes_model_and_pretrained(tmp_path):
    from ovar.cli.train_cmd import load_run as _load

    args = build_parser().parse_args(["train", "--out", str(tmp_path), "--model", "tiny", "--pretrained", "none",
                                      *TOY])
    config, _ = _load(args)
    assert (config.model.backbone, config.model.pretrained) == ("tiny", "none")


def test_train_prints_its_result_as_json_on_stdout(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TOY]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["run_dir"] == str(out) and result["epochs"] == 1
    assert result["model"] == str(out / "final.pt") and 0 <= result["top1"] <= 100
    assert "run_dir" not in captured.err


def test_headerless_id_name_csv_and_bundled_names_read_alike(tmp_path):
    from ovar.data.splits import read_classes
    from ovar.data import read_labels_file

    (tmp_path / "c.csv").write_text("1,surfing water\n0,archery\n2,playing guitar, loudly\n")
    expected = ["archery", "surfing water", "playing guitar, loudly"]
    assert read_labels_file(tmp_path / "c.csv") == expected == read_classes(tmp_path / "c.csv")
    (tmp_path / "h.txt").write_text("id,name\n0,archery\n1,surfing water\n")  # any suffix
    assert read_labels_file(tmp_path / "h.txt") == ["archery", "surfing water"]
    k400 = read_labels_file("k400")
    assert len(k400) == 400 and k400 == read_classes("k400")


def test_predict_labels_file_takes_a_bundled_list(tmp_path, capsys):
    from videogen import make_video

    make_video(tmp_path / "v.mp4", num_frames=6, fps=6, size=(48, 40))
    assert main(["predict", str(tmp_path / "v.mp4"), "--labels-file", "ucf101", "--model", "tiny",
                 "--pretrained", "none", "--format", "json", "--device", "cpu", "--workers", "0"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert len(result["predictions"]) == 101


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_shipped_config_builds_on_tiny_or_says_what_it_needs(path, tmp_path):
    from ovar.recipes import load_recipe

    (tmp_path / "classes.txt").write_text("archery\nsurfing water\nplaying guitar\n")
    config = load_config(path, ["model.backbone=tiny", "model.pretrained=none",
                                f"data.classes={tmp_path / 'classes.txt'}"])
    recipe = load_recipe(config.recipe["name"])(config)
    if path.parent.name == "evl":  # 4 decoder blocks on a 3-block tower: a one-line error naming the option
        with pytest.raises(OvarError) as info:
            recipe.build_model()
        message = str(info.value)
        assert "recipe.num_layers=4" in message and "1..3" in message and "\n" not in message
        config = load_config(path, ["model.backbone=tiny", "model.pretrained=none", "recipe.num_layers=3",
                                    f"data.classes={tmp_path / 'classes.txt'}"])
        recipe = load_recipe("evl")(config)
    model = recipe.build_model()
    assert sum(p.numel() for p in model.parameters()) > 0


def test_default_worker_count_follows_the_cpus():
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == max(1, min(4, cores))
    assert load_config(None, []).data.workers == default_workers()
