"""Ratios, ranges and weights at asymmetric values, through every entry point.

At r = 0.5 ``r·A + (1 − r)·B`` and ``(1 − r)·A + r·B`` coincide, and a range starting at
0 hides a dropped lower bound; here r = 0.25 and α ∈ [0.2, 0.3], so a swapped direction
or an ignored bound changes the answer.  Entry points: the IWO helpers, the library's
interpolation and patching functions, the converter, ``load_model``, ``ovar convert``,
``ovar eval --patch-ratio``, ``ovar weights interpolate`` and the Open-VCLIP recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ovar.cli import main
from videogen import make_video

R = 0.25
CLASSES = ["archery", "surfing", "biking"]


def _mix(a: torch.Tensor, b: torch.Tensor, r: float = R) -> torch.Tensor:
    """r·a + (1 − r)·b, by hand."""
    return r * a.float() + (1 - r) * b.float()


# --- IWO ------------------------------------------------------------------------------------


def test_iwo_alpha_is_drawn_between_both_bounds():
    from ovar.recipes.iwo import sample_alpha

    torch.manual_seed(11)
    draws = [sample_alpha(0.2, 0.3) for _ in range(200)]
    torch.manual_seed(11)
    expected = [0.2 + 0.1 * float(torch.rand((), dtype=torch.float64)) for _ in range(200)]
    assert draws == pytest.approx(expected, abs=1e-12)
    assert min(draws) >= 0.2 and max(draws) <= 0.3 and max(draws) - min(draws) > 0.08


@pytest.mark.parametrize("chain_rule", [False, True])
def test_iwo_interpolated_parameters_move_alpha_towards_the_anchor(chain_rule):
    from ovar.recipes.iwo import interpolated_parameters

    module = nn.Linear(3, 2)
    anchor = {"weight": torch.full((2, 3), 4.0)}
    with torch.no_grad():
        module.weight.fill_(2.0)
    out = interpolated_parameters(module, anchor, 0.25, chain_rule=chain_rule)
    assert set(out) == {"weight"}
    torch.testing.assert_close(out["weight"].detach(), torch.full((2, 3), 2.5))  # 0.25·4 + 0.75·2
    out["weight"].sum().backward()
    grad = 0.75 if chain_rule else 1.0  # the original omits the chain-rule factor (1 − α)
    torch.testing.assert_close(module.weight.grad, torch.full((2, 3), grad))


# --- library weight tools ---------------------------------------------------------------------


def test_interpolate_state_dicts_at_a_quarter():
    from ovar.train.interpolation import interpolate_state_dicts

    a = {"w": torch.tensor([8.0, 0.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([0.0, 4.0]), "n": torch.tensor(5), "only_b": torch.tensor([1.0])}
    out = interpolate_state_dicts(a, b, R)
    assert out["w"].tolist() == [2.0, 3.0]  # 0.25·A + 0.75·B
    assert out["n"].item() == 5 and out["only_b"].tolist() == [1.0]


def test_patch_module_at_a_quarter(tiny_backbone):
    import copy

    from ovar.train.interpolation import patch_module

    module = nn.Module()
    module.backbone = copy.deepcopy(tiny_backbone)
    before = {k: v.clone() for k, v in module.backbone.clip.state_dict().items()}
    generator = torch.Generator().manual_seed(5)
    clip = {k: torch.randn(v.shape, generator=generator) for k, v in before.items() if v.is_floating_point()}
    patch_module(module, clip, R)
    after = module.backbone.clip.state_dict()
    for key, value in clip.items():
        torch.testing.assert_close(after[key], _mix(value, before[key]), atol=1e-6, rtol=0, msg=key)


# --- an Open-VCLIP checkpoint and its CLIP, built from the tiny backbone ------------------------


@pytest.fixture(scope="module")
def original(tmp_path_factory, tiny_backbone) -> dict:
    """``clip.pt`` (the tiny CLIP) and ``checkpoint.pth`` (Open-VCLIP layout: its image tower and
    logit scale moved away from CLIP), plus videos, a list and classes for ``ovar eval``."""
    base = tmp_path_factory.mktemp("asymmetric")
    clip = {k: v.clone() for k, v in tiny_backbone.clip.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    trained = {k: (v + 0.05 * torch.randn(v.shape, generator=generator)
                   if v.is_floating_point() and (k.startswith("visual.") or k == "logit_scale") else v.clone())
               for k, v in clip.items()}
    torch.save(clip, base / "clip.pt")
    torch.save({"model_state": {f"model.{k}": v for k, v in trained.items()}}, base / "checkpoint.pth")
    rows = []
    for c, name in enumerate(CLASSES):
        make_video(base / f"{name}.mp4", num_frames=10 + 3 * c, fps=10, size=(64, 48))
        rows.append(f"{name}.mp4,{c}")
    (base / "test.csv").write_text("\n".join(rows) + "\n")
    (base / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {"root": base, "clip": clip, "trained": trained}


def _check_patched(clip_state: dict, original: dict, what: str) -> None:
    """The image tower and logit scale at 0.25·CLIP + 0.75·checkpoint; the text tower CLIP's."""
    checked = 0
    for key, value in original["clip"].items():
        if not value.is_floating_point():
            continue
        want = _mix(value, original["trained"][key]) if key.startswith("visual.") or key == "logit_scale" else value
        torch.testing.assert_close(clip_state[key].float(), want, atol=1e-5, rtol=0, msg=f"{what}: {key}")
        checked += 1
    assert checked > 20


