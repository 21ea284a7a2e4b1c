"""Every option value a run cannot use is refused when the configuration is read: one
line naming the key, exit 2, nothing written — whether it came from a YAML file, a
KEY=VALUE override or a recipe's own ``recipe.*`` section."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path

import pytest

from ovar.cli import main
from ovar.config import Config, ConfigError, load_config, parse_section
from ovar.recipes.actionclip import ActionCLIPOptions
from ovar.recipes.evl import EVLOptions
from ovar.recipes.froster import FrosterOptions
from ovar.recipes.open_vclip import OpenVCLIPOptions
from ovar.recipes.text4vis import Text4VisOptions
from ovar.recipes.text4vis_nce import Text4VisNCEOptions

TOY = ["--recipe", "toy_recipe:toy", "data.workers=0", "data.batch_size=8", "schedule.epochs=1",
       "schedule.warmup_epochs=0", "run.device=cpu"]
OPTIONS = {"actionclip": ActionCLIPOptions, "text4vis": Text4VisOptions, "text4vis_nce": Text4VisNCEOptions,
           "evl": EVLOptions, "open_vclip": OpenVCLIPOptions, "froster": FrosterOptions}


def _real(recipe: str) -> list[str]:
    return ["--recipe", recipe, "--model", "tiny", "--pretrained", "none", "data.classes={in}/classes.txt",
            "data.train_list={in}/train.csv", "data.root={in}", "data.workers=0", "run.device=cpu"]


# (id, override or recipe option, the recipe's arguments, text the error line must name).
# Each of these ended in a traceback, or started a run that could not work, before the
# values were checked on reading.
CASES = [
    ("shot-negative", "data.shot=-1", TOY, "data.shot"),
    ("betas-one", "optim.betas=[1,2]", TOY, "optim.betas"),
    ("betas-negative", "optim.betas=[0.9,-0.25]", TOY, "optim.betas"),
    ("eps-negative", "optim.eps=-1", TOY, "optim.eps"),
    ("eps-nan", "optim.eps=nan", TOY, "optim.eps"),
    ("lr-infinite", "optim.lr=1e400", TOY, "optim.lr"),
    ("weight-decay-negative", "optim.weight_decay=-0.25", TOY, "optim.weight_decay"),
    ("backbone-ratio-nan", "optim.backbone_lr_ratio=nan", TOY, "optim.backbone_lr_ratio"),
    ("warmup-infinite", "schedule.warmup_epochs=1e400", TOY, "schedule.warmup_epochs"),
    ("warmup-nan", "schedule.warmup_epochs=nan", TOY, "schedule.warmup_epochs"),
    ("min-lr-negative", "schedule.min_lr=-0.25", TOY, "schedule.min_lr"),
    ("log-every-zero", "run.log_every=0", TOY, "run.log_every"),
    ("eval-views", "eval.views=abc", TOY, "eval.views"),
    ("eval-fusion", "eval.fusion=abc", TOY, "eval.fusion"),
    ("test-scale", "data.test_scale=abc", TOY, "data.test_scale"),
    ("actionclip-fusion", "recipe.fusion=abc", _real("actionclip"), "recipe.fusion"),
    ("actionclip-visual-ratio", "recipe.visual_lr_ratio=-0.25", _real("actionclip"), "recipe.visual_lr_ratio"),
    ("actionclip-fusion-ratio-nan", "recipe.fusion_lr_ratio=nan", _real("actionclip"), "recipe.fusion_lr_ratio"),
    ("text4vis-fusion", "recipe.fusion=Transformer", _real("text4vis"), "recipe.fusion"),
    ("text4vis-randaugment", "recipe.rand_augment=[2,-9]", _real("text4vis"), "recipe.rand_augment"),
    ("text4vis-nce-loss", "recipe.loss=kl", _real("text4vis_nce"), "recipe.loss"),
    ("evl-layers", "recipe.num_layers=0", _real("evl"), "recipe.num_layers"),
    ("evl-cache-dtype", "recipe.cache.dtype=int8", _real("evl"), "recipe.cache.dtype"),
    ("evl-cache-views", "recipe.cache.views=0", _real("evl"), "recipe.cache.views"),
    ("evl-rand-augment", "recipe.rand_augment=rand-m7-q4", _real("evl"), "recipe.rand_augment"),
    ("evl-backbone-scale", "recipe.backbone_lr_scale=0", _real("evl"), "recipe.backbone_lr_scale"),
    ("open-vclip-loss-ratio", "recipe.iwo_loss_ratio=-1", _real("open_vclip"), "recipe.iwo_loss_ratio"),
    ("open-vclip-average-from", "recipe.average_from_epoch=-1", _real("open_vclip"), "recipe.average_from_epoch"),
    ("open-vclip-temporal", "recipe.temporal=abc", _real("open_vclip"), "recipe.temporal"),
    ("open-vclip-patch-ratio", "recipe.patch_ratio=1.25", _real("open_vclip"), "recipe.patch_ratio"),
    ("froster-distillation", "recipe.distillation_ratio=-0.25", _real("froster"), "recipe.distillation_ratio"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("inputs")
    (base / "classes.txt").write_text("archery\nsurfing\n")
    (base / "train.csv").write_text("clip.mp4,0\n")
    return base


@pytest.mark.parametrize("value, recipe, words", [pytest.param(v, r, w, id=n) for n, v, r, w in CASES])
def test_bad_value_is_refused_before_anything_is_written(value, recipe, words, inputs, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # toy_recipe
    argv = ["train", "--out", str(tmp_path / "run"), *[a.replace("{in}", str(inputs)) for a in recipe], value]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ovar: error: ") and words in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def _leaf_fields(cls: type, prefix: str = ""):
    """(dotted key, field type, field) of every non-section field of ``cls``, nested."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp, f


