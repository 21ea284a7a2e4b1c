"""Text4Vis parity: converted checkpoint + original CLIP reproduce the original outputs."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from reference_set import ReferenceSet

REFERENCE = ReferenceSet("text4vis")
ROOT = REFERENCE.root
pytestmark = REFERENCE.skip_unless_available("Text4Vis")
ATOL = 1e-5


_load = REFERENCE.load


@pytest.fixture(scope="module")
def meta() -> dict:
    return REFERENCE.meta


@pytest.fixture(scope="module")
def model():
    from ovar.models.convert import convert_checkpoint

    return convert_checkpoint("text4vis", ROOT / "checkpoint.pth", clip=ROOT / "clip.pt")


@pytest.fixture(scope="module")
def run(model, meta):
    inputs = _load("inputs.pt")
    names, templates = meta["inputs"]["class_names"], meta["inputs"]["templates"]
    with torch.no_grad():
        out = {
            "frame_features": model.frame_features(inputs["video"]),
            "video_features": model.encode_video(inputs["video"]),
            "text_features": model.backbone.encode_text(inputs["text_tokens"]),
            "classifier": model.classifier(names, templates, cache=False),
        }
        out["logits"] = model.logits(out["video_features"], out["classifier"])
        out["probs"] = model.probabilities(out["video_features"], out["classifier"])
        out["train_logits"] = model.train_logits(out["video_features"], out["classifier"])
        # All clips as views of one video, fused the way ovar.predict fuses views.
        fused = out["video_features"].mean(dim=0, keepdim=True)
        out["multiview_video_features"] = fused
        out["multiview_logits"] = model.logits(fused, out["classifier"])
        out["multiview_probs"] = model.probabilities(fused, out["classifier"])
    return inputs, out


@pytest.mark.parametrize("key", ["frame_features", "video_features", "text_features", "probs", "multiview_video_features",
                                 "multiview_probs"])
def test_unit_scale_outputs(run, key):
    expected = _load("expected.pt")
    torch.testing.assert_close(run[1][key], expected[key], atol=ATOL, rtol=0)


def test_logits(run, meta):
    expected = _load("expected.pt")
    scale = float(meta["logit_scale_used"]["test"])
    for key in ("logits", "multiview_logits"):
        torch.testing.assert_close(run[1][key] / scale, expected[key] / scale, atol=ATOL, rtol=0)


def test_train_logits_use_checkpoint_scale(run, model, meta):
    expected = _load("expected.pt")
    scale = float(torch.tensor(meta["checkpoint"]["logit_scale_value"]).exp())
    assert float(model.backbone.logit_scale.detach()) == pytest.approx(scale, rel=1e-6)
    torch.testing.assert_close(run[1]["train_logits"] / scale, expected["train_logits"] / scale, atol=ATOL, rtol=0)


def test_classifier_is_frozen_clip_text_tower(run, model):
    expected = _load("expected.pt")
    torch.testing.assert_close(run[1]["classifier"], F.normalize(expected["text_features"], dim=-1), atol=ATOL, rtol=0)
    assert not any(p.requires_grad for n, p in model.backbone.clip.named_parameters()
                   if not n.startswith("visual.") and n != "logit_scale")


def test_own_tokenisation_matches(run, model, meta):
    names, templates = meta["inputs"]["class_names"], meta["inputs"]["templates"]
    prompts = [template.format(name) for template in templates for name in names]
    assert torch.equal(model.backbone.tokenize(prompts), run[0]["text_tokens"])


def test_load_model_recognises_the_original_checkpoint(model):
    import ovar

    loaded = ovar.load_model(checkpoint=ROOT / "checkpoint.pth", clip=ROOT / "clip.pt")
    assert loaded.kind == "text4vis"
    video = _load("inputs.pt")["video"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(video), model.encode_video(video), atol=0, rtol=0)


def test_load_model_names_the_missing_clip_file():
    import ovar
    from ovar.errors import ModelError

    with pytest.raises(ModelError, match="--clip"):
        ovar.load_model(checkpoint=ROOT / "checkpoint.pth")
