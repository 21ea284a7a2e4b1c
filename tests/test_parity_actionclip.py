"""ActionCLIP parity: the converted reference checkpoint reproduces the original outputs."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from reference_set import ReferenceSet

REFERENCE = ReferenceSet("actionclip")
ROOT = REFERENCE.root
pytestmark = REFERENCE.skip_unless_available("ActionCLIP")
ATOL = 1e-5
# expected file -> fusion weights file (None: the checkpoint's own 'Transf')
VARIANTS = {"Transf": None, "meanP": "fusion_meanP.pth", "LSTM": "fusion_LSTM.pth", "Conv_1D": "fusion_Conv_1D.pth"}


_load = REFERENCE.load


@pytest.fixture(scope="module")
def meta() -> dict:
    return REFERENCE.meta


@pytest.fixture(scope="module")
def inputs() -> dict:
    return _load("inputs.pt")


def _convert(variant: str):
    from ovar.models.convert import convert_checkpoint

    weights = VARIANTS[variant]
    return convert_checkpoint("actionclip", ROOT / "checkpoint.pth",
                              fusion_weights=None if weights is None else ROOT / weights)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_outputs_match_reference(variant, inputs, meta):
    expected_file = ROOT / ("expected.pt" if variant == "Transf" else f"expected_{variant}.pt")
    if not expected_file.is_file() or (VARIANTS[variant] and not (ROOT / VARIANTS[variant]).is_file()):
        pytest.skip(f"no reference for {variant}")
    expected = _load(expected_file.name)
    model = _convert(variant)
    assert model.fusion_type == variant  # inferred from the keys
    names, templates = meta["inputs"]["class_names"], meta["inputs"]["templates"]
    scale = float(meta.get("logit_scale_used", 100.0))
    with torch.no_grad():
        frames = model.frame_features(inputs["video"])
        video = model.encode_video(inputs["video"])
        text = model.backbone.encode_text(inputs["text_tokens"])
        classifier = model.classifier(names, templates, cache=False)
        similarity = model.logits(video, classifier)
        per_template = model.per_template_probabilities(video, classifier)
        probs = model.probabilities(video, classifier)
    torch.testing.assert_close(frames, expected["frame_features"], atol=ATOL, rtol=0)
    torch.testing.assert_close(video, expected["video_features"], atol=ATOL, rtol=0)
    torch.testing.assert_close(text, expected["text_features"], atol=ATOL, rtol=0)
    # The classifier from ovar's own prompts equals the given tokens' features, per template.
    unit = F.normalize(expected["text_features"], dim=-1).view(len(templates), len(names), -1)
    torch.testing.assert_close(classifier, unit, atol=ATOL, rtol=0)
    torch.testing.assert_close(similarity / scale, expected["similarity"] / scale, atol=ATOL, rtol=0)
    torch.testing.assert_close(per_template, expected["per_template_probs"], atol=ATOL, rtol=0)
    torch.testing.assert_close(probs, expected["probs"], atol=ATOL, rtol=0)


def test_own_tokenisation_matches(inputs, meta):
    model = _convert("meanP" if (ROOT / "fusion_meanP.pth").is_file() else "Transf")
    names, templates = meta["inputs"]["class_names"], meta["inputs"]["templates"]
    prompts = [template.format(name) for template in templates for name in names]  # template-major
    assert torch.equal(model.backbone.tokenize(prompts), inputs["text_tokens"])


def test_builtin_actionclip_templates_are_the_reference_ones(meta):
    from ovar.text import ACTIONCLIP_TEMPLATES

    assert list(ACTIONCLIP_TEMPLATES) == meta["inputs"]["templates"]


def test_load_model_recognises_the_original_checkpoint(inputs):
    import ovar

    model = ovar.load_model(checkpoint=ROOT / "checkpoint.pth")
    converted = _convert("Transf")
    assert model.kind == "actionclip"
    video = inputs["video"]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), converted.encode_video(video), atol=0, rtol=0)
