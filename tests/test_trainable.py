"""Which parameters train comes from one declaration per recipe (``Recipe.trainable``): the
optimiser's groups, ``requires_grad``, the checkpoint's record and the parameter report."""

from __future__ import annotations

import json

import pytest
import torch

from ovar.config import load_config
from ovar.train.recipe import Recipe
from ovar.train.trainable import Trainable, parameter_report, trained_names
from ovar.train.optim import build_optimizer
from toy_recipe import ToyRecipe, toy_config

CLASSES = ["archery", "surfing water"]
SMALL = {"actionclip": ["recipe.fusion=meanP", "recipe.visual_lr_ratio=0.25", "recipe.fusion_lr_ratio=7"],
         "text4vis": ["recipe.fusion=meanP", "optim.backbone_lr_ratio=0.125"],
         "evl": ["recipe.num_layers=1"], "open_vclip": ["recipe.iwo=false"], "froster": ["recipe.iwo=false"],
         "text4vis_nce": ["recipe.fusion=meanP", "recipe.fix_text=true", "recipe.visual_lr_ratio=0.375"]}
# What each recipe's original trains (group: lr scale, weight-decay rule, which names), written
# out independently of the recipes.
EXPECTED = {
    "actionclip": {"text": (1.0, "all", lambda n: not n.startswith(("model.backbone.clip.visual.",
                                                                        "model.video_encoder.fusion."))),
                   "visual": (0.25, "all", lambda n: n.startswith("model.backbone.clip.visual.")),
                   "fusion": (7.0, "all", lambda n: n.startswith("model.video_encoder.fusion."))},
    "text4vis": {"visual": (0.125, "all", lambda n: n.startswith("model.backbone.clip.visual.")
                            or n == "model.backbone.clip.logit_scale"),
                 "fusion": (1.0, "all", lambda n: n.startswith("model.video_encoder.fusion."))},
    "evl": {"decoder": (1.0, "all", lambda n: n.startswith(("model.video_encoder.decoder.", "model.head.")))},
    "open_vclip": {"clip": (1.0, "no_vectors", lambda n: n.startswith("model.backbone.clip.visual.")
                            or n == "model.backbone.clip.logit_scale")},
    "froster": {"clip": (1.0, "no_vectors", lambda n: True)},
    "text4vis_nce": {"visual": (0.375, "all", lambda n: n.startswith("model.backbone.clip.visual.")),
                     "fusion": (1.0, "all", lambda n: n.startswith("model.video_encoder.fusion."))},
}


def _recipe(name, tmp_path):
    from ovar.recipes import get_recipe

    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    config = load_config(None, ["model.backbone=tiny", "model.pretrained=none", "data.frames=2", "optim.lr=0.01",
                                f"data.classes={tmp_path / 'classes.txt'}", *SMALL[name]])
    return get_recipe(name)(config)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_consumer_reads_the_recipes_declaration(name, tmp_path):
    recipe = _recipe(name, tmp_path)
    torch.manual_seed(0)
    model = recipe.build_model()
    groups = recipe.param_groups(model)
    expected = {group: sorted(n for n, _ in model.named_parameters() if rule(n))
                for group, (_, _, rule) in EXPECTED[name].items()}
    assert {g: sorted(n) for g, n in trained_names(groups).items()} == {g: n for g, n in expected.items() if n}
    assert [(d.name, d.decay_rule) for d in recipe.trainable()] == [(g, e[1]) for g, e in EXPECTED[name].items()]
    assert [(g.name, g.decay_rule) for g in groups] == [(g, e[1]) for g, e in EXPECTED[name].items() if expected[g]]

    optimizer = build_optimizer(model, groups, recipe.config.optim)
    by_group: dict[str, set[int]] = {}
    for group in optimizer.param_groups:
        base = group["name"].removesuffix("/no_decay")
        assert group["lr"] == pytest.approx(0.01 * EXPECTED[name][base][0])
        by_group.setdefault(base, set()).update(id(p) for p in group["params"])
    params = dict(model.named_parameters())
    assert by_group == {g: {id(params[n]) for n in names} for g, names in expected.items() if names}
    trained = {n for names in expected.values() for n in names}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trained

    report = parameter_report(model, groups)
    assert {r["name"]: r["parameters"] for r in report["groups"]} == \
        {g: sum(params[n].numel() for n in names) for g, names in expected.items() if names}
    assert report["frozen"] == sum(p.numel() for n, p in params.items() if n not in trained)


def test_changing_the_declaration_changes_every_consumer(tmp_path):
    recipe = _recipe("actionclip", tmp_path)
    recipe.trainable = lambda: [Trainable("post", ("model.backbone.clip.visual.ln_post.",), 3.0, weight_decay=False)]
    model = recipe.build_model()
    groups = recipe.param_groups(model)
    optimizer = build_optimizer(model, groups, recipe.config.optim)
    assert [g["name"] for g in optimizer.param_groups] == ["post/no_decay"]
    assert optimizer.param_groups[0]["weight_decay"] == 0.0 and optimizer.param_groups[0]["lr"] == pytest.approx(0.03)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"model.backbone.clip.visual.ln_post.weight", "model.backbone.clip.visual.ln_post.bias"}
    assert [r["name"] for r in parameter_report(model, groups)["groups"]] == ["post"]


def test_open_vclip_averages_exactly_the_declared_parameters(tmp_path):
    recipe = _recipe("open_vclip", tmp_path)
    model = recipe.build_model()
    recipe.end_epoch(model, 2, tmp_path)  # average_from_epoch=2: this epoch is added
    saved = torch.load(tmp_path / "weight_average.pt", weights_only=True)
    visual = {n for n, _ in model.named_parameters() if n.startswith("model.backbone.clip.visual.")}
    assert set(saved["sum"]) == visual | {"model.backbone.clip.logit_scale"}


class DeclaredToy(ToyRecipe):
    """The toy recipe with a declaration instead of its own param_groups."""

    param_groups = Recipe.param_groups

    def trainable(self):
        return [Trainable("backbone", ("backbone.",), 0.5), Trainable("head", ("head.",), weight_decay=False)]


def test_checkpoint_and_report_of_a_run_come_from_the_declaration(tmp_path):
    from ovar.train import train
    from ovar.train.checkpoint import CheckpointDir, load

    config = toy_config(tmp_path / "run", "schedule.epochs=1")
    recipe = DeclaredToy(config)
    result = train(config, recipe)
    model = result.model
    names = {n for n, _ in model.named_parameters()}
    state = load(CheckpointDir(tmp_path / "run" / "checkpoints", 2).latest())
    recorded = {g: sorted(n) for g, n in state["trainable"].items()}
    assert recorded == {"backbone": sorted(n for n in names if n.startswith("backbone.")),
                        "head": sorted(n for n in names if n.startswith("head."))}
    assert [g["name"] for g in state["optimizer"]["param_groups"]] == ["backbone", "backbone/no_decay",
                                                                       "head/no_decay"]
    report = json.loads((tmp_path / "run" / "parameters.json").read_text())
    assert [(r["name"], r["lr_scale"], r["weight_decay"]) for r in report["groups"]] == [
        ("backbone", 0.5, True), ("head", 1.0, False)]
    assert report["trainable"] == sum(p.numel() for p in model.parameters()) and report["frozen"] == 0
