"""Smaller procedure details of the originals: weight decay, test frames, fusion heads, flip."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import pytest
import torch
from torch import nn

from ovar.config import ConfigError, load_config
from ovar.models.temporal import TransformerFusion
from ovar.recipes import load_recipe
from ovar.train.optim import no_decay, optimizer_groups
from ovar.video.sampling import segment_indices
from videogen import make_video

CLASSES = ["archery", "surfing water", "playing guitar"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    lines = []
    for label in range(len(CLASSES)):
        make_video(root / f"c{label}.mp4", num_frames=12, fps=12, size=(72, 64))
        lines.append(f"c{label}.mp4 {label}")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    return root


def _config(root, out, recipe, *extra):
    return load_config(None, [
        f"recipe.name={recipe}", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'list.txt'}", f"data.val_list={root / 'list.txt'}",
        f"data.classes={root / 'classes.csv'}", "data.frames=4", "data.workers=0", f"run.out_dir={out}",
        "run.device=cpu", "optim.weight_decay=0.25", *extra])


# -------------------------------------------------------------------------- weight decay


def test_decay_rules() -> None:
    scalar, vector, matrix = (nn.Parameter(torch.zeros(s)) for s in ((), (3,), (3, 2)))
    assert [no_decay("w", p, "no_1d") for p in (scalar, vector, matrix)] == [True, True, False]
    assert [no_decay("w", p, "no_vectors") for p in (scalar, vector, matrix)] == [False, True, False]
    assert [no_decay("w", p, "all") for p in (scalar, vector, matrix)] == [False, False, False]
    assert no_decay("fc.bias", matrix, "no_vectors") and not no_decay("fc.bias", vector, "all")


def _decay_by_name(recipe, config) -> dict[str, float]:
    model = recipe.build_model()
    groups = recipe.param_groups(model)
    names = {id(p): n for g in groups for n, p in g.params}
    return {names[id(p)]: g["weight_decay"] for g in optimizer_groups(groups, config.optim) for p in g["params"]}


@pytest.mark.parametrize("name", ["actionclip", "text4vis", "evl"])
def test_every_parameter_decays_in_actionclip_text4vis_evl(dataset, tmp_path, name) -> None:
    config = _config(dataset, tmp_path, name, *(["recipe.num_layers=2"] if name == "evl" else []))
    decay = _decay_by_name(load_recipe(name)(config), config)
    assert any(n.endswith(".bias") for n in decay) and set(decay.values()) == {0.25}


def test_open_vclip_decays_logit_scale_not_biases(dataset, tmp_path) -> None:
    config = _config(dataset, tmp_path, "open_vclip", "recipe.iwo=false")
    decay = _decay_by_name(load_recipe("open_vclip")(config), config)
    scale = [v for n, v in decay.items() if n.endswith("logit_scale")]
    assert scale == [0.25]
    assert {v for n, v in decay.items() if n.endswith(".bias") or "ln_" in n} == {0.0}
    assert {v for n, v in decay.items() if n.endswith("in_proj_weight")} == {0.25}


# ---------------------------------------------------------------------------- test frames


def _actionclip(n: int, t: int) -> list[int]:
    return [floor(Fraction(2 * k + 1, 2) * Fraction(n, t) - Fraction(1, 2)) for k in range(t)]


@pytest.mark.parametrize("n", [9, 30, 37, 100, 301])
def test_segment_test_frames(n) -> None:
    t = 8
    assert segment_indices(n, t, train=False, position="tsn_offset") == _actionclip(n, t)
    assert segment_indices(n, t, train=False, position="start") == [floor(Fraction(k * n, t)) for k in range(t)]
    assert segment_indices(n, t, train=False) == [floor(Fraction(2 * k + 1, 2) * Fraction(n, t)) for k in range(t)]


@pytest.mark.parametrize("name, position", [("actionclip", "tsn_offset"), ("text4vis", "start"),
                                            ("open_vclip", "middle")])
def test_recipes_test_on_their_frames(dataset, tmp_path, name, position) -> None:
    extra = ["data.sampling=segment"]
    sampler = load_recipe(name)(_config(dataset, tmp_path, name, *extra)).eval_dataset().sampler
    assert sampler.position == position
    sampler = load_recipe(name)(_config(dataset, tmp_path, name, *extra, "data.test_frames=middle")).eval_dataset().sampler
    assert sampler.position == "middle"
    with pytest.raises(ConfigError, match="data.test_frames"):
        _config(dataset, tmp_path, name, "data.test_frames=centre")


# ------------------------------------------------------------------ fusion heads, flip


@pytest.mark.parametrize("name", ["actionclip", "text4vis"])
def test_fusion_heads_follow_the_text_width(dataset, tmp_path, name) -> None:
    model = load_recipe(name)(_config(dataset, tmp_path, name)).build_model()
    fusion = next(m for m in model.modules() if isinstance(m, TransformerFusion))
    attn = next(m for m in fusion.modules() if isinstance(m, nn.MultiheadAttention))
    assert attn.num_heads == 64 // 64  # the tiny text tower is 64 wide; L/14's 768 gives 12


@pytest.mark.parametrize("setting, p", [([], 0.5), (["data.flip=false"], None), (["data.flip=true"], 0.5)])
def test_flip_switch(dataset, tmp_path, setting, p) -> None:
    transform = load_recipe("text4vis")(_config(dataset, tmp_path, "text4vis", *setting)).train_dataset().transform
    flips = [op.p for op in transform.ops.transforms if type(op).__name__ == "RandomHorizontalFlip"]
    assert flips == ([] if p is None else [p])
