"""FROSTER parity: the converted released checkpoint reproduces the original's evaluation
classifier and logits, and the training-step loss breakdown at the stored template."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reference_set import ReferenceSet

REFERENCE = ReferenceSet("froster")
ROOT = REFERENCE.root
pytestmark = REFERENCE.skip_unless_available("FROSTER")
ATOL = 1e-5


@pytest.fixture(scope="module")
def meta() -> dict:
    return REFERENCE.meta


@pytest.fixture(scope="module")
def expected() -> dict:
    return REFERENCE.load("expected.pt")


@pytest.fixture(scope="module")
def inputs() -> dict:
    return REFERENCE.load("inputs.pt")


@pytest.fixture(scope="module")
def model(meta):
    from ovar.models.convert import convert_checkpoint

    return convert_checkpoint("froster", ROOT / "checkpoint.pth", frames=meta["sizes"]["frames_T"])


def _video(inputs) -> torch.Tensor:
    return inputs["video"].permute(0, 2, 1, 3, 4)


def _descriptions(meta) -> list[str]:
    texts = meta["rephrased_texts"]
    return [texts[str(i)] for i in range(len(texts))] if isinstance(texts, dict) else list(texts)


def _close_logits(actual, expected_logits, scale):
    torch.testing.assert_close(actual / scale, expected_logits / scale, atol=ATOL, rtol=0)


def test_eval_tokens(model, meta, expected):
    from ovar.text.descriptions import fill_prompts

    prompts = [fill_prompts(meta["classes"], t, _descriptions(meta)) for t in meta["templates"]]
    tokens = torch.stack([model.backbone.tokenize(p) for p in prompts])
    assert torch.equal(tokens, expected["text_tokens"])


def test_eval_classifier_and_logits(model, meta, inputs, expected):
    classifier = model.classifier(meta["classes"], meta["templates"], descriptions=_descriptions(meta), cache=False)
    torch.testing.assert_close(classifier, expected["text_classifier"], atol=ATOL, rtol=0)
    with torch.no_grad():
        frames = model.frame_embeddings(_video(inputs))
        logits = model(_video(inputs), classifier)
    torch.testing.assert_close(frames, expected["frame_embeddings"], atol=ATOL, rtol=0)
    _close_logits(logits, expected["logits"], expected["logit_scale_exp"])


def test_block_outputs(model, inputs, expected):
    outputs = {}
    blocks = model.backbone.clip.visual.transformer.resblocks
    hooks = [b.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out)) for k, b in enumerate(blocks)]
    with torch.no_grad():
        model.frame_embeddings(_video(inputs))
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(outputs[0].transpose(0, 1), expected["visual_block0_output"], atol=ATOL, rtol=0)
    torch.testing.assert_close(outputs[len(blocks) - 1].transpose(0, 1), expected["visual_last_block_output"],
                               atol=ATOL, rtol=0)


def test_training_loss_breakdown(model, meta, inputs, expected):
    """Student (checkpoint + its projectors) vs teacher (clip.pt, no temporal attention) at
    the stored template draw: every feature and loss term of the original."""
    from ovar.models.convert.actionclip import build_backbone
    from ovar.models.convert.open_vclip import read_projectors
    from ovar.losses import feature_distillation_loss
    from ovar.models.weights_io import read_weights
    from ovar.recipes.froster import FrosterTrainer, Teacher
    from ovar.text.descriptions import fill_prompts

    trainer = FrosterTrainer(model)
    missing = trainer.load_state_dict(read_projectors(ROOT / "checkpoint.pth"), strict=False).missing_keys
    assert not [k for k in missing if k.startswith("projector_")]
    prompts = [fill_prompts(meta["classes"], t, _descriptions(meta)) for t in meta["templates"]]
    picks = [int(expected["train_template_index"]), len(prompts) - 1]
    tokens = torch.stack([model.backbone.tokenize(prompts[k]) for k in picks])
    assert torch.equal(tokens, expected["train_text_tokens"])
    logits, v_s, t_s = trainer(_video(inputs), tokens)
    clip_state, _ = read_weights(ROOT / "clip.pt")
    teacher = Teacher(build_backbone(clip_state, ROOT / "clip.pt"), prompts)
    v_t, t_t = teacher.frame_features(_video(inputs)), teacher.classifier(picks)
    _close_logits(logits.detach(), expected["train_logits"], expected["logit_scale_exp"])
    for value, key in ((v_s, "train_student_frame_features"), (t_s, "train_student_text_features"),
                       (v_t, "train_teacher_frame_features"), (t_t, "train_teacher_text_features")):
        torch.testing.assert_close(value.detach(), expected[key], atol=ATOL, rtol=0, msg=key)
    ce = F.cross_entropy(logits, inputs["labels"])
    video_term, text_term = feature_distillation_loss(v_s, v_t, t_s, t_t)
    total = ce + float(expected["distillation_ratio"]) * (video_term + text_term)
    for value, key in ((ce, "ce_loss"), (video_term, "distill_video"), (text_term, "distill_text"),
                       (total, "total_loss")):
        torch.testing.assert_close(value.detach(), expected[key], atol=ATOL, rtol=0, msg=key)
    total.backward()  # the text tower and both projectors receive gradients
    assert model.backbone.clip.token_embedding.weight.grad is not None
    assert trainer.projector_t[0].weight.grad.abs().sum() > 0


def test_load_model_recognises_froster(meta, inputs, expected):
    import ovar

    model = ovar.load_model(checkpoint=ROOT / "checkpoint.pth", frames=meta["sizes"]["frames_T"])
    assert model.kind == "froster"
    classifier = model.classifier(meta["classes"], descriptions=_descriptions(meta), cache=False)
    with torch.no_grad():
        _close_logits(model(_video(inputs), classifier), expected["logits"], expected["logit_scale_exp"])
