"""Checkpoint converters, the ovar model file, ``ovar convert`` and predict on a converted model."""

from __future__ import annotations

import argparse

import pytest
import torch

from conftest import reference_dir
from ovar.models.convert import convert_checkpoint
from ovar.errors import ModelError
from ovar.models.model_file import load_model_file, save_model_file
from ovar.models.temporal import TransformerFusion

ACTIONCLIP = reference_dir() / "actionclip"
TEXT4VIS = reference_dir() / "text4vis"
needs_actionclip = pytest.mark.skipif(not (ACTIONCLIP / "checkpoint.pth").is_file(), reason="no ActionCLIP reference")
needs_text4vis = pytest.mark.skipif(not (TEXT4VIS / "checkpoint.pth").is_file(), reason="no Text4Vis reference")


def _clip_state(tiny_backbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_backbone.clip.state_dict().items()}


def _transf_state(dim: int, heads: int = 1, layers: int = 2) -> dict[str, torch.Tensor]:
    """A fusion dict with the original module's key names (DataParallel prefix included)."""
    torch.manual_seed(0)
    module = TransformerFusion(dim, heads, layers=layers)
    return {"module." + k.replace("resblocks.", "transformer.resblocks."): v for k, v in module.state_dict().items()}


@pytest.fixture
def actionclip_file(tmp_path, tiny_backbone):
    path = tmp_path / "actionclip.pth"
    # Released checkpoints hold fp16 weights: the converter must up-cast them.
    clip = {k: (v.half() if k.endswith("proj") else v) for k, v in _clip_state(tiny_backbone).items()}
    torch.save({"epoch": 1, "model_state_dict": clip,
                "fusion_model_state_dict": _transf_state(tiny_backbone.embed_dim)}, path)
    return path


def test_actionclip_synthetic(actionclip_file, tiny_backbone):
    model = convert_checkpoint("actionclip", actionclip_file, frames=4)
    assert model.fusion_type == "Transf" and model.frames == 4
    assert len(model.video_encoder.fusion.resblocks) == 2
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(model.backbone.clip.visual.proj, tiny_backbone.clip.visual.proj.half().float())


def test_fusion_override(actionclip_file):
    model = convert_checkpoint("actionclip", actionclip_file, fusion="Transf")
    assert model.fusion_type == "Transf"
    with pytest.raises(ModelError, match="unknown 'meanP' fusion key"):
        convert_checkpoint("actionclip", actionclip_file, fusion="meanP")


def test_round_trip(tmp_path, actionclip_file):
    model = convert_checkpoint("actionclip", actionclip_file, frames=3)
    path = save_model_file(tmp_path / "out" / "model.ovar", model)
    assert not list(path.parent.glob(".*tmp"))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "ovar-model" and payload["kind"] == "actionclip"
    loaded = load_model_file(path)
    video = torch.randn(2, 3, 3, 64, 64)
    names = ["archery", "surfing water"]
    with torch.no_grad():
        a, b = model.encode_video(video), loaded.encode_video(video)
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(model.probabilities(a, model.classifier(names, cache=False)),
                                   loaded.probabilities(b, loaded.classifier(names, cache=False)), atol=0, rtol=0)
    assert loaded.frames == 3 and loaded.backbone.fingerprint == model.backbone.fingerprint


@pytest.mark.parametrize("mutate, message", [
    (lambda ckpt: ckpt.pop("model_state_dict"), "missing key 'model_state_dict'"),
    (lambda ckpt: ckpt.pop("fusion_model_state_dict"), "missing key 'fusion_model_state_dict'"),
    (lambda ckpt: ckpt["model_state_dict"].pop("ln_final.bias"), "lack key 'ln_final.bias'"),
    (lambda ckpt: ckpt["model_state_dict"].pop("visual.proj"), "missing key 'visual.proj'"),
    (lambda ckpt: ckpt["fusion_model_state_dict"].update({"module.extra": torch.zeros(1)}), "unknown 'Transf' fusion key 'extra'"),
    (lambda ckpt: ckpt["fusion_model_state_dict"].pop("module.transformer.resblocks.0.ln_1.weight"),
     "lack key 'resblocks.0.ln_1.weight'"),
])
def test_actionclip_errors(tmp_path, actionclip_file, mutate, message):
    ckpt = torch.load(actionclip_file, weights_only=True)
    mutate(ckpt)
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    with pytest.raises(ModelError, match=message) as info:
        convert_checkpoint("actionclip", bad)
    assert str(bad) in str(info.value)


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelError, match="not found"):
        convert_checkpoint("actionclip", missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        convert_checkpoint("actionclip", garbage)
    with pytest.raises(ModelError, match="cannot read model file"):
        load_model_file(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ModelError, match="not an ovar model file"):
        load_model_file(other)
    with pytest.raises(ModelError, match="unknown checkpoint source"):
        convert_checkpoint("evl-ish", other)


def test_unknown_kind(tmp_path, actionclip_file, monkeypatch):
    from ovar.models import model_file

    path = save_model_file(tmp_path / "m.ovar", convert_checkpoint("actionclip", actionclip_file))
    payload = torch.load(path, weights_only=True)
    payload["kind"] = "no_such_kind"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="unknown model kind 'no_such_kind'"):
        load_model_file(path)
    # Kinds come from the hub's one table: adding the entry is what makes it load.
    from ovar import hub
    from ovar.models.actionclip import ActionCLIPModel

    monkeypatch.setitem(hub.MODEL_KINDS, "no_such_kind", "ovar.models.actionclip:ActionCLIPModel")
    assert isinstance(load_model_file(path), ActionCLIPModel)


