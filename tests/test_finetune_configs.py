"""Shipped fine-tuning configs (ActionCLIP UCF/HMDB from K400, Text4Vis fine-tune) and
``model.init_from`` onto another class list."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ovar.config import load_config
from ovar.data.splits import class_names
from ovar.models.model_file import save_model_file
from ovar.recipes import load_recipe
from ovar.train import train
from test_fidelity_procedure import CLASSES, _config, dataset  # noqa: F401  (dataset is a fixture)

ROOT = Path(__file__).resolve().parents[1] / "configs"

# The released settings, written out from the originals' configs (ActionCLIP
# configs/{ucf101,hmdb51}/*_ft.yaml; Text4Vis configs/{ucf101,hmdb51}/*_k400_finetune.yaml).
ACTIONCLIP_FT = {"recipe": "actionclip", "backbone": "ViT-B-16", "frames": 8, "batch": 32, "lr": 5e-6,
                 "wd": 0.2, "betas": (0.9, 0.98), "epochs": 50, "warmup": 5, "visual": 1.0, "fusion": 10.0,
                 "rand_augment": None, "accumulate": 1, "eval_every": 1}
TEXT4VIS_FT = {"recipe": "text4vis", "backbone": "ViT-L-14", "frames": 16, "batch": 4, "lr": 5e-5, "wd": 0.2,
               "betas": (0.9, 0.999), "epochs": 30, "warmup": 5, "visual": 0.1, "rand_augment": None,
               "accumulate": 2, "eval_every": 5}
SHIPPED = [("actionclip/ucf101_finetune.yaml", ACTIONCLIP_FT, "ucf101", 101),
           ("actionclip/hmdb51_finetune.yaml", ACTIONCLIP_FT, "hmdb51", 51),
           ("text4vis/ucf101_finetune.yaml", TEXT4VIS_FT, "ucf101", 101),
           ("text4vis/hmdb51_finetune.yaml", TEXT4VIS_FT, "hmdb51", 51)]


@pytest.mark.parametrize("file, want, classes, count", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_finetune_config_has_the_released_settings(file, want, classes, count):
    config = load_config(ROOT / file)
    recipe = config.recipe
    assert recipe["name"] == want["recipe"] and recipe.get("fusion") == "Transf"
    assert recipe.get("rand_augment", "unset") is want["rand_augment"]
    assert config.model.backbone == want["backbone"] and config.model.init_from is None
    assert config.data.frames == want["frames"] and config.data.batch_size == want["batch"]
    assert config.data.classes == classes and len(class_names(classes)) == count
    assert config.optim.lr == pytest.approx(want["lr"]) and config.optim.weight_decay == pytest.approx(want["wd"])
    assert tuple(config.optim.betas) == pytest.approx(want["betas"]) and config.optim.grad_clip is None
    assert config.optim.accumulate == want["accumulate"]
    assert config.schedule.epochs == want["epochs"] and config.schedule.warmup_epochs == want["warmup"]
    assert config.eval.every_n_epochs == want["eval_every"]
    if want["recipe"] == "actionclip":
        assert recipe["visual_lr_ratio"] == want["visual"] and recipe["fusion_lr_ratio"] == want["fusion"]
    else:
        assert config.optim.backbone_lr_ratio == pytest.approx(want["visual"])


def test_actionclip_rand_augment_switch(dataset, tmp_path):  # noqa: F811
    on = load_recipe("actionclip")(_config(dataset, tmp_path, "actionclip")).augment(224)
    off = load_recipe("actionclip")(_config(dataset, tmp_path, "actionclip", "recipe.rand_augment=null")).augment(224)
    assert on.rand_augment == (2, 9) and off.rand_augment is None
    assert off.multi_scale_crop == on.multi_scale_crop and off.color_jitter == on.color_jitter


def _write_classes(root: Path, names: list[str]) -> Path:
    path = root / f"classes_{len(names)}_{names[0].split()[0]}.csv"
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return path


@pytest.mark.parametrize("name", ["actionclip", "text4vis"])
def test_shipped_config_fine_tunes_onto_another_class_list(name, dataset, tmp_path):  # noqa: F811
    """A 3-class source run, then the shipped fine-tune config on a 2-class list."""
    source_config = _config(dataset, tmp_path / "k400", name, "data.batch_size=3", "schedule.epochs=1",
                            "schedule.warmup_epochs=0", "eval.every_n_epochs=0", "optim.lr=1e-3")
    source = train(source_config, load_recipe(name)(source_config))
    assert source.completed
    new_classes = ["surfing water", "archery"]  # a list in another order, one class fewer
    (tmp_path / "two.txt").write_text("c1.mp4 0\nc0.mp4 1\n")
    config = load_config(ROOT / name / "ucf101_finetune.yaml", [
        "model.backbone=tiny", "model.pretrained=none", f"model.init_from={tmp_path / 'k400'}",
        f"data.classes={_write_classes(tmp_path, new_classes)}", f"data.root={dataset}",
        f"data.train_list={tmp_path / 'two.txt'}", f"data.val_list={tmp_path / 'two.txt'}",
        "data.frames=4", "data.batch_size=2", "data.workers=0", "schedule.epochs=1", "schedule.warmup_epochs=0",
        "optim.accumulate=1", "eval.every_n_epochs=1", f"run.out_dir={tmp_path / 'ft'}", "run.device=cpu"])
    recipe = load_recipe(name)(config)
    torch.manual_seed(5)
    model = recipe.build_model()
    recipe.initialize(model)
    old = source.model.state_dict()
    for key, value in model.state_dict().items():  # no class-dependent weights: everything is taken
        torch.testing.assert_close(value, old[key], rtol=0, atol=0, msg=key)
    # Class texts come from the new list.
    inner = model.model
    expected = inner.classifier(new_classes, cache=False)
    got = model.classifier if name == "text4vis" else recipe.eval_model(model).classifier
    assert got.shape == expected.shape and torch.allclose(got, expected)
    result = train(config, recipe)  # the whole run: trains, evaluates on the 2 classes
    assert result.completed and result.metrics["num_samples"] == 2


def _evl_source(dataset, tmp_path):  # noqa: F811
    config = _config(dataset, tmp_path / "src", "evl", "recipe.num_layers=2")
    recipe = load_recipe("evl")(config)
    torch.manual_seed(1)
    trainer = recipe.build_model()
    with torch.no_grad():  # distinct rows: row c of the weight is 0.25 * (c + 1), bias -c
        for c in range(len(CLASSES)):
            trainer.model.head[2].weight[c].fill_(0.25 * (c + 1))
            trainer.model.head[2].bias[c] = -float(c)
    return config, trainer


def _evl_target(dataset, tmp_path, source_path):  # noqa: F811
    names = ["playing guitar", "juggling", "Archery"]  # reordered, one new, another case
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = _config(dataset, tmp_path / "dst", "evl", "recipe.num_layers=2",
                     f"data.classes={_write_classes(tmp_path, names)}", f"model.init_from={source_path}")
    recipe = load_recipe("evl")(config)
    torch.manual_seed(7)
    model = recipe.build_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    recipe.initialize(model)
    return model, initial


def test_evl_head_rows_are_remapped_by_class_name(dataset, tmp_path):  # noqa: F811
    from ovar.config import save_resolved

    config, source = _evl_source(dataset, tmp_path)
    save_model_file(tmp_path / "model.pt", source.model)  # records its class names
    torch.save({"model": source.state_dict(), "config": config_yaml(config)}, tmp_path / "epoch_1.pt")
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": source.state_dict()}, run / "final.pt")
    save_resolved(config, run)  # a run folder: the names come from its config.yaml
    for path in (tmp_path / "model.pt", tmp_path / "epoch_1.pt", run):
        model, initial = _evl_target(dataset, tmp_path / f"target_{path.stem}", path)
        weight, bias = model.model.head[2].weight, model.model.head[2].bias
        # new 0 = "playing guitar" = old 2; new 2 = "Archery" = old 0; new 1 is new: kept.
        assert torch.all(weight[0] == 0.75) and bias[0] == -2.0, path
        assert torch.all(weight[2] == 0.25) and bias[2] == 0.0, path
        assert torch.equal(weight[1], initial["model.head.2.weight"][1])
        assert bias[1] == initial["model.head.2.bias"][1]
        dec = "model.video_encoder.decoder.cls_token"
        assert torch.equal(model.state_dict()[dec], source.state_dict()[dec])


def test_evl_head_without_source_names_keeps_shape_matching(dataset, tmp_path):  # noqa: F811
    _, source = _evl_source(dataset, tmp_path)
    torch.save({"model": source.state_dict()}, tmp_path / "bare.pt")  # no names recorded
    model, initial = _evl_target(dataset, tmp_path, tmp_path / "bare.pt")
    # Same class count: the rows are copied in their old order (names unknown).
    assert torch.all(model.model.head[2].weight[0] == 0.25) and model.model.head[2].bias[2] == -2.0


def config_yaml(config) -> str:
    from ovar.config import to_yaml

    return to_yaml(config)
