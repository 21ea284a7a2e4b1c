"""Overrides are read as the type the configuration schema declares, not as YAML guesses."""

from __future__ import annotations

import pytest

from ovar.cli import main
from ovar.config import ConfigError, load_config, parse_override


def test_a_numeric_looking_path_stays_a_string():
    config = load_config(None, ["data.root=2024", "data.classes=0.25", "run.out_dir=007"])
    assert config.data.root == "2024" and config.data.classes == "0.25" and config.run.out_dir == "007"


def test_values_are_read_by_the_fields_type():
    config = load_config(None, ["data.frames=16", "optim.lr=3e-5", "optim.weight_decay=1", "data.strict=yes",
                                "optim.betas=[0.85, 0.975]", "train.loggers=csv,tensorboard",
                                "data.shot=null", "optim.grad_clip=None", "run.resume=~", "data.val_list="])
    assert config.data.frames == 16 and isinstance(config.data.frames, int)
    assert config.optim.lr == pytest.approx(3e-5) and isinstance(config.optim.weight_decay, float)
    assert config.data.strict is True
    assert config.optim.betas == (0.85, 0.975)
    assert config.train.loggers == ["csv", "tensorboard"]
    assert config.data.shot is None and config.optim.grad_clip is None and config.run.resume is None
    assert config.data.val_list is None
    assert load_config(None, ["data.shot=4"]).data.shot == 4
    assert load_config(None, ["data.strict=False"]).data.strict is False


def test_recipe_keys_have_no_schema_and_are_yaml():
    assert parse_override("recipe.patch_ratio=0.25") == (["recipe", "patch_ratio"], 0.25)
    assert parse_override("recipe.cache.enabled=true") == (["recipe", "cache", "enabled"], True)


@pytest.mark.parametrize("text, key, expected", [
    ("data.frames=sixteen", "data.frames", "int"),
    ("data.frames=16.5", "data.frames", "int"),
    ("optim.lr=fast", "optim.lr", "float"),
    ("data.strict=maybe", "data.strict", "bool"),
    ("optim.betas=[0.9]", "optim.betas", "2 values"),
    ("data.shot=many", "data.shot", "int | None"),
])
def test_a_wrong_type_is_one_line_naming_the_key(text, key, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [text])
    message = str(info.value)
    assert "\n" not in message and key in message and expected in message


def test_typed_pairs_keep_paths(tmp_path):
    config = load_config(None, [("run.out_dir", tmp_path / "2024"), ("data.strict", True)])
    assert config.run.out_dir == str(tmp_path / "2024") and config.data.strict is True


def test_cli_reports_a_wrong_type_on_one_line(tmp_path, capsys):
    code = main(["train", "--recipe", "actionclip", "data.frames=many", "--out", str(tmp_path / "2024")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "data.frames" in err and err.startswith("ovar: error:")


def test_cli_options_and_overrides_of_digits_stay_strings():
    import argparse

    from ovar.cli.train_cmd import _common, load_run

    parser = argparse.ArgumentParser()
    _common(parser)
    args = parser.parse_args(["--recipe", "toy_recipe:toy", "--out", "2024", "--strict", "data.root=1999"])
    args.resume = "0042"
    config, _ = load_run(args)
    assert config.run.out_dir == "2024" and config.data.root == "1999" and config.run.resume == "0042"
    assert config.data.strict is True
