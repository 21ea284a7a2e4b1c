"""EVL parity: the converted released checkpoint + CLIP file reproduce the original outputs.

Every size comes from the reference files (a reference set with other sizes runs too).
"""

from __future__ import annotations


import pytest
import torch

from reference_set import ReferenceSet

REFERENCE = ReferenceSet("evl")
ROOT = REFERENCE.root
pytestmark = REFERENCE.skip_unless_available("EVL")
ATOL = 1e-5


_load = REFERENCE.load


@pytest.fixture(scope="module")
def meta() -> dict:
    return REFERENCE.meta


@pytest.fixture(scope="module")
def model(meta):
    from ovar.models.convert import convert_checkpoint

    return convert_checkpoint("evl", ROOT / "checkpoint.pth", clip=ROOT / "clip.pt",
                              num_heads=meta["decoder"]["num_heads"], class_names=meta["inputs"]["class_names"])


def _outputs(model, video: torch.Tensor) -> dict[str, torch.Tensor]:
    clips = video.transpose(1, 2)  # reference layout (B, 3, T, H, W) -> ovar's (B, T, 3, H, W)
    with torch.no_grad():
        parts = model.video_encoder.forward_intermediates(clips)
        logits = model(clips)
        embedding = model.encode_video(clips)
    return {
        "logits": logits, "probs": logits.softmax(dim=-1), "video_embedding": embedding,
        "decoder_queries": parts["queries"], "backbone_block_out": parts["block_out"],
        "view_fused_scores": model.view_fused_scores(logits),
    }


@pytest.fixture(scope="module")
def run(model):
    return _outputs(model, _load("inputs.pt")["video"])


def test_sizes_come_from_the_files(model, meta):
    decoder = meta["decoder"]
    assert model.video_encoder.decoder.num_layers == decoder["num_layers"]
    assert model.frames == decoder["num_frames"]
    assert model.class_names == meta["inputs"]["class_names"]
    assert model.build_args["num_heads"] == decoder["num_heads"]
    assert model.build_args["qkv_dim"] == decoder["qkv_dim"]
    tca = model.video_encoder.decoder.cross_attention
    assert tca is not None and tca[0].w1.shape[0] == decoder["tca_table_rows"]


@pytest.mark.parametrize("key", ["logits", "probs", "video_embedding", "decoder_queries", "backbone_block_out",
                                 "view_fused_scores"])
def test_outputs_match_reference(run, key):
    expected = _load("expected.pt")[key]
    assert run[key].shape == expected.shape
    torch.testing.assert_close(run[key], expected, atol=ATOL, rtol=0)


def test_predict_interface_matches_head(model, run, meta):
    names = meta["inputs"]["class_names"]
    classifier = model.classifier([n.upper() for n in names])
    probs = model.probabilities(run["video_embedding"], classifier)
    torch.testing.assert_close(probs, _load("expected.pt")["probs"], atol=ATOL, rtol=0)


def test_model_file_round_trip(model, tmp_path):
    from ovar.models.model_file import load_model_file, save_model_file

    path = save_model_file(tmp_path / "evl.pt", model)
    loaded = load_model_file(path)
    assert loaded.kind == "evl" and loaded.class_names == model.class_names
    expected = _load("expected.pt")
    out = _outputs(loaded, _load("inputs.pt")["video"])
    torch.testing.assert_close(out["logits"], expected["logits"], atol=ATOL, rtol=0)


def test_cli_convert(tmp_path, meta, capsys):
    from ovar.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(meta["inputs"]["class_names"]) + "\n")
    out = tmp_path / "evl.pt"
    code = main(["convert", str(ROOT / "checkpoint.pth"), "--from", "evl", "--clip", str(ROOT / "clip.pt"),
                 "--heads", str(meta["decoder"]["num_heads"]), "--labels", str(labels), "--out", str(out)])
    assert code == 0 and out.is_file()
    assert "evl" in capsys.readouterr().out


def test_load_model_reads_the_original_checkpoint(meta, run):
    import ovar

    model = ovar.load_model(checkpoint=ROOT / "checkpoint.pth", clip=ROOT / "clip.pt",
                            num_heads=meta["decoder"]["num_heads"], class_names=meta["inputs"]["class_names"])
    assert model.kind == "evl"
    out = _outputs(model, _load("inputs.pt")["video"])
    torch.testing.assert_close(out["logits"], run["logits"], atol=0, rtol=0)
