"""Every recipe's own training step: its total loss and each logged component equal values
computed here from the model's outputs with the published formulas, at the recipe's
default settings and at non-default ones (asymmetric weights, so a swapped or dropped
term changes the answer).

The model runs in eval mode (no dropout) so the step and the hand computation see the
same forward; the random draws of a step (templates, IWO's α) are replayed from the same
seed, the way the engine seeds every step.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from ovar.config import load_config
from ovar.recipes import get_recipe
from labelled_videos import CLASSES, write_labelled_videos

DESCRIPTIONS = {"0": "Archery: A person draws a bow and shoots an arrow at a target.",
                "1": "Surfing water: Someone rides a board on a breaking ocean wave.",
                "2": "Playing guitar: A musician strums the strings of a guitar."}
STEP_SEED = 1234


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_labelled_videos(tmp_path_factory.mktemp("loss_videos"), 2)
    (root / "descriptions.json").write_text(json.dumps(DESCRIPTIONS))
    return root


def _recipe(root, tmp_path, name, *extra):

    options = [f"recipe.descriptions={root / 'descriptions.json'}"] if name == "froster" else []
    config = load_config(None, [
        f"recipe.name={name}", "model.backbone=tiny", "model.pretrained=none", f"data.root={root}",
        f"data.train_list={root / 'train.txt'}", f"data.classes={root / 'classes.csv'}", "data.frames=4",
        "data.batch_size=3", "data.workers=0", f"run.out_dir={tmp_path}", "run.device=cpu", *options, *extra])
    return get_recipe(name)(config)


def _batch(recipe, model: nn.Module) -> dict:
    data = recipe.train_dataset(model)
    items = [data[i] for i in (0, 3, 5, 2)]  # labels 0, 1, 2, 1: one class twice
    return {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items]),
            "index": torch.tensor([0, 3, 5, 2])}


def _build(recipe) -> nn.Module:
    torch.manual_seed(0)
    return recipe.build_model().eval()


def _step(recipe, model, batch) -> dict:
    torch.manual_seed(STEP_SEED)
    out = recipe.training_step(model, batch)
    return out if isinstance(out, dict) else {"loss": out}


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood, written out (float64)."""
    logits = logits.detach().double()
    log_z = torch.logsumexp(logits, dim=1)
    return float((log_z - logits[torch.arange(len(labels)), labels]).mean())


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().double()
    return x / x.norm(dim=-1, keepdim=True)


def _close(value, expected: float, what: str) -> None:
    value = value.detach() if isinstance(value, torch.Tensor) else value
    assert float(value) == pytest.approx(expected, rel=1e-5, abs=1e-6), what


# --- ActionCLIP -------------------------------------------------------------------------------


def _kl_sum(target: torch.Tensor, logits: torch.Tensor) -> float:
    """Σ_ij p_ij (log p_ij − log softmax(logits)_ij)."""
    log_q = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return float((target * (target.log() - log_q)).sum())


@pytest.mark.parametrize("extra", [(), ("recipe.fusion=meanP", "recipe.templates=text4vis")])
def test_actionclip_step(dataset, tmp_path, extra):
    """Symmetric KL between the batch's video-text similarities and the same-label targets."""
    from ovar.text.templates import resolve_templates

    recipe = _recipe(dataset, tmp_path, "actionclip", *extra)
    model = _build(recipe)
    batch = _batch(recipe, model)
    out = _step(recipe, model, batch)

    labels = batch["label"]
    torch.manual_seed(STEP_SEED)
    templates = resolve_templates(dict(e.split("=") for e in extra).get("recipe.templates", "actionclip"))
    picks = torch.randint(len(templates), (len(labels),)).tolist()
    prompts = [templates[k].format(CLASSES[int(c)]) for k, c in zip(picks, labels.tolist())]
    inner = model.model
    with torch.no_grad():
        video = _unit(inner.encode_video(batch["video"]))
        text = _unit(inner.backbone.encode_text(inner.backbone.tokenize(prompts)))
    scale = float(inner.backbone.clip.logit_scale.detach().exp())
    logits = scale * video @ text.t()
    same = (labels[:, None] == labels[None, :]).double()
    target = torch.exp(10 * same) / torch.exp(10 * same).sum(dim=1, keepdim=True)
    batch_size = len(labels)
    expected = (_kl_sum(target, logits) / batch_size + _kl_sum(target, logits.t()) / batch_size) / 2
    _close(out["loss"], expected, "symmetric KL")


