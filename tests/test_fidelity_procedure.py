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
    recipe = load_recipe(name)(_config(dataset, tmp_path, name, *extra))
    model = recipe.build_model()
    sampler = recipe.eval_dataset(model).sampler
    assert sampler.position == position
    middle = load_recipe(name)(_config(dataset, tmp_path, name, *extra, "data.test_frames=middle"))
    sampler = middle.eval_dataset(model).sampler
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
    recipe = load_recipe("text4vis")(_config(dataset, tmp_path, "text4vis", *setting))
    transform = recipe.train_dataset(recipe.build_model()).transform
    flips = [op.p for op in transform.ops.transforms if type(op).__name__ == "RandomHorizontalFlip"]
    assert flips == ([] if p is None else [p])


# ------------------------------------------------------------ fine-tuning, EVL options


def test_init_from_a_trained_checkpoint_and_a_model_file(dataset, tmp_path) -> None:
    from ovar.models.model_file import save_model_file
    from ovar.train.init_from import init_from

    config = _config(dataset, tmp_path, "actionclip")
    recipe = load_recipe("actionclip")(config)
    torch.manual_seed(1)
    source = recipe.build_model()
    with torch.no_grad():
        source.model.video_encoder.fusion.frame_position_embeddings.weight.add_(0.25)
    torch.save({"model": source.state_dict()}, tmp_path / "final.pt")
    save_model_file(tmp_path / "model.pt", source.model)
    for path in (tmp_path, tmp_path / "model.pt"):  # a run folder (final.pt) and a model file
        torch.manual_seed(2)
        fresh = recipe.build_model()
        assert not torch.equal(fresh.state_dict()["model.video_encoder.fusion.frame_position_embeddings.weight"],
                               source.state_dict()["model.video_encoder.fusion.frame_position_embeddings.weight"])
        init_from(fresh, path)
        for key, value in source.state_dict().items():
            torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_init_from_runs_in_the_engine_and_keeps_new_class_tensors(dataset, tmp_path) -> None:
    from ovar.errors import OvarError

    base = _config(dataset, tmp_path, "evl", "recipe.num_layers=2")
    recipe = load_recipe("evl")(base)
    torch.manual_seed(1)
    source = recipe.build_model()
    torch.save({"model": source.state_dict()}, tmp_path / "k400.pt")
    # A new dataset with 2 classes: the head's class rows keep their initialisation.
    (dataset / "two.csv").write_text("id,name\n0,archery\n1,surfing water\n")
    config = _config(dataset, tmp_path, "evl", "recipe.num_layers=2", f"data.classes={dataset / 'two.csv'}",
                     f"model.init_from={tmp_path / 'k400.pt'}")
    new = load_recipe("evl")(config)
    model = new.build_model()
    new.initialize(model)
    own, old = model.state_dict(), source.state_dict()
    same = [k for k in own if own[k].shape == old[k].shape]
    assert all(torch.equal(own[k], old[k]) for k in same)
    assert [k for k in own if own[k].shape != old[k].shape]  # the class-dependent head
    with pytest.raises(OvarError, match="init_from"):
        new_config = _config(dataset, tmp_path, "evl", "recipe.num_layers=2", f"model.init_from={tmp_path / 'x.pt'}")
        load_recipe("evl")(new_config).initialize(model)


def test_evl_tsn_sampling_is_for_training_only(dataset, tmp_path) -> None:
    config = _config(dataset, tmp_path, "evl", "recipe.num_layers=2", "data.sampling=4x2", "recipe.tsn_sampling=true")
    recipe = load_recipe("evl")(config)
    model = recipe.build_model()
    assert recipe.train_dataset(model).sampler.kind == "segment"
    assert recipe.eval_dataset(model).sampler.kind == "dense"
    plain = load_recipe("evl")(_config(dataset, tmp_path, "evl", "recipe.num_layers=2", "data.sampling=4x2"))
    assert plain.train_dataset(model).sampler.kind == "dense"


# ------------------------------------------------------------- Text4Vis NCE variants


def test_text4vis_nce_loss_variants() -> None:
    from ovar.losses.symmetric_kl import dual_softmax, same_label_targets, symmetric_kl_loss

    g = torch.Generator().manual_seed(4)
    video, text = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    labels, scale = torch.tensor([2, 0, 2, 1, 0]), torch.tensor(20.0)
    logits = scale * nn.functional.normalize(video, dim=-1) @ nn.functional.normalize(text, dim=-1).t()
    # Independent forms: DS re-weights each column by its softmax at temperature 1000, times B.
    weights = torch.exp(logits / 1000) / torch.exp(logits / 1000).sum(dim=0, keepdim=True)
    torch.testing.assert_close(dual_softmax(logits), logits * weights * 5)
    target = same_label_targets(labels)

    def kl(z):
        return (target * (target.log() - z.log_softmax(-1))).sum() / 5

    ds = (kl(dual_softmax(logits)) + kl(dual_softmax(logits.t()))) / 2
    torch.testing.assert_close(symmetric_kl_loss(video, text, labels, scale, mode="ds"), ds)
    ce = (nn.functional.cross_entropy(logits, torch.arange(5)) + nn.functional.cross_entropy(logits.t(), torch.arange(5))) / 2
    torch.testing.assert_close(symmetric_kl_loss(video, text, labels, scale, mode="ce"), ce)
    assert not torch.isclose(ds, symmetric_kl_loss(video, text, labels, scale))


def test_text4vis_nce_recipe(dataset, tmp_path) -> None:
    config = _config(dataset, tmp_path, "text4vis_nce", "recipe.loss=ds", "recipe.fix_text=true")
    recipe = load_recipe("text4vis_nce")(config)
    model = recipe.build_model()
    groups = {g.name for g in recipe.param_groups(model)}
    assert groups == {"visual", "fusion"}
    assert not any(p.requires_grad for n, p in model.named_parameters() if "token_embedding" in n)
    assert recipe.templates[0] == "a video of a person {}." and recipe.loss_mode == "ds"
    assert recipe.eval_dataset(model).sampler.position == "start"
    train_set = recipe.train_dataset(model)
    video = torch.stack([train_set[i]["video"] for i in range(3)])
    loss = recipe.training_step(model, {"video": video, "label": torch.tensor([0, 1, 2])})["loss"]
    loss.backward()
    with pytest.raises(ConfigError, match="recipe.loss"):
        load_recipe("text4vis_nce")(_config(dataset, tmp_path, "text4vis_nce", "recipe.loss=kl"))
