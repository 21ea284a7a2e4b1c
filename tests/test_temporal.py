"""Temporal fusion modules: shapes, initialisation and the behaviours the originals have."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ovar.models.temporal import (Conv1DFusion, LSTMFusion, MeanFusion, TFLayerNorm, TransformerClsFusion,
                                  TransformerFusion, build_fusion)

B, T, E = 2, 5, 32


@pytest.fixture
def frames() -> torch.Tensor:
    return torch.randn(B, T, E, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["meanP", "Conv_1D", "LSTM", "Transf", "Transf_cls", "None"])
def test_shapes(kind, frames):
    module = build_fusion(kind, E, heads=1, layers=2, frames=T).eval()
    assert module(frames).shape == (B, E)


def test_unknown_fusion():
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("GRU", E)


def test_mean(frames):
    torch.testing.assert_close(MeanFusion()(frames), frames.mean(dim=1))


def test_conv1d_initial_kernel_is_a_shift():
    weight = Conv1DFusion(E).shift.weight
    quarter = E // 4
    assert weight.shape == (E, 1, 3)
    assert torch.all(weight[:quarter, 0] == torch.tensor([1.0, 0.0, 0.0]))
    assert torch.all(weight[quarter:E - quarter, 0] == torch.tensor([0.0, 1.0, 0.0]))
    assert torch.all(weight[E - quarter:, 0] == torch.tensor([0.0, 0.0, 1.0]))


def test_conv1d_transposed_is_a_temporal_shift(frames):
    """Without the reshape bug the shift moves channels in time, zero-padded at the ends."""
    module = Conv1DFusion(E, reshape_bug=False)
    shifted = module.shift(frames.transpose(1, 2)).transpose(1, 2)
    q = E // 4
    torch.testing.assert_close(shifted[:, 1:, :q], frames[:, :-1, :q])  # takes t-1
    assert torch.all(shifted[:, 0, :q] == 0)
    torch.testing.assert_close(shifted[:, :, q:E - q], frames[:, :, q:E - q])
    torch.testing.assert_close(shifted[:, :-1, E - q:], frames[:, 1:, E - q:])  # takes t+1
    torch.testing.assert_close(module(frames), (shifted + frames).mean(dim=1))


def test_conv1d_reproduces_the_reshape_bug(frames):
    module = Conv1DFusion(E)
    scrambled = frames.reshape(B, E, T)  # memory re-interpretation, as in the original
    expected = (module.shift(scrambled).permute(0, 2, 1) + frames).mean(dim=1)
    torch.testing.assert_close(module(frames), expected)
    assert not torch.allclose(module(frames), Conv1DFusion(E, reshape_bug=False)(frames))


def test_lstm_residual(frames):
    module = LSTMFusion(E)
    for param in module.lstm.parameters():
        torch.nn.init.zeros_(param)  # LSTM output is then exactly 0
    torch.testing.assert_close(module(frames), frames.mean(dim=1))


def test_tf_layer_norm_matches_layer_norm():
    x = torch.randn(4, E)
    norm = TFLayerNorm(E)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (E,), eps=1e-12), atol=1e-5, rtol=0)
    assert TFLayerNorm(E, eps=1e-5).eps == 1e-5


def test_transformer_residual_skips_position_embedding(frames):
    module = TransformerFusion(E, heads=1, layers=2).eval()
    for block in module.resblocks:  # blocks become identities: attention and MLP output 0
        torch.nn.init.zeros_(block.attn.out_proj.weight)
        torch.nn.init.zeros_(block.attn.out_proj.bias)
        torch.nn.init.zeros_(block.mlp.c_proj.weight)
        torch.nn.init.zeros_(block.mlp.c_proj.bias)
    positions = module.frame_position_embeddings.weight[:T]
    # output = mean(frames + pos + frames): the position embedding is added once, the residual once.
    torch.testing.assert_close(module(frames), (2 * frames + positions).mean(dim=1))


def test_transformer_init_and_layout():
    module = TransformerFusion(E, heads=2, layers=3, max_frames=8, layer_norm_eps=1e-5)
    assert module.frame_position_embeddings.weight.shape == (8, E)
    assert len(module.resblocks) == 3 and module.resblocks[0].attn.num_heads == 2
    assert isinstance(module.resblocks[0].ln_1, TFLayerNorm) and module.resblocks[0].ln_1.eps == 1e-5
    assert torch.all(module.resblocks[0].mlp.c_fc.bias == 0)
    assert 0.01 < module.resblocks[0].mlp.c_fc.weight.std() < 0.03
    keys = set(module.state_dict())
    assert "resblocks.0.attn.in_proj_weight" in keys and "resblocks.0.mlp.c_proj.weight" in keys
    with pytest.raises(ValueError, match="position table"):
        module(torch.zeros(1, 9, E))


def test_transformer_order_matters(frames):
    module = TransformerFusion(E, heads=1, layers=1).eval()
    with torch.no_grad():
        module.frame_position_embeddings.weight.normal_()
        assert not torch.allclose(module(frames), module(frames.flip(1)))


def test_transformer_cls(frames):
    module = TransformerClsFusion(E, frames=T, heads=4, layers=2).eval()
    assert module.pos_embed.shape == (1, T + 1, E)
    out = module(frames)
    assert out.shape == (B, E)
    with pytest.raises(ValueError, match="built for"):
        module(frames[:, :3])
