"""Open-VCLIP parity: the converted released checkpoint + CLIP file reproduce the original's
classifier, embeddings, logits, patched logits and interpolated-weight (IWO) losses."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from reference_set import ReferenceSet

REFERENCE = ReferenceSet("open_vclip")
ROOT = REFERENCE.root
pytestmark = REFERENCE.skip_unless_available("Open-VCLIP")
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


def _video(inputs) -> torch.Tensor:
    return inputs["video"].permute(0, 2, 1, 3, 4)  # (B, 3, T, H, W) -> (B, T, 3, H, W)


def _convert(meta, **options):
    from ovar.models.convert import convert_checkpoint

    return convert_checkpoint("open_vclip", ROOT / "checkpoint.pth", clip=ROOT / "clip.pt",
                              frames=meta["sizes"]["frames_T"], **options)


@pytest.fixture(scope="module")
def model(meta):
    return _convert(meta)


def _block_outputs(model, video) -> dict[int, torch.Tensor]:
    outputs: dict[int, torch.Tensor] = {}
    blocks = model.backbone.clip.visual.transformer.resblocks
    hooks = [b.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out)) for k, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model.frame_embeddings(video)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def _close_logits(actual, expected_logits, scale):
    # Logits carry a ~100x scale: compared after dividing by it (see the reference README).
    torch.testing.assert_close(actual / scale, expected_logits / scale, atol=ATOL, rtol=0)


def test_tokens(model, meta, expected):
    from ovar.text.descriptions import fill_prompts

    tokens = torch.stack([model.backbone.tokenize(fill_prompts(meta["classes"], t)) for t in meta["templates"]])
    assert torch.equal(tokens, expected["text_tokens"])


def test_classifier_comes_from_the_clip_file(model, meta, expected):
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    torch.testing.assert_close(classifier, expected["text_classifier"], atol=ATOL, rtol=0)
    # The checkpoint's own text tower gives another classifier: the original does not use it.
    assert (classifier - expected["alt_text_classifier_ckpt_text_tower"]).abs().max() > 1e-3


def test_frame_embeddings_and_blocks(model, inputs, expected):
    video = _video(inputs)
    with torch.no_grad():
        frames = model.frame_embeddings(video)
    torch.testing.assert_close(frames, expected["frame_embeddings"], atol=ATOL, rtol=0)
    blocks = _block_outputs(model, video)
    # The reference stores block outputs tokens-first (N, B*T, D).
    torch.testing.assert_close(blocks[0].transpose(0, 1), expected["visual_block0_output"], atol=ATOL, rtol=0)
    torch.testing.assert_close(blocks[len(blocks) - 1].transpose(0, 1), expected["visual_last_block_output"],
                               atol=ATOL, rtol=0)


def test_logits(model, inputs, expected, meta):
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    scale = expected["logit_scale_exp"]
    torch.testing.assert_close(model.backbone.logit_scale, scale, atol=ATOL * scale, rtol=0)
    with torch.no_grad():
        logits = model(_video(inputs), classifier)
    _close_logits(logits, expected["logits"], scale)
    _close_logits(logits, expected["train_logits"], scale)
    torch.testing.assert_close(F.cross_entropy(logits, inputs["labels"]), expected["ce_loss"], atol=ATOL, rtol=0)


def _patch_ratio(meta) -> float:
    found = re.search(r"r\s*=\s*([0-9.]+)", meta.get("test_time_patching", ""))
    return float(found.group(1)) if found else 0.5


def test_patched_logits(meta, inputs, expected):
    model = _convert(meta, patch_ratio=_patch_ratio(meta))
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    with torch.no_grad():
        frames = model.frame_embeddings(_video(inputs))
        logits = model(_video(inputs), classifier)
    torch.testing.assert_close(frames, expected["frame_embeddings_patched"], atol=ATOL, rtol=0)
    _close_logits(logits, expected["logits_patched"], expected["logit_scale_exp"])


def test_interpolated_weight_losses(model, meta, inputs, expected):
    """The functional IWO forward at the stored alpha gives the original's logits and losses."""
    from ovar.models.convert.actionclip import build_backbone
    from ovar.models.weights_io import read_weights
    from ovar.recipes.open_vclip import CLIP_PREFIX, OpenVCLIPTrainer
    from ovar.recipes.iwo import anchor_weights

    clip_state, _ = read_weights(ROOT / "clip.pt")
    original = build_backbone(clip_state, ROOT / "clip.pt")
    anchor = {CLIP_PREFIX + k: v for k, v in anchor_weights(original.clip).items()}
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    trainer = OpenVCLIPTrainer(model, classifier)
    alpha, ratio = float(expected["iwo_alpha"]), float(expected["iwo_loss_ratio"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits, interp = trainer(_video(inputs), anchor=anchor, alpha=alpha)
    scale = expected["logit_scale_exp"]
    _close_logits(logits, expected["logits"], scale)
    _close_logits(interp, expected["iwo_logits_interp"], scale)
    ce_interp = F.cross_entropy(interp, inputs["labels"])
    torch.testing.assert_close(ce_interp, expected["iwo_ce_interp"], atol=ATOL, rtol=0)
    torch.testing.assert_close(ratio * ce_interp, expected["iwo_loss_interp_scaled"], atol=ATOL, rtol=0)
    torch.testing.assert_close(F.cross_entropy(logits, inputs["labels"]), expected["ce_loss"], atol=ATOL, rtol=0)
    # The model's own weights are untouched by the interpolated forward.
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_load_model_reads_the_original_checkpoint(meta, inputs, expected):
    import ovar

    model = ovar.load_model(checkpoint=ROOT / "checkpoint.pth", clip=ROOT / "clip.pt",
                            frames=meta["sizes"]["frames_T"])
    assert model.kind == "open_vclip"
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    with torch.no_grad():
        logits = model(_video(inputs), classifier)
    _close_logits(logits, expected["logits"], expected["logit_scale_exp"])


def test_model_file_round_trip(model, meta, inputs, tmp_path):
    from ovar.models.model_file import load_model_file, save_model_file

    loaded = load_model_file(save_model_file(tmp_path / "m.pt", model))
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    with torch.no_grad():
        assert torch.equal(loaded(_video(inputs), classifier), model(_video(inputs), classifier))


def test_cli_convert_with_patching(tmp_path, meta, inputs, expected, capsys):
    from ovar.cli import main
    from ovar.models.model_file import load_model_file

    out = tmp_path / "patched.pt"
    code = main(["convert", str(ROOT / "checkpoint.pth"), "--from", "open_vclip", "--clip", str(ROOT / "clip.pt"),
                 "--frames", str(meta["sizes"]["frames_T"]), "--patch-ratio", str(_patch_ratio(meta)),
                 "--out", str(out)])
    assert code == 0 and "open_vclip" in capsys.readouterr().out
    model = load_model_file(out)
    classifier = model.classifier(meta["classes"], meta["templates"], cache=False)
    with torch.no_grad():
        _close_logits(model(_video(inputs), classifier), expected["logits_patched"], expected["logit_scale_exp"])


def test_patching_needs_the_clip_file(tmp_path, capsys):
    from ovar.cli import main

    code = main(["convert", str(ROOT / "checkpoint.pth"), "--from", "open_vclip", "--patch-ratio", "0.5",
                 "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "--clip" in err and len(err.strip().splitlines()) == 1
