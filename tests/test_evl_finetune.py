"""EVL's ``recipe.finetune_backbone``: the image tower trains too (the original's ``--finetune_backbone``)."""

from __future__ import annotations

import pytest
import torch

from ovar.config import ConfigError
from ovar.models.backbone import load_backbone
from ovar.models.model_file import load_model_file
from ovar.train import train
from ovar.train.optim import build_optimizer
from test_evl_recipe import dataset, evl_config, evl_recipe  # noqa: F401  (dataset is a fixture)


def _two_steps(config) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.nn.Module]:
    """Weights before and after two optimiser steps on the first six training clips."""
    recipe = evl_recipe(config)
    torch.manual_seed(0)
    trainer = recipe.build_model()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    optimizer = build_optimizer(trainer, recipe.param_groups(trainer), config.optim)
    data = recipe.train_dataset(trainer)
    items = [data[i] for i in range(6)]
    batch = {"video": torch.stack([it["video"] for it in items]),
             "label": torch.tensor([it["label"] for it in items]), "index": torch.arange(6)}
    for _ in range(2):
        loss = recipe.training_step(trainer, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, trainer.model.state_dict(), trainer


def _changed(before, after, prefix: str) -> list[str]:
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_backbone_trains_only_with_finetune_backbone(dataset, tmp_path):  # noqa: F811
    visual = "backbone.clip.visual."
    before, after, _ = _two_steps(evl_config(dataset, tmp_path))
    assert _changed(before, after, "video_encoder.decoder.") and _changed(before, after, "head.")
    assert not _changed(before, after, "backbone.")  # frozen, as released by default

    before, after, _ = _two_steps(evl_config(dataset, tmp_path, "recipe.finetune_backbone=true"))
    changed = _changed(before, after, visual)
    assert _changed(before, after, "video_encoder.decoder.")
    for name in ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight",
                 "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.2.mlp.c_fc.weight"):
        assert visual + name in changed, (name, changed)
    # Weights that do not reach the block features, and the text tower, stay as they were.
    assert not {visual + "ln_post.weight", visual + "proj"} & set(changed)
    assert not _changed(before, after, "backbone.clip.transformer.")


def test_backbone_group_takes_its_own_learning_rate(dataset, tmp_path):  # noqa: F811
    config = evl_config(dataset, tmp_path, "recipe.finetune_backbone=true", "recipe.backbone_lr_scale=0.25")
    recipe = evl_recipe(config)
    trainer = recipe.build_model()
    groups = {g.name: g for g in recipe.param_groups(trainer)}
    assert set(groups) == {"decoder", "backbone"}
    assert groups["backbone"].lr_scale == 0.25 and groups["decoder"].lr_scale == 1.0
    assert groups["backbone"].decay_rule == "all"  # EVL decays every trainable parameter
    visual = trainer.model.backbone.clip.visual
    expected = {id(p) for n, p in visual.named_parameters() if n not in ("ln_post.weight", "ln_post.bias", "proj")}
    assert {id(p) for _, p in groups["backbone"].params} == expected
    optimizer = build_optimizer(trainer, list(groups.values()), config.optim)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(1e-3 * 0.25) and lrs["decoder"] == pytest.approx(1e-3)


def test_finetuned_backbone_is_saved_with_the_model(dataset, tmp_path):  # noqa: F811
    config = evl_config(dataset, tmp_path / "run", "recipe.finetune_backbone=true", "schedule.epochs=1",
                        "eval.every_n_epochs=0")
    result = train(config, evl_recipe(config))
    assert result.completed
    saved = load_model_file(tmp_path / "run" / "model.pt").backbone.clip.visual.state_dict()
    initial = load_backbone("tiny", "none").clip.visual.state_dict()
    assert not torch.equal(saved["transformer.resblocks.1.attn.in_proj_weight"],
                           initial["transformer.resblocks.1.attn.in_proj_weight"])
    assert torch.equal(saved["proj"], initial["proj"])


def test_finetune_backbone_refuses_the_feature_cache(dataset, tmp_path):  # noqa: F811
    config = evl_config(dataset, tmp_path, "recipe.finetune_backbone=true", "recipe.cache.enabled=true")
    with pytest.raises(ConfigError, match="recipe.cache.enabled=false"):
        evl_recipe(config)
    with pytest.raises(ConfigError, match="recipe.backbone_lr_scale"):
        evl_recipe(evl_config(dataset, tmp_path, "recipe.finetune_backbone=true", "recipe.backbone_lr_scale=0"))
