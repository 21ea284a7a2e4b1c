"""EVL model: initialisation, shapes, frozen backbone, training, TCA indexing, model files."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ovar.errors import ModelError
from ovar.models.evl import EVLModel, TemporalCrossAttention, relative_position_index
from ovar.models.evl.backbone import FrozenClipBlocks

CLASSES = ["archery", "juggling", "surfing"]


def _model(backbone, frames: int = 4, **kwargs) -> EVLModel:
    torch.manual_seed(0)
    return EVLModel(backbone, class_names=CLASSES, num_frames=frames, num_layers=2, **kwargs)


def _clips(frames: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, 64, 64, generator=generator)


def test_initialisation(tiny_backbone):
    model = _model(tiny_backbone)
    decoder = model.video_encoder.decoder
    assert torch.count_nonzero(decoder.cls_token) == 0
    assert all(torch.count_nonzero(p) == 0 for p in decoder.temporal_pos_embed)
    for tca in decoder.cross_attention:
        assert torch.count_nonzero(tca.w1) == 0 and torch.count_nonzero(tca.w2) == 0
    for layer in decoder.decoder_layers:
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            linear = getattr(layer.attn, name)
            bound = math.sqrt(6 / sum(linear.weight.shape))  # Xavier-uniform
            assert torch.count_nonzero(linear.bias) == 0
            assert linear.weight.abs().max() <= bound and linear.weight.abs().max() > bound / 2
        for linear in (layer.mlp.fc1, layer.mlp.fc2):
            assert linear.weight.abs().max() <= math.sqrt(6 / sum(linear.weight.shape))
            assert 0 < linear.bias.abs().max() < 1e-4  # N(0, 1e-6)


def test_tca_starts_as_no_op(tiny_backbone):
    model = _model(tiny_backbone).eval()
    blocks = model.video_encoder.block_features(_clips(4))
    for tca, block in zip(model.video_encoder.decoder.cross_attention, blocks):
        assert torch.count_nonzero(tca(block.q, block.k)) == 0


def test_relative_position_index_formula():
    height, width = 2, 3
    index = relative_position_index(height, width)
    for q in range(height * width):
        for k in range(height * width):
            (qi, qj), (ki, kj) = divmod(q, width), divmod(k, width)
            assert index[q, k] == (qi - ki + height - 1) * (2 * width - 1) + (qj - kj + width - 1)
    assert index.max() == (2 * height - 1) * (2 * width - 1) - 1


def test_tca_matches_the_direct_gather():
    """The binned computation equals sum_k A[q, k] * w[idx(q, k)] with heads averaged."""
    torch.manual_seed(0)
    height, width, heads, dim, channels, frames = 2, 3, 2, 4, 5, 3
    tca = TemporalCrossAttention((height, width), channels)
    torch.nn.init.normal_(tca.w1)
    torch.nn.init.normal_(tca.w2)
    q = torch.randn(1, frames, 1 + height * width, heads, dim)
    k = torch.randn(1, frames, 1 + height * width, heads, dim)
    out = tca(q, k)
    index = relative_position_index(height, width)

    def term(t_q: int, t_k: int, table: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("qhd,khd->hqk", q[0, t_q, 1:] / math.sqrt(dim), k[0, t_k, 1:])
        attn = scores.softmax(-1).mean(0)
        return torch.einsum("qk,qkc->qc", attn, table[index])

    assert torch.count_nonzero(out[0, :, 0]) == 0  # class tokens receive nothing
    torch.testing.assert_close(out[0, 0, 1:], term(0, 1, tca.w2))  # first frame: next only
    torch.testing.assert_close(out[0, 1, 1:], term(1, 0, tca.w1) + term(1, 2, tca.w2))  # middle: both
    torch.testing.assert_close(out[0, 2, 1:], term(2, 1, tca.w1))  # last frame: previous only


@pytest.mark.parametrize("frames", [4, 8])
def test_shapes(tiny_backbone, frames):
    model = _model(tiny_backbone, frames=frames).eval()
    clips = _clips(frames)
    with torch.no_grad():
        parts = model.video_encoder.forward_intermediates(clips)
        logits = model(clips)
    assert logits.shape == (2, len(CLASSES))
    assert parts["block_out"].shape == (2, 2, frames, 17, 128)
    assert parts["queries"].shape == (2, 2, 128)
    torch.testing.assert_close(parts["embedding"], model.encode_video(clips))
    with pytest.raises(ValueError, match="frames"):
        model(_clips(frames + 1))


def test_backbone_blocks_agree_with_open_clip(tiny_backbone):
    visual = tiny_backbone.clip.visual
    blocks = FrozenClipBlocks(visual, num_blocks=len(visual.transformer.resblocks))
    images = _clips(1, batch=3)[:, 0]
    last = blocks(images)[-1].out
    with torch.no_grad():
        expected = tiny_backbone.encode_image(images)
    torch.testing.assert_close(visual.ln_post(last[:, 0]) @ visual.proj, expected, atol=1e-5, rtol=1e-5)


def test_gradients_reach_only_decoder_and_head(tiny_backbone):
    model = _model(tiny_backbone).train()
    assert not model.backbone.training and not model.video_encoder.backbone.training
    F.cross_entropy(model(_clips(4)), torch.tensor([0, 2])).backward()
    for name, param in model.named_parameters():
        trainable = name.startswith(("video_encoder.decoder.", "head."))
        assert param.requires_grad == trainable, name
        if trainable:
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for n, p in model.named_parameters() if n.startswith(("video_encoder.decoder.", "head."))}


def test_training_step_reduces_loss(tiny_backbone):
    model = _model(tiny_backbone, mlp_dropout=0.0, cls_dropout=0.0).train()
    clips, labels = _clips(4), torch.tensor([0, 2])
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # Training moved the zero-initialised temporal modules off zero.
    assert torch.count_nonzero(model.video_encoder.decoder.cross_attention[0].w1) > 0


def test_closed_set_classifier(tiny_backbone):
    model = _model(tiny_backbone).eval()
    clips = _clips(4)
    with torch.no_grad():
        embedding = model.encode_video(clips)
        logits = model(clips)
    classifier = model.classifier(["Surfing", "archery"])
    torch.testing.assert_close(model.logits(embedding, classifier), logits[:, [2, 0]])
    torch.testing.assert_close(model.probabilities(embedding, model.classifier(CLASSES)), logits.softmax(-1))
    with pytest.raises(ModelError, match="closed-set"):
        model.classifier(["dancing"])
    fused = model.view_fused_scores(logits)
    torch.testing.assert_close(fused, logits.softmax(-1).mean(0))


def test_model_file_round_trip_is_self_contained(tiny_backbone, tmp_path):
    from ovar.models.model_file import load_model_file, save_model_file

    model = _model(tiny_backbone, frames=8).eval()
    torch.nn.init.normal_(model.video_encoder.decoder.cross_attention[1].w2)  # a non-trivial value to carry
    path = save_model_file(tmp_path / "evl.pt", model)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert "backbone.clip.visual.conv1.weight" in state  # frozen CLIP travels with the file
    assert not any(k.startswith("video_encoder.backbone.") for k in state)  # stored once
    loaded = load_model_file(path)
    assert isinstance(loaded, EVLModel) and loaded.frames == 8 and loaded.class_names == CLASSES
    clips = _clips(8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clips), model(clips))
    assert not any(p.requires_grad for p in loaded.backbone.parameters())


def test_converter_reads_sizes_from_the_checkpoint(tiny_backbone, tmp_path):
    """An original-layout checkpoint ('module.decoder.*', 'module.proj.*') + CLIP file -> same model."""
    from ovar.models.convert import convert_checkpoint

    model = _model(tiny_backbone, frames=8, num_heads=4).eval()
    for tca in model.video_encoder.decoder.cross_attention:
        torch.nn.init.normal_(tca.w1)
    renames = {"video_encoder.decoder.": "module.decoder.", "head.": "module.proj."}
    original = {next(new + k[len(old):] for old, new in renames.items() if k.startswith(old)): v
                for k, v in model.state_dict().items() if k.startswith(tuple(renames))}
    torch.save({"model": original, "next_step": 1}, tmp_path / "checkpoint.pth")
    torch.save(tiny_backbone.clip.state_dict(), tmp_path / "clip.pt")
    converted = convert_checkpoint("evl", tmp_path / "checkpoint.pth", clip=tmp_path / "clip.pt", num_heads=4,
                                   class_names=CLASSES)
    assert converted.frames == 8 and converted.video_encoder.decoder.num_layers == 2
    clips = _clips(8)
    with torch.no_grad():
        torch.testing.assert_close(converted(clips), model(clips), atol=1e-5, rtol=0)
    with pytest.raises(ModelError, match="no backbone"):
        convert_checkpoint("evl", tmp_path / "checkpoint.pth")
    with pytest.raises(ModelError, match="class names"):
        convert_checkpoint("evl", tmp_path / "checkpoint.pth", clip=tmp_path / "clip.pt", num_heads=4,
                           class_names=["a"])
    with pytest.raises(ModelError, match="8 frames"):
        convert_checkpoint("evl", tmp_path / "checkpoint.pth", clip=tmp_path / "clip.pt", num_heads=4, frames=4)


def test_predict_fuses_evl_views_by_scores(tmp_path):
    """EVL's multi-view rule in ovar.predict: the mean of the per-view softmaxes."""
    import ovar
    from ovar.models.backbone import load_backbone
    from ovar.models.evl import EVLModel
    from ovar.video import build_eval_transform, open_video, segment_indices
    from videogen import make_video

    torch.manual_seed(0)
    names = ["a", "b", "c"]
    model = EVLModel(load_backbone("tiny", "none"), class_names=names, num_frames=4, num_layers=2).eval()
    video = make_video(tmp_path / "v.mp4", num_frames=24, fps=12, size=(80, 64))
    result = ovar.predict(video, names, model=model, views="2x1", frames=4)
    with open_video(video) as reader:
        n = reader.info.num_frames
        clips = [reader.get_frames(segment_indices(n, 4, train=False, num_clips=2, clip=c)) for c in range(2)]
    transform = build_eval_transform(64, mean=model.backbone.mean, std=model.backbone.std)
    with torch.no_grad():
        logits = model(torch.stack([transform(c)[0] for c in clips]))
    expected = logits.softmax(-1).mean(0)
    got = {p.label: p.score for p in result.predictions}
    assert [got[n] for n in names] == pytest.approx(expected.tolist(), abs=1e-5)


def test_folded_cross_attention_equals_projecting_the_memory():
    """One query over many memory tokens takes the folded path; it must match attention with
    the memory projected, in value and in every parameter's gradient."""
    from ovar.models.evl.decoder import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(32, 32, 32, num_heads=4)
    for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
        torch.nn.init.normal_(linear.bias)  # non-zero biases: the folding must handle them
    query, memory = torch.randn(3, 1, 32), torch.randn(3, 50, 32)

    def projected() -> torch.Tensor:
        def heads(x):
            return x.unflatten(-1, (4, -1)).transpose(1, 2)
        mixed = F.scaled_dot_product_attention(heads(attn.q_proj(query)), heads(attn.k_proj(memory)),
                                               heads(attn.v_proj(memory)))
        return attn.out_proj(mixed.transpose(1, 2).flatten(2))

    expected = projected()
    expected.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in attn.named_parameters()}
    attn.zero_grad()
    got = attn(query, memory, memory)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for name, param in attn.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], atol=1e-4, rtol=1e-4, msg=name)