def test_converter_and_load_model_patch_a_quarter_towards_clip(original):
    import ovar
    from ovar.models.convert import convert_checkpoint

    root = original["root"]
    model = convert_checkpoint("open_vclip", root / "checkpoint.pth", clip=root / "clip.pt", patch_ratio=R, frames=4)
    _check_patched(model.backbone.clip.state_dict(), original, "convert_checkpoint")
    loaded = ovar.load_model(checkpoint=root / "checkpoint.pth", clip=root / "clip.pt", patch_ratio=R, frames=4)
    _check_patched(loaded.backbone.clip.state_dict(), original, "load_model")


def test_convert_command_patches_a_quarter_towards_clip(original, tmp_path, capsys):
    from ovar.models.model_file import load_model_file

    root = original["root"]
    assert main(["convert", str(root / "checkpoint.pth"), "--from", "open_vclip", "--clip", str(root / "clip.pt"),
                 "--patch-ratio", "0.25", "--frames", "4", "--out", str(tmp_path / "model.pt")]) == 0
    _check_patched(load_model_file(tmp_path / "model.pt").backbone.clip.state_dict(), original, "ovar convert")


def test_eval_patch_ratio_scores_the_quarter_patched_model(original, tmp_path, capsys):
    import ovar
    from ovar.data.lists import read_list
    from ovar.eval import score_views
    from ovar.protocols.sources import EvalSettings, eval_dataset
    from ovar.eval.scores import read_scores

    root = original["root"]
    code = main(["eval", "--protocol", "closed", "--root", str(root), "--list", str(root / "test.csv"),
                 "--classes", str(root / "classes.txt"), "--out", str(tmp_path / "out"), "--workers", "0",
                 "--checkpoint", str(root / "checkpoint.pth"), "--clip", str(root / "clip.pt"),
                 "--patch-ratio", "0.25", "--views", "1x1", "run.device=cpu"])
    assert code == 0
    stored = read_scores(tmp_path / "out" / "closed" / "test")

    # The same videos scored here by a model patched by hand.
    model = ovar.load_model(checkpoint=root / "checkpoint.pth", clip=root / "clip.pt")
    with torch.no_grad():
        for key, param in model.backbone.clip.state_dict().items():
            if key.startswith("visual.") or key == "logit_scale":
                param.copy_(_mix(original["clip"][key], original["trained"][key]))
    settings = EvalSettings(root=root, views="1x1", frames=model.frames, workers=0)
    dataset = eval_dataset(read_list(root / "test.csv"), model.backbone, model.frames, settings, kind=model.kind)  # the original system's test input
    video = torch.stack([dataset[i]["video"] for i in range(len(dataset))])
    with torch.no_grad():
        expected = score_views(model, video, model.classifier(CLASSES, cache=False), "sum_logits")
    torch.testing.assert_close(stored["scores"], expected, atol=1e-4, rtol=0)


