"""Backbone loading: tags, files of every format, random weights, and OpenAI parity."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import reference_dir
from openai_reference import encode_image, encode_text, random_openai_state_dict
from ovar.errors import ModelError
from ovar.models import list_models, load_backbone


@pytest.fixture(scope="module")
def openai_sd():
    return random_openai_state_dict(seed=1)


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory, openai_sd):
    path = tmp_path_factory.mktemp("weights") / "clip_openai.pt"
    torch.save(openai_sd, path)
    return path


def _inputs(backbone, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    size = backbone.image_size
    images = torch.randn(n, 3, size, size, generator=g)
    tokens = backbone.tokenize(["a person surfing", "brush hair", "playing guitar on a stage"])
    return images, tokens


def test_tiny_is_registered():
    assert "tiny" in list_models()
    backbone = load_backbone("tiny", "none")
    assert backbone.image_size == 64 and backbone.embed_dim == 32


def test_random_weights_are_seeded():
    a, b = load_backbone("tiny", "none"), load_backbone("tiny", None)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_openai_state_dict_matches_reference_computation(openai_file, openai_sd):
    backbone = load_backbone("tiny", openai_file)
    images, tokens = _inputs(backbone)
    with torch.no_grad():
        ours_img, ours_txt = backbone.encode_image(images), backbone.encode_text(tokens)
    ref_img, ref_txt = encode_image(openai_sd, images), encode_text(openai_sd, tokens)
    assert torch.allclose(ours_img, ref_img, atol=1e-5, rtol=0)
    assert torch.allclose(ours_txt, ref_txt, atol=1e-5, rtol=0)


def test_architecture_is_inferred_from_openai_tensors(openai_file):
    # The file's image size (48) differs from the `tiny` config (64): shapes win.
    backbone = load_backbone("tiny", openai_file)
    assert backbone.image_size == 48


def test_without_quick_gelu_embeddings_are_wrong(openai_file, openai_sd):
    backbone = load_backbone("tiny", openai_file, quick_gelu=False)
    images, tokens = _inputs(backbone)
    with torch.no_grad():
        ours = backbone.encode_image(images)
    assert (ours - encode_image(openai_sd, images)).abs().max() > 1e-4


def test_torchscript_archive_is_read_for_tensors(tmp_path, openai_sd):
    reference = load_backbone("tiny", _save(tmp_path / "sd.pt", openai_sd))
    images, tokens = _inputs(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warns about data-dependent branches it freezes
        scripted = torch.jit.trace_module(reference.clip.eval(),
                                          {"encode_image": (images,), "encode_text": (tokens,)},
                                          check_trace=False)
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.save(scripted, str(archive))
    loaded = load_backbone("tiny", archive, quick_gelu=None)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(images), encode_image(openai_sd, images), atol=1e-5, rtol=0)
        assert torch.allclose(loaded.encode_text(tokens), encode_text(openai_sd, tokens), atol=1e-5, rtol=0)


def test_safetensors_and_wrapped_checkpoints(tmp_path, openai_sd):
    from safetensors.torch import save_file

    plain = {k: v.contiguous() for k, v in openai_sd.items()}
    save_file(plain, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in plain.items()}}, tmp_path / "wrapped.pth")
    a = load_backbone("tiny", tmp_path / "w.safetensors")
    b = load_backbone("tiny", tmp_path / "wrapped.pth")
    images, _ = _inputs(a)
    with torch.no_grad():
        assert torch.allclose(a.encode_image(images), b.encode_image(images))


def test_fp16_weights_are_upcast(tmp_path, openai_sd):
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in openai_sd.items()}
    backbone = load_backbone("tiny", _save(tmp_path / "half.pt", half))
    assert all(p.dtype == torch.float32 for p in backbone.parameters())


def test_open_clip_state_dict_of_named_model(tmp_path):
    source = load_backbone("tiny", "none")
    torch.save(source.clip.state_dict(), tmp_path / "tiny.pt")
    loaded = load_backbone("tiny", tmp_path / "tiny.pt")
    images, tokens = _inputs(source)
    with torch.no_grad():
        assert torch.equal(source.encode_text(tokens), loaded.encode_text(tokens))


@pytest.mark.parametrize("pretrained, message", [
    ("missing/weights.pt", "not found"),
    ("laion2b_s34b_b88k", "neither a weights file nor a pretrained tag"),
])
def test_bad_pretrained(pretrained, message):
    with pytest.raises(ModelError, match=message):
        load_backbone("tiny", pretrained)


def test_bad_files(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not weights")
    torch.save({"visual.conv1.weight": torch.zeros(2, 3, 4, 4)}, tmp_path / "partial.pt")
    for name, message in [("empty.pt", "empty"), ("text.pt", "cannot read"), ("partial.pt", "do not match")]:
        with pytest.raises(ModelError, match=message) as info:
            load_backbone("tiny", tmp_path / name)
        assert name in str(info.value)


def test_unknown_model():
    with pytest.raises(ModelError, match="unknown model 'ViT-Nope'"):
        load_backbone("ViT-Nope", "none")


def test_offline_tag_fails_fast(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelError, match="--pretrained PATH"):
        load_backbone("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 30


def test_actionclip_reference_embeddings(tmp_path):
    """The original ActionCLIP code's frame and text features, from its OpenAI-layout CLIP."""
    folder = reference_dir() / "actionclip"
    if not (folder / "checkpoint.pth").is_file():
        pytest.skip(f"no reference set at {folder}")
    checkpoint = torch.load(folder / "checkpoint.pth", map_location="cpu", weights_only=True)
    inputs = torch.load(folder / "inputs.pt", map_location="cpu", weights_only=True)
    expected = torch.load(folder / "expected.pt", map_location="cpu", weights_only=True)
    meta = json.loads((folder / "meta.json").read_text())
    weights = _save(tmp_path / "clip.pt", checkpoint["model_state_dict"])
    backbone = load_backbone("tiny", weights, quick_gelu=True)
    video = inputs["video"]
    with torch.no_grad():
        frames = backbone.encode_image(video.flatten(0, 1)).view(*video.shape[:2], -1)
        text = backbone.encode_text(inputs["text_tokens"])
    assert torch.allclose(frames, expected["frame_features"], atol=1e-5, rtol=0)
    assert torch.allclose(text, expected["text_features"], atol=1e-5, rtol=0)
    prompts = [t.format(c) for t in meta["inputs"]["templates"] for c in meta["inputs"]["class_names"]]
    assert torch.equal(backbone.tokenize(prompts), inputs["text_tokens"])


def _save(path, state_dict):
    torch.save(state_dict, path)
    return path