def test_text4vis_needs_clip_and_known_keys(tmp_path, tiny_backbone):
    clip_file = tmp_path / "clip.pt"
    torch.save(_clip_state(tiny_backbone), clip_file)
    state = {k: v for k, v in _clip_state(tiny_backbone).items() if k.startswith("visual.")}
    state.update({"fusion_model." + k[len("module."):]: v for k, v in _transf_state(32).items()})
    state["logit_scale"] = torch.tensor(4.0)
    ckpt = tmp_path / "t4v.pth"
    torch.save({"model_state_dict": state}, ckpt)
    with pytest.raises(ModelError, match="--clip"):
        convert_checkpoint("text4vis", ckpt)
    model = convert_checkpoint("text4vis", ckpt, clip=clip_file)
    assert model.kind == "text4vis" and float(model.backbone.clip.logit_scale.detach()) == 4.0
    state["token_embedding.weight"] = torch.zeros(3)
    torch.save({"model_state_dict": state}, ckpt)
    with pytest.raises(ModelError, match="unknown key 'token_embedding.weight'"):
        convert_checkpoint("text4vis", ckpt, clip=clip_file)


def _mmaction2_from_actionclip(source, target, num_segs: int) -> None:
    """The spec's recipe: prefix clip., strip module. and prefix adapter., slice the table."""
    ckpt = torch.load(source, weights_only=True)
    state = {f"clip.{k}": v for k, v in ckpt["model_state_dict"].items()}
    for key, value in ckpt["fusion_model_state_dict"].items():
        key = key[len("module."):]
        if key == "frame_position_embeddings.weight":
            value = value[:num_segs]
        state[f"adapter.{key}"] = value
    torch.save({"state_dict": state, "meta": {"epoch": 1}}, target)


def test_mmaction2(tmp_path, actionclip_file):
    target = tmp_path / "mm.pth"
    _mmaction2_from_actionclip(actionclip_file, target, num_segs=4)
    original = convert_checkpoint("actionclip", actionclip_file)
    ported = convert_checkpoint("mmaction2-actionclip", target)
    assert ported.frames == 4 and ported.video_encoder.fusion.frame_position_embeddings.weight.shape[0] == 4
    assert ported.video_encoder.fusion.resblocks[0].ln_1.eps == 1e-5
    video = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        # Only the LayerNorm eps differs from the original: tiny drift, no more.
        torch.testing.assert_close(ported.encode_video(video), original.encode_video(video), atol=1e-3, rtol=0)
    state = torch.load(target, weights_only=True)
    state["state_dict"]["backbone.extra"] = torch.zeros(1)
    torch.save(state, target)
    with pytest.raises(ModelError, match="unknown key 'backbone.extra'"):
        convert_checkpoint("mmaction2-actionclip", target)


def _cli(argv: list[str]) -> int:
    from ovar.cli import convert_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    convert_cmd.add_parser(sub)
    args = parser.parse_args(["convert", *argv])
    return args.handler(args)


def test_cli_convert(tmp_path, actionclip_file, capsys):
    out = tmp_path / "cli.ovar"
    assert _cli(["--from", "actionclip", str(actionclip_file), "--frames", "4", "--out", str(out)]) == 0
    assert "Transf" in capsys.readouterr().out
    assert load_model_file(out).frames == 4