# --- Text4Vis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("recipe.fusion=meanP",)])
def test_text4vis_step(dataset, tmp_path, extra):
    """Cross-entropy of exp(logit_scale) · cos(video, frozen class embedding)."""
    recipe = _recipe(dataset, tmp_path, "text4vis", *extra)
    model = _build(recipe)
    batch = _batch(recipe, model)
    with torch.no_grad():  # a trained logit scale, so that a misplaced exp() shows
        model.model.backbone.clip.logit_scale.fill_(math.log(20.0))
    out = _step(recipe, model, batch)
    with torch.no_grad():
        video = _unit(model.model.encode_video(batch["video"]))
        classifier = _unit(model.model.classifier(CLASSES, cache=False))
    logits = 20.0 * video @ classifier.t()
    _close(out["loss"], _cross_entropy(logits, batch["label"]), "cross-entropy")


# --- EVL --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layers", [2, 1])  # a short decoder: the loss has no other setting
def test_evl_step(dataset, tmp_path, layers):
    """Cross-entropy of the decoder head's logits for the clips."""
    recipe = _recipe(dataset, tmp_path, "evl", "data.sampling=4x2", f"recipe.num_layers={layers}")
    model = _build(recipe)
    batch = _batch(recipe, model)
    out = _step(recipe, model, batch)
    with torch.no_grad():
        logits = model.model(batch["video"])
    _close(out["loss"], _cross_entropy(logits, batch["label"]), "cross-entropy")


# --- Open-VCLIP -------------------------------------------------------------------------------


def _trained_away_from_clip(model: nn.Module) -> dict[str, torch.Tensor]:
    """The pretrained values of the trainable CLIP tensors; then moves those tensors away
    from them, as training would, so that θ and θ_CLIP differ."""
    clip = model.model.backbone.clip
    anchor = {n: p.detach().clone() for n, p in clip.named_parameters() if p.requires_grad}
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in clip.named_parameters():
            if name in anchor:
                param.add_(0.02 * torch.randn(param.shape, generator=generator))
    return anchor


def _logits_at(model: nn.Module, anchor: dict[str, torch.Tensor], alpha: float, video, classifier) -> torch.Tensor:
    """Logits of a copy whose CLIP tensors are moved to α·θ_CLIP + (1 − α)·θ."""
    moved = copy.deepcopy(model.model)
    params = dict(moved.backbone.clip.named_parameters())
    with torch.no_grad():
        for name, value in anchor.items():
            params[name].copy_(alpha * value + (1 - alpha) * params[name])
        return moved(video, classifier)


@pytest.mark.parametrize("extra, ratio, low, high", [
    ((), 0.5, 0.0, 0.6),  # the released run
    (("recipe.iwo_loss_ratio=0.25", "recipe.iwo_alpha_low=0.2", "recipe.iwo_alpha_high=0.3"), 0.25, 0.2, 0.3),
])
def test_open_vclip_step(dataset, tmp_path, extra, ratio, low, high):
    """CE(θ) + λ · CE(α·θ_CLIP + (1 − α)·θ), α ~ U(low, high)."""
    recipe = _recipe(dataset, tmp_path, "open_vclip", *extra)
    model = _build(recipe)
    batch = _batch(recipe, model)
    anchor = _trained_away_from_clip(model)
    out = _step(recipe, model, batch)

    torch.manual_seed(STEP_SEED)
    alpha = low + (high - low) * float(torch.rand((), dtype=torch.float64))
    assert out["alpha"] == pytest.approx(alpha, abs=1e-12)
    labels = batch["label"]
    with torch.no_grad():
        ce = _cross_entropy(model.model(batch["video"], model.classifier), labels)
    ce_interp = _cross_entropy(_logits_at(model, anchor, alpha, batch["video"], model.classifier), labels)
    assert abs(ce - ce_interp) > 1e-3  # the interpolated weights really score differently
    _close(out["ce"], ce, "CE at θ")
    _close(out["ce_interp"], ce_interp, "CE at the interpolated weights")
    _close(out["loss"], ce + ratio * ce_interp, "CE + λ·CE_interp")