def test_weights_interpolate_command_with_clip_on_either_side(original, tmp_path, capsys):
    """``--ratio 0.25 A B`` is 0.25·A + 0.75·B: with CLIP as A the checkpoint moves a quarter
    towards CLIP; with CLIP as B, three quarters."""
    root = original["root"]
    for a, b, towards_clip in ((root / "clip.pt", root / "checkpoint.pth", R),
                               (root / "checkpoint.pth", root / "clip.pt", 1 - R)):
        out = tmp_path / f"mix_{towards_clip}.pt"
        assert main(["weights", "interpolate", "--ratio", "0.25", str(a), str(b), "--out", str(out)]) == 0
        state = torch.load(out, weights_only=True)["model_state"]
        for key, value in original["clip"].items():
            if value.is_floating_point():
                want = _mix(value, original["trained"][key], towards_clip)
                torch.testing.assert_close(state[f"model.{key}"].float(), want, atol=1e-5, rtol=0, msg=key)


# --- the Open-VCLIP recipe ----------------------------------------------------------------------


def test_recipe_exports_the_quarter_patched_model(original, tmp_path):
    from ovar.config import load_config
    from ovar.models.model_file import load_model_file
    from ovar.recipes import get_recipe

    root = original["root"]
    config = load_config(None, [
        "recipe.name=open_vclip", "recipe.patch_ratio=0.25", "recipe.average_from_epoch=null", "model.backbone=tiny",
        "model.pretrained=none", f"data.root={root}", f"data.train_list={root / 'test.csv'}",
        f"data.classes={root / 'classes.txt'}", "data.frames=4", f"run.out_dir={tmp_path}", "run.device=cpu"])
    recipe = get_recipe("open_vclip")(config)
    torch.manual_seed(0)
    model = recipe.build_model()
    pretrained = {n: p.detach().clone() for n, p in model.model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if name in pretrained:
                param.add_(0.1)
    trained = {n: p.detach().clone() for n, p in model.model.named_parameters() if n in pretrained}
    recipe.finalize(model, tmp_path)
    exported = dict(load_model_file(tmp_path / "model.pt").named_parameters())
    for name, value in pretrained.items():
        torch.testing.assert_close(exported[name].detach(), _mix(value, trained[name]), atol=1e-6, rtol=0, msg=name)
    # The trained model itself is left as it was.
    assert all(torch.equal(p.detach(), trained[n]) for n, p in model.model.named_parameters() if n in trained)


# --- ActionCLIP's template average inside the view fusion ----------------------------------------


def test_actionclip_views_average_over_the_templates(tiny_backbone):
    """A per-template classifier: per view, softmax(100·cos) (mean_softmax) or 100·cos
    (sum_logits) averaged over the templates; then the views' mean or sum."""
    from ovar.eval import score_views
    from ovar.models.actionclip import ActionCLIPModel

    templates = ["a photo of {}.", "a video of a person {} in a field, slowly."]
    model = ActionCLIPModel(tiny_backbone, fusion="meanP", frames=2, templates=templates).eval()
    classifier = model.classifier(CLASSES, cache=False)
    assert classifier.shape[:2] == (2, 3)
    size = tiny_backbone.image_size
    video = torch.randn(2, 3, 2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        probabilities, logits = [], []
        for v in range(3):
            emb = model.encode_video(video[:, v]).double()
            emb = emb / emb.norm(dim=-1, keepdim=True)
            per_template = [100 * emb @ classifier[k].double().t() for k in range(2)]
            assert not torch.allclose(per_template[0], per_template[1], atol=1e-3)
            probabilities.append(sum(t.softmax(-1) for t in per_template) / 2)
            logits.append(sum(per_template) / 2)
        mean_softmax = score_views(model, video, classifier, "mean_softmax")
        sum_logits = score_views(model, video, classifier, "sum_logits")
    torch.testing.assert_close(mean_softmax.double(), sum(probabilities) / 3, atol=1e-5, rtol=0)
    torch.testing.assert_close(sum_logits.double(), sum(logits), atol=1e-3, rtol=0)