@needs_text4vis
def test_text4vis_reference_round_trip(tmp_path):
    model = convert_checkpoint("text4vis", TEXT4VIS / "checkpoint.pth", clip=TEXT4VIS / "clip.pt")
    loaded = load_model_file(save_model_file(tmp_path / "t4v.ovar", model))
    inputs = torch.load(TEXT4VIS / "inputs.pt", weights_only=True)
    expected = torch.load(TEXT4VIS / "expected.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(inputs["video"]), expected["video_features"], atol=1e-5, rtol=0)


@needs_actionclip
def test_predict_with_converted_actionclip(tmp_path):
    from ovar import predict
    from videogen import make_video

    path = tmp_path / "model.ovar"
    assert _cli(["--from", "actionclip", str(ACTIONCLIP / "checkpoint.pth"), "--frames", "4", "--out", str(path)]) == 0
    model = load_model_file(path)
    video = make_video(tmp_path / "clip.mp4", num_frames=16, fps=8, size=(80, 64))
    labels = ["archery", "juggling balls", "surfing water"]
    result = predict(video, labels, model=model, templates="actionclip")
    assert sorted(p.label for p in result.predictions) == sorted(labels)
    assert sum(p.score for p in result.predictions) == pytest.approx(1.0, abs=1e-5)


EVL = reference_dir() / "evl"
needs_evl = pytest.mark.skipif(not (EVL / "checkpoint.pth").is_file(), reason="no EVL reference")


@pytest.fixture
def evl_files(tmp_path, tiny_backbone):
    """An original-layout EVL checkpoint (decoder width 32, 4 heads) and its CLIP file."""
    from ovar.models.evl import EVLModel

    torch.manual_seed(0)
    model = EVLModel(tiny_backbone, class_names=["a", "b", "c"], num_frames=4, num_layers=2, num_heads=4).eval()
    renames = {"video_encoder.decoder.": "module.decoder.", "head.": "module.proj."}
    original = {next(new + k[len(old):] for old, new in renames.items() if k.startswith(old)): v
                for k, v in model.state_dict().items() if k.startswith(tuple(renames))}
    torch.save({"model": original, "next_step": 1}, tmp_path / "evl.pth")
    torch.save(_clip_state(tiny_backbone), tmp_path / "clip.pt")
    return model, tmp_path / "evl.pth", tmp_path / "clip.pt"


def test_evl_heads_are_required_when_no_shape_fixes_them(evl_files, tmp_path, capsys):
    from ovar.cli import main

    model, ckpt, clip = evl_files
    with pytest.raises(ModelError, match=r"attention heads.*--heads") as info:
        convert_checkpoint("evl", ckpt, clip=clip)
    assert str(ckpt) in str(info.value)
    out = tmp_path / "evl.ovar"
    assert main(["convert", str(ckpt), "--from", "evl", "--clip", str(clip), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ovar: error: ") and "--heads" in err[0]
    assert not out.exists()
    assert main(["convert", str(ckpt), "--from", "evl", "--clip", str(clip), "--heads", "4", "--out", str(out)]) == 0
    converted = load_model_file(out)
    assert converted.build_args["num_heads"] == 4
    clips = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(converted(clips), model(clips), atol=1e-5, rtol=0)
    with pytest.raises(SystemExit):  # a head count must be positive (argparse usage error, exit 2)
        main(["convert", str(ckpt), "--from", "evl", "--clip", str(clip), "--heads", "0", "--out", str(out)])


@pytest.mark.parametrize("width, qkv, heads", [(768, 768, 12), (1024, 1024, 16), (768, 512, None), (512, 512, None)])
def test_evl_heads_of_the_released_presets(width, qkv, heads):
    from ovar.models.convert.evl import _arguments

    # Shapes only (meta tensors): the released ViT-B/16 and ViT-L/14 decoders fix the head count.
    shapes = {"decoder.cls_token": (1, 1, width), "decoder.decoder_layers.0.attn.q_proj.weight": (qkv, width),
              "decoder.decoder_layers.0.mlp.fc1.weight": (4 * width, width)}
    state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    if heads is None:
        with pytest.raises(ModelError, match="match no released EVL preset"):
            _arguments(state, "ckpt.pth", None)
        assert _arguments(state, "ckpt.pth", 8)[1]["num_heads"] == 8
    else:
        assert _arguments(state, "ckpt.pth", None)[1]["num_heads"] == heads


@needs_evl
def test_evl_reference_needs_its_head_count():
    import json

    meta = json.loads((EVL / "meta.json").read_text())
    heads = meta["decoder"]["num_heads"]
    with pytest.raises(ModelError, match="--heads"):
        convert_checkpoint("evl", EVL / "checkpoint.pth", clip=EVL / "clip.pt")
    inputs = torch.load(EVL / "inputs.pt", weights_only=True)
    expected = torch.load(EVL / "expected.pt", weights_only=True)["logits"]
    clips = inputs["video"].transpose(1, 2)
    with torch.no_grad():
        right = convert_checkpoint("evl", EVL / "checkpoint.pth", clip=EVL / "clip.pt", num_heads=heads)(clips)
        # The old default (width / 64) loads without error yet gives other scores: why it is refused.
        wrong = convert_checkpoint("evl", EVL / "checkpoint.pth", clip=EVL / "clip.pt",
                                   num_heads=meta["decoder"]["width"] // 64)(clips)
    torch.testing.assert_close(right, expected, atol=1e-4, rtol=0)
    assert (wrong - expected).abs().max() > 1e-3
