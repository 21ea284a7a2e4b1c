"""Configuration: defaults, YAML differences, dotted overrides, errors, resolved output."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from ovar.config import (Config, ConfigError, load_config, parse_override, parse_section,
                         save_resolved, to_yaml)
from ovar.errors import OvarError


def test_defaults() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.optim.betas == (0.9, 0.999)
    assert cfg.run.precision == "auto"
    assert cfg.data.shot is None
    assert cfg.recipe == {}


def test_yaml_holds_only_differences(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("optim:\n  lr: 2.0e-5\n  betas: [0.9, 0.98]\ndata:\n  frames: 16\n"
                    "recipe:\n  name: toy\n  alpha: 0.5\n")
    cfg = load_config(path)
    assert cfg.optim.lr == 2e-5 and cfg.optim.betas == (0.9, 0.98)
    assert cfg.data.frames == 16
    assert cfg.optim.weight_decay == Config().optim.weight_decay  # untouched default
    assert cfg.recipe == {"name": "toy", "alpha": 0.5}


def test_dotted_overrides_parse_types(tmp_path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("optim:\n  lr: 0.1\n")
    cfg = load_config(path, ["optim.lr=1e-5", "data.frames=16", "data.shot=4", "optim.grad_clip=null",
                             "run.out_dir=/tmp/x", "recipe.teacher.weight=2", "schedule.warmup_epochs=1"])
    assert cfg.optim.lr == pytest.approx(1e-5) and isinstance(cfg.optim.lr, float)
    assert cfg.data.frames == 16 and cfg.data.shot == 4
    assert cfg.optim.grad_clip is None
    assert cfg.run.out_dir == "/tmp/x"
    assert cfg.recipe == {"teacher": {"weight": 2}}
    assert cfg.schedule.warmup_epochs == 1.0 and isinstance(cfg.schedule.warmup_epochs, float)


def test_unknown_key_names_key_and_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.lrr") as info:
        load_config(path)
    assert isinstance(info.value, OvarError)
    with pytest.raises(ConfigError, match=r"unknown key 'nope'"):
        load_config(None, ["nope.x=1"])
    with pytest.raises(ConfigError, match=r"data\.framez"):
        load_config(None, ["data.framez=3"])


@pytest.mark.parametrize("override, key", [
    ("data.frames=abc", "data.frames"),
    ("data.frames=1.5", "data.frames"),
    ("optim.lr=fast", "optim.lr"),
    ("optim.betas=[0.9]", "optim.betas"),
    ("run.precision=fp8", "run.precision"),
    ("optim.accumulate=0", "optim.accumulate"),
    ("data.batch_size=true", "data.batch_size"),
    ("optim=3", "optim"),
])
def test_wrong_type_is_an_error(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_malformed_override_and_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path) -> None:
    cfg = load_config(None, ["optim.lr=3e-4", "recipe.k=[1, 2]", "data.root=/data"])
    out = save_resolved(cfg, tmp_path / "run")
    assert out == tmp_path / "run" / "config.yaml"
    written = yaml.safe_load(out.read_text())
    assert set(written) == {"model", "data", "optim", "schedule", "eval", "run", "train", "recipe"}
    assert written["optim"]["lr"] == pytest.approx(3e-4)
    assert load_config(out) == cfg
    assert yaml.safe_load(to_yaml(cfg)) == written


def test_parse_section_for_recipe_options() -> None:
    @dataclass
    class Options:
        alpha: float = 0.5
        name: str = ""

    assert parse_section(Options, {"alpha": 1}, "recipe") == Options(alpha=1.0)
    with pytest.raises(ConfigError, match=r"recipe\.beta"):
        parse_section(Options, {"beta": 1}, "recipe")
