"""ActionCLIP and Text4Vis recipes trained on generated videos with the tiny backbone."""

from __future__ import annotations

import json

import pytest
import torch

from ovar.cli import main
from ovar.config import load_config
from ovar.recipes import get_recipe
from ovar.train import train
from labelled_videos import CLASSES, recipe_config, write_labelled_videos



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_labelled_videos(tmp_path_factory.mktemp("videos"), 3, val_every=2)


def _config(root, out, recipe, *extra):
    return recipe_config(root, out, recipe, "schedule.epochs=2", "optim.lr=1e-3", "eval.views=2x1", *extra)


def _recipe(config):
    return get_recipe(config.recipe["name"])(config)


@pytest.mark.parametrize("name", ["actionclip", "text4vis"])
def test_training_runs_and_the_run_predicts(name, dataset, tmp_path, capsys):
    config = _config(dataset, tmp_path / "run", name)
    result = train(config, _recipe(config))
    assert result.completed and result.metrics["num_samples"] == 5
    assert (tmp_path / "run" / "model.pt").is_file()
    capsys.readouterr()
    code = main(["predict", str(dataset / "c1_0.mp4"), "--labels", ", ".join(CLASSES),
                 "--checkpoint", str(tmp_path / "run"), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and sum(p["score"] for p in out[0]["predictions"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", ["actionclip", "text4vis"])
def test_loss_decreases_on_a_fixed_batch(name, dataset, tmp_path):
    config = _config(dataset, tmp_path, name, "data.batch_size=6")
    recipe = _recipe(config)
    torch.manual_seed(0)
    model = recipe.build_model()
    dataset_ = recipe.train_dataset(model)
    items = [dataset_[i] for i in range(6)]
    batch = {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items])}
    params = [p for g in recipe.param_groups(model) for _, p in g.params]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(8):
        torch.manual_seed(1)  # the same template draw each step: a fixed objective
        loss = recipe.training_step(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_text4vis_keeps_the_text_tower_and_trains_few_shot(dataset, tmp_path):
    config = _config(dataset, tmp_path / "run", "text4vis", "data.shot=1", "schedule.epochs=1")
    recipe = _recipe(config)
    # One shot per class, read 9 // 3 = 3 times per epoch (an epoch as long as the full set).
    assert len(recipe.train_dataset(recipe.build_model())) == 3 * len(CLASSES)
    result = train(config, recipe)
    trained = result.model.module if hasattr(result.model, "module") else result.model
    fresh = recipe.build_model()
    text_keys = [k for k in fresh.state_dict() if ".clip.transformer." in k or "token_embedding" in k]
    assert text_keys
    for key in text_keys:
        assert torch.equal(fresh.state_dict()[key], trained.state_dict()[key].cpu()), key


def test_actionclip_param_groups(dataset, tmp_path):
    recipe = _recipe(_config(dataset, tmp_path, "actionclip"))
    groups = {g.name: g for g in recipe.param_groups(recipe.build_model())}
    assert groups["fusion"].lr_scale == 10.0 and groups["visual"].lr_scale == 1.0
    assert any("logit_scale" in n for n, _ in groups["text"].params)
    assert all(n.startswith("model.backbone.clip.visual.") for n, _ in groups["visual"].params)


def test_unknown_recipe_option(dataset, tmp_path):
    from ovar.config import ConfigError

    with pytest.raises(ConfigError, match="recipe.fusoin"):
        _recipe(_config(dataset, tmp_path, "actionclip", "recipe.fusoin=LSTM"))


@pytest.mark.parametrize("path", ["configs/actionclip/k400.yaml", "configs/text4vis/k400.yaml",
                                  "configs/text4vis/few_shot.yaml"])
def test_shipped_configs_load(path):
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / path)
    assert config.recipe["name"] in ("actionclip", "text4vis")
    assert config.optim.weight_decay == 0.2


def test_bundled_class_list_by_name(tmp_path):
    from ovar.recipes.video_data import class_names

    names = class_names(load_config(None, ["data.classes=ucf101"]))
    assert len(names) == 101 and names[0] == "ApplyEyeMakeup"


def test_actionclip_resume_gives_identical_weights(dataset, tmp_path):
    """Templates, frame offsets and augmentations are all seeded: an interrupted run that
    resumes ends with exactly the weights of an uninterrupted one."""
    straight = train(_config(dataset, tmp_path / "a", "actionclip", "eval.every_n_epochs=0"),
                     _recipe(_config(dataset, tmp_path / "a", "actionclip", "eval.every_n_epochs=0")))
    config = _config(dataset, tmp_path / "b", "actionclip", "eval.every_n_epochs=0")
    first = train(config, _recipe(config), stop_after_epoch=1)
    assert not first.completed
    config = _config(dataset, tmp_path / "b", "actionclip", "eval.every_n_epochs=0", "run.resume=auto")
    resumed = train(config, _recipe(config))
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