def test_open_vclip_step_without_iwo_is_plain_cross_entropy(dataset, tmp_path):
    recipe = _recipe(dataset, tmp_path, "open_vclip", "recipe.iwo=false")
    model = _build(recipe)
    batch = _batch(recipe, model)
    _trained_away_from_clip(model)
    out = _step(recipe, model, batch)
    with torch.no_grad():
        ce = _cross_entropy(model.model(batch["video"], model.classifier), batch["label"])
    assert set(out) == {"loss"}
    _close(out["loss"], ce, "CE")


# --- FROSTER ----------------------------------------------------------------------------------


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(1 - (_unit(a) * _unit(b)).sum(dim=-1).mean())


@pytest.mark.parametrize("extra, ratio, scale", [
    ((), 2.0, 0.1),  # the released run
    (("recipe.distillation_ratio=0.25", "recipe.projector_scale=0.3"), 0.25, 0.3),
])
def test_froster_step(dataset, tmp_path, extra, ratio, scale):
    """CE + ratio · [(1 − cos(v_s, v_t)) + (1 − cos(t_s, t_t))], with v_s = f + s·P_v(f) and
    t_s = w + s·P_t(w) against the frozen CLIP teacher, at the step's template draw."""
    from ovar.text.descriptions import fill_prompts
    from ovar.text.templates import resolve_templates

    recipe = _recipe(dataset, tmp_path, "froster", *extra)
    model = _build(recipe)
    batch = _batch(recipe, model)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # trained projectors: both distillation terms are non-zero
        for projector in (model.projector_v, model.projector_t):
            projector[2].weight.copy_(0.5 * torch.randn(projector[2].weight.shape, generator=generator))
    out = _step(recipe, model, batch)

    templates = resolve_templates("froster")
    torch.manual_seed(STEP_SEED)
    picks = [int(torch.randint(len(templates) - 1, ())), len(templates) - 1]
    assert out["template"] == picks[0]
    descriptions = [DESCRIPTIONS[str(i)] for i in range(len(CLASSES))]
    prompts = [fill_prompts(CLASSES, templates[k], descriptions) for k in picks]
    student, teacher = model.model.backbone, recipe.teacher(model, torch.device("cpu")).backbone
    video, labels = batch["video"], batch["label"]
    with torch.no_grad():
        frames = _unit(model.model.frame_embeddings(video))  # (B*T, E)
        w = _unit(torch.stack([_unit(student.encode_text(student.tokenize(p))) for p in prompts]).mean(0))
        logits = float(student.clip.logit_scale.exp()) * frames.view(len(labels), 4, -1).mean(1) @ w.t()
        v_s = frames + scale * model.projector_v(frames.float()).double()
        t_s = w + scale * model.projector_t(w.float()).double()
        v_t = _unit(teacher.encode_image(video.flatten(0, 1)))
        t_t = _unit(torch.stack([_unit(teacher.encode_text(teacher.tokenize(p))) for p in prompts]).mean(0))
    ce = _cross_entropy(logits, labels)
    video_term, text_term = _cosine_distance(v_s, v_t), _cosine_distance(t_s, t_t)
    assert video_term > 1e-3 and text_term > 1e-3
    _close(out["ce"], ce, "CE")
    _close(out["distill_video"], video_term, "video distillation")
    _close(out["distill_text"], text_term, "text distillation")
    _close(out["loss"], ce + ratio * (video_term + text_term), "CE + ratio·(video + text)")
