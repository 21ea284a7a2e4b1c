"""EVL recipe trained on generated videos with the tiny backbone."""

from __future__ import annotations

import pytest
import torch

from ovar.config import load_config
from ovar.recipes import get_recipe
from ovar.train import train
from labelled_videos import CLASSES, write_labelled_videos



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_labelled_videos(tmp_path_factory.mktemp("evl_videos"), 2, val_every=2)


def evl_config(root, out, *extra):
    return load_config(None, [
        "recipe.name=evl", "recipe.num_layers=2", "model.backbone=tiny", "model.pretrained=none",
        f"data.root={root}", f"data.train_list={root / 'train.txt'}", f"data.val_list={root / 'val.txt'}",
        f"data.classes={root / 'classes.csv'}", "data.frames=4", "data.sampling=4x2", "data.batch_size=3",
        "data.workers=0", "schedule.epochs=2", "schedule.warmup_epochs=0", "optim.lr=1e-3",
        f"run.out_dir={out}", "run.device=cpu", "eval.views=2x1", *extra])


def evl_recipe(config):
    return get_recipe("evl")(config)


def test_training_runs_evaluates_and_writes_the_model(dataset, tmp_path):
    config = evl_config(dataset, tmp_path / "run")
    result = train(config, evl_recipe(config))
    assert result.completed and result.metrics["num_samples"] == 3
    assert (tmp_path / "run" / "model.pt").is_file()


def test_only_decoder_and_head_train(dataset, tmp_path):
    recipe = evl_recipe(evl_config(dataset, tmp_path))
    model = recipe.build_model()
    names = [n for g in recipe.param_groups(model) for n, _ in g.params]
    assert names and all(n.startswith(("model.video_encoder.decoder.", "model.head.")) for n in names)


def test_augment_has_no_flip_by_default(dataset, tmp_path):
    assert evl_recipe(evl_config(dataset, tmp_path)).augment(64).flip == 0.0
    assert evl_recipe(evl_config(dataset, tmp_path, "recipe.flip=true")).augment(64).flip == 0.5


def test_eval_fuses_per_view_softmax(dataset, tmp_path):
    recipe = evl_recipe(evl_config(dataset, tmp_path))
    trainer = recipe.build_model().eval()
    clips = torch.randn(2, 3, 4, 3, 64, 64)
    scores, _ = recipe.evaluate_batch(trainer, {"video": clips, "label": torch.tensor([0, 1])})
    expected = torch.stack([trainer.model.view_fused_scores(trainer.model(c)) for c in clips])
    assert torch.allclose(scores, expected, atol=1e-6)


def test_forward_from_features_matches_forward(dataset, tmp_path):
    recipe = evl_recipe(evl_config(dataset, tmp_path))
    model = recipe.build_model().model.eval()
    clips = torch.randn(2, 4, 3, 64, 64)
    blocks = model.video_encoder.block_features(clips)
    assert torch.equal(model(clips), model.forward_from_features(blocks))


def test_loss_decreases_on_a_fixed_batch(dataset, tmp_path):
    recipe = evl_recipe(evl_config(dataset, tmp_path))
    torch.manual_seed(0)
    model = recipe.build_model().eval()  # no dropout: a fixed objective
    data = recipe.train_dataset(model)
    items = [data[i] for i in range(6)]
    batch = {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items]),
             "index": torch.arange(6)}
    optimizer = torch.optim.AdamW([p for g in recipe.param_groups(model) for _, p in g.params], lr=1e-3)
    losses = []
    for _ in range(8):
        loss = recipe.training_step(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_gives_identical_weights(dataset, tmp_path):
    extra = ("eval.every_n_epochs=0",)
    straight = train(evl_config(dataset, tmp_path / "a", *extra), evl_recipe(evl_config(dataset, tmp_path / "a", *extra)))
    config = evl_config(dataset, tmp_path / "b", *extra)
    assert not train(config, evl_recipe(config), stop_after_epoch=1).completed
    config = evl_config(dataset, tmp_path / "b", *extra, "run.resume=auto")
    resumed = train(config, evl_recipe(config))
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_config_loads():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / "configs/evl/k400.yaml")
    assert config.recipe["name"] == "evl" and config.optim.lr == 4e-4 and config.optim.weight_decay == 0.05
    assert config.schedule.warmup_epochs == 0 and config.data.sampling == "dense"
    from ovar.video import parse_sampling

    sampler = parse_sampling(config.data.sampling, frames=config.data.frames)
    assert (sampler.kind, sampler.frames, sampler.stride) == ("dense", 8, 16)  # the original 8x16