def _ruled_fields(cls: type, prefix: str = ""):
    """(dotted key, field type, rule) of every field of ``cls`` (nested) that declares a rule."""
    return [(key, tp, f.metadata["ovar_rule"]) for key, tp, f in _leaf_fields(cls, prefix) if "ovar_rule" in f.metadata]


def _nest(key: str, value) -> dict:
    head, _, rest = key.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _unwrap(tp):
    """The type of an optional field's value."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _item_type(tp):
    """int or float: the field's type, or that of its tuple's items."""
    base = _unwrap(tp)
    return typing.get_args(base)[0] if typing.get_origin(base) is tuple else base


def _sample(tp, number: float):
    """``number`` as the field's type: an int, a float, or a tuple of them."""
    base = _unwrap(tp)
    value = int(number) if _item_type(tp) is int else float(number)
    return [value] * len(typing.get_args(base)) if typing.get_origin(base) is tuple else value


SECTIONS = [("config", Config)] + [(f"recipe {name}", cls) for name, cls in OPTIONS.items()]


@pytest.mark.parametrize("where, cls", SECTIONS, ids=[w for w, _ in SECTIONS])
def test_every_rule_refuses_past_its_bound_and_takes_the_bound(where, cls):
    parse = (lambda key, value: parse_section(Config, _nest(key, value))) if cls is Config else \
        (lambda key, value: parse_section(cls, _nest(key.split(".", 1)[1], value), "recipe"))
    prefix = "" if cls is Config else "recipe."
    ruled = list(_ruled_fields(cls, prefix))
    assert ruled, f"{where} declares no rule"
    for key, tp, spec in ruled:
        step = 1 if _item_type(tp) is int else 0.25
        checks = []  # (value, accepted?)
        if spec["choices"] is not None:
            checks += [(choice, True) for choice in spec["choices"]] + [("not-a-choice", False)]
        if spec["low"] is not None:
            checks += [(_sample(tp, spec["low"]), True), (_sample(tp, spec["low"] - step), False)]
        if spec["high"] is not None:
            checks += [(_sample(tp, spec["high"]), True), (_sample(tp, spec["high"] + step), False)]
        if spec["above"] is not None:
            checks += [(_sample(tp, spec["above"]), False), (_sample(tp, spec["above"] + step), True)]
        if spec["below"] is not None:
            checks += [(_sample(tp, spec["below"]), False), (_sample(tp, spec["below"] - step), True)]
        for value, accepted in checks:
            if accepted:
                parse(key, value)
            else:
                with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                    parse(key, value)


def test_no_float_setting_takes_nan_or_infinity():
    keys = [key for key, tp, _ in _leaf_fields(Config) if _unwrap(tp) is float]
    assert {"optim.lr", "optim.eps", "schedule.warmup_epochs", "schedule.min_lr"} <= set(keys)
    for key in keys:
        for text in ("nan", "inf", "-inf", "1e400"):
            with pytest.raises(ConfigError, match=f"{key.replace('.', chr(92) + '.')}: must be a finite number"):
                load_config(None, [f"{key}={text}"])
        value = load_config(None, [f"{key}=0.25"])
        assert math.isclose(_get(value, key), 0.25)
    with pytest.raises(ConfigError, match=r"optim\.betas: must be a finite number"):
        load_config(None, ["optim.betas=[0.25,nan]"])


def _get(obj, key: str):
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj
