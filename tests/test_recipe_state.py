"""Recipes keep no state between calls: what a step needs travels with the model and data.

Every built-in recipe is driven through what the engine calls (build the model, the
training set, ``prepare``, two optimiser steps, evaluation) and its attributes must be the
very objects ``__init__`` left, none added, so two models or runs built from one recipe
cannot see each other's weights, caches, devices or shapes.  Nothing after the model loads
a backbone: the datasets read theirs from the model they are built for.
"""

from __future__ import annotations

import pytest
import torch

import ovar.recipes.clip_recipe as clip_recipe
from test_recipes import _config, _recipe, dataset  # noqa: F401  (fixture)

CASES = {
    "actionclip": (),
    "text4vis": (),
    "text4vis_nce": (),
    "evl": ("recipe.num_layers=2",),
    "evl-fixed-views": ("recipe.num_layers=2", "recipe.fixed_views=2"),
    "evl-cache": ("recipe.num_layers=2", "recipe.cache.enabled=true", "recipe.cache.views=2",
                  "recipe.cache.dtype=float32"),
    "evl-finetune": ("recipe.num_layers=2", "recipe.finetune_backbone=true"),
    "open_vclip": ("recipe.iwo=true", "recipe.patch_ratio=0.25"),
    "froster": ("recipe.patch_ratio=0.25",),
}


def _snapshot(recipe) -> dict[str, int]:
    return {name: id(value) for name, value in vars(recipe).items()}


def _no_backbone(*_: object) -> None:
    raise AssertionError("a backbone was loaded after the model was built")


@pytest.mark.parametrize("case", list(CASES))
def test_engine_calls_leave_the_recipe_as_init_made_it(case, dataset, tmp_path, monkeypatch):  # noqa: F811
    name = case.split("-")[0]
    config = _config(dataset, tmp_path, name, *CASES[case], f"recipe.cache.dir={tmp_path / 'cache'}"
                     if "cache" in case else "data.batch_size=3")
    recipe = _recipe(config)
    before = _snapshot(recipe)
    keys = set(vars(recipe))
    torch.manual_seed(0)
    model = recipe.build_model()
    monkeypatch.setattr(clip_recipe, "load_backbone", _no_backbone)
    train_set = recipe.train_dataset(model)
    recipe.prepare(model, train_set)
    params = [p for g in recipe.param_groups(model) for _, p in g.params]
    optimizer = torch.optim.SGD(params, lr=0.25)
    for epoch in range(2):
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        items = [train_set[i] for i in (2, 0, 1)]
        batch = {"video": torch.stack([it["video"] for it in items]),
                 "label": torch.tensor([it["label"] for it in items]),
                 "index": torch.tensor([it["index"] for it in items]),
                 "packed": all(it.get("packed", False) for it in items)}
        loss = recipe.training_step(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    eval_set = recipe.eval_dataset(model)
    item = eval_set[0]
    scores, _ = recipe.evaluate_batch(recipe.eval_model(model), {"video": item["video"][None],
                                                                 "label": torch.tensor([item["label"]])})
    assert torch.isfinite(scores).all()
    assert set(vars(recipe)) == keys  # no attribute appeared
    assert _snapshot(recipe) == before, [k for k in before if _snapshot(recipe)[k] != before[k]]
    if case == "evl-cache":  # the steps filled both views of the cache on the training set the trainer holds
        assert model.train_set is train_set and train_set.cache.directory.parent == tmp_path / "cache"
        assert train_set.cache.finalize(0) is False and train_set.cache.finalize(1) is False  # 3 of 9 videos
        assert {p.name for p in train_set.cache.directory.glob("*.bin")} == {"v0-r0.bin", "v1-r0.bin"}
