"""Weight files are read as data: TorchScript archives never run their code, safetensors everywhere.

The archives here are built by scripting small module trees with OpenAI CLIP's names (``visual.``,
``transformer.``, the int scalars). A malicious one carries a module whose ``__setstate__`` creates a
file: ``torch.jit.load`` creates it (checked, so the test can fail), ovar's entry points must not.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Tuple

import pytest
import torch
from torch import Tensor, nn

from openai_reference import encode_image, encode_text, random_openai_state_dict
from ovar.cli import main
from ovar.errors import ModelError
from ovar.models import load_backbone
from ovar.models.weights_io import OPENAI_METADATA_KEYS, read_weights

SIZES = dict(vision_width=64, vision_layers=1, patch=16, image=32, text_width=64, text_layers=1, embed=32)


class _Node(nn.Module):
    """One level of a module tree holding weights; scriptable (its forward is the identity)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class _SideEffect(nn.Module):
    """Restores itself with code that creates the file named in its state (as a crafted archive could)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.weight = nn.Parameter(torch.full((3,), 0.25))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, Tensor, bool]:
        return (self.target, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, Tensor, bool]) -> None:
        self.target = state[0]
        # from_file(shared=True) creates the file; the result is used so the call is kept.
        marker = torch.from_file(state[0], True, 16, dtype=torch.uint8)
        self.weight = state[1] + marker[:3].to(torch.float32) * 0.0
        self.training = state[2]


def _tree(state: dict[str, Tensor]) -> _Node:
    """Modules named by the dotted keys; float tensors as parameters, the int scalars as buffers."""
    root = _Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if part not in node._modules:
                node.add_module(part, _Node())
            node = node._modules[part]
        if value.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, value.clone())
    # OpenAI's text blocks hold their causal mask as a plain attribute: in the archive, not a weight.
    for block in root.transformer.resblocks.children():
        block.attn_mask = torch.full((77, 77), float("-inf")).triu(1)
    return root


def _save_script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated; it still writes the archives
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(scope="module")
def openai_sd() -> dict[str, Tensor]:
    return random_openai_state_dict(seed=3, **SIZES)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, openai_sd) -> Path:
    return _save_script(_tree(openai_sd), tmp_path_factory.mktemp("safe") / "ViT-tiny.pt")


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, openai_sd) -> tuple[Path, Path]:
    """(archive, the file its __setstate__ would create)."""
    folder = tmp_path_factory.mktemp("crafted")
    marker = folder / "pwned"
    tree = _tree(openai_sd)
    tree.visual.add_module("extra", _SideEffect(str(marker)))
    path = _save_script(tree, folder / "ViT-tiny.pt")
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path))  # the test's own file: proves the archive does run code when loaded
    assert marker.exists(), "the crafted archive must have a side effect under torch.jit.load"
    marker.unlink()
    return path, marker


def test_archive_reads_to_the_tensors_jit_load_gives(archive, openai_sd):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.jit.load(str(archive)).state_dict()  # the test's own safe file
    state, openai = read_weights(archive)
    assert openai
    assert list(state) == [k for k in expected if k not in OPENAI_METADATA_KEYS]
    assert set(OPENAI_METADATA_KEYS) <= set(expected)  # the int scalars were in the archive
    for key, value in state.items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
        assert torch.equal(value, openai_sd[key]), key
    assert not any(k.endswith("attn_mask") for k in state)  # a plain attribute, not a weight


def test_archive_backbone_matches_openai_computation(archive, openai_sd):
    backbone = load_backbone("tiny", archive)
    assert backbone.image_size == 32
    g = torch.Generator().manual_seed(5)
    images = torch.randn(2, 3, 32, 32, generator=g)
    tokens = backbone.tokenize(["brush hair", "surfing water"])
    with torch.no_grad():
        torch.testing.assert_close(backbone.encode_image(images), encode_image(openai_sd, images), atol=1e-5, rtol=0)
        torch.testing.assert_close(backbone.encode_text(tokens), encode_text(openai_sd, tokens), atol=1e-5, rtol=0)


def test_fp16_and_shared_storages_are_kept(tmp_path, openai_sd):
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in openai_sd.items()}
    tree = _tree(half)
    tree.transformer.resblocks._modules["0"].ln_2.bias = tree.transformer.resblocks._modules["0"].ln_1.bias
    path = _save_script(tree, tmp_path / "half.pt")
    state, _ = read_weights(path)
    assert state["visual.proj"].dtype == torch.float16
    torch.testing.assert_close(state["visual.proj"], half["visual.proj"], atol=0, rtol=0)
    torch.testing.assert_close(state["transformer.resblocks.0.ln_2.bias"], half["transformer.resblocks.0.ln_1.bias"],
                               atol=0, rtol=0)


def test_reader_refuses_the_crafted_archive(crafted):
    path, marker = crafted
    with pytest.raises(ModelError, match=r"visual\.extra.*__setstate__"):
        read_weights(path)
    with pytest.raises(ModelError, match="__setstate__"):
        load_backbone("tiny", path)
    assert not marker.exists()


def test_edited_data_pickle_reaches_no_function(archive, tmp_path):
    """An archive whose data.pkl was edited to call a function (here os.system) is refused unread."""
    import zipfile

    marker = tmp_path / "ran"
    # Protocol-0 opcodes for os.system("touch <marker>"), written out by hand.
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    edited = tmp_path / "edited.pt"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = payload if item.filename.endswith("/data.pkl") else source.read(item.filename)
            target.writestr(item, data)
    with pytest.raises(ModelError, match="'os.system', which is not read as data"):
        read_weights(edited)
    assert not marker.exists()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, openai_sd) -> dict[str, Path]:
    """Files the entry points take next to a CLIP file: an Open-VCLIP checkpoint, epoch checkpoints."""
    folder = tmp_path_factory.mktemp("ckpts")
    clip = {k: v for k, v in openai_sd.items() if k not in OPENAI_METADATA_KEYS}
    tuned = {"model." + k: v + 0.125 if v.is_floating_point() else v for k, v in clip.items()}
    files = {"open_vclip": folder / "swa_2_22.pth"}
    torch.save({"model_state": tuned}, files["open_vclip"])
    for epoch in (2, 3):
        files[f"epoch{epoch}"] = folder / f"checkpoint_epoch_{epoch:05d}.pyth"
        torch.save({"model_state": {k: v * epoch for k, v in tuned.items()}, "epoch": epoch}, files[f"epoch{epoch}"])
    return files


def _entry_points(clip: Path, ckpt: dict[str, Path], out: Path, video: Path) -> dict[str, list[str]]:
    """Every command that reads a CLIP weights file, given ``clip``."""
    return {
        "predict --pretrained": ["predict", str(video), "--labels", "archery, surfing", "--model", "tiny",
                                 "--pretrained", str(clip)],
        "predict --clip": ["predict", str(video), "--labels", "archery, surfing", "--checkpoint",
                           str(ckpt["open_vclip"]), "--clip", str(clip)],
        "convert --clip": ["convert", str(ckpt["open_vclip"]), "--from", "open_vclip", "--clip", str(clip),
                           "--out", str(out / "converted.pt")],
        "weights interpolate A": ["weights", "interpolate", str(clip), str(ckpt["open_vclip"]), "--ratio", "0.25",
                                  "--out", str(out / "mixed.pth")],
        "weights interpolate B": ["weights", "interpolate", str(ckpt["open_vclip"]), str(clip), "--ratio", "0.25",
                                  "--out", str(out / "mixed_b.pth")],
        "weights average --clip": ["weights", "average", str(ckpt["epoch2"]), str(ckpt["epoch3"]), "--clip", str(clip),
                                   "--out", str(out / "avg.pth")],
        "eval --pretrained": ["eval", "--protocol", "closed", "--model", "tiny", "--pretrained", str(clip),
                              "--root", str(video.parent), "--out", str(out / "eval"), "--workers", "0",
                              "--list", str(video.parent / "list.txt"), "--classes", str(video.parent / "classes.txt")],
        "eval --checkpoint --clip": ["eval", "--protocol", "closed", "--checkpoint", str(ckpt["open_vclip"]),
                                     "--clip", str(clip), "--root", str(video.parent), "--out", str(out / "eval_c"),
                                     "--workers", "0",
                                     "--list", str(video.parent / "list.txt"),
                                     "--classes", str(video.parent / "classes.txt")],
    }


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from videogen import make_video

    folder = tmp_path_factory.mktemp("videos")
    path = make_video(folder / "clip.mp4", num_frames=8, fps=8, size=(40, 32))
    (folder / "list.txt").write_text("clip.mp4 0\n")
    (folder / "classes.txt").write_text("archery\nsurfing\n")
    return Path(path)


ENTRY_POINTS = list(_entry_points(Path("c"), {"open_vclip": Path("o"), "epoch2": Path("2"), "epoch3": Path("3")},
                                  Path("out"), Path("v/v.mp4")))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_no_entry_point_runs_archive_code(entry, crafted, checkpoints, video, tmp_path, capsys):
    path, marker = crafted
    argv = _entry_points(path, checkpoints, tmp_path, video)[entry]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ovar: error: ")]
    assert len(errors) == 1 and "__setstate__" in errors[0] and str(path) in errors[0]
    assert not marker.exists()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_points_read_a_safe_archive(entry, archive, checkpoints, video, tmp_path, capsys):
    argv = _entry_points(archive, checkpoints, tmp_path, video)[entry]
    assert main(argv) == 0, capsys.readouterr().err


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory, openai_sd, archive) -> dict[str, Path]:
    """The same CLIP weights as a TorchScript archive, a safetensors file and a torch.save state dict."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clips")
    save_file({k: v.contiguous() for k, v in openai_sd.items()}, str(folder / "clip.safetensors"))
    torch.save(openai_sd, folder / "clip.pt")
    return {"archive": archive, "safetensors": folder / "clip.safetensors", "state dict": folder / "clip.pt"}


@pytest.mark.parametrize("kind", ["archive", "safetensors", "state dict"])
def test_clip_files_of_every_format_give_the_same_result(kind, clip_files, openai_sd, checkpoints, tmp_path):
    clip = clip_files[kind]
    state, openai = read_weights(clip)
    assert openai and set(state) == {k for k in openai_sd if k not in OPENAI_METADATA_KEYS}
    # weights interpolate: 0.25 * CLIP + 0.75 * checkpoint, computed here from the tensors
    assert main(["weights", "interpolate", str(clip), str(checkpoints["open_vclip"]), "--ratio", "0.25",
                 "--out", str(tmp_path / "mixed.pth")]) == 0
    mixed = torch.load(tmp_path / "mixed.pth", weights_only=True)["model_state"]
    tuned = torch.load(checkpoints["open_vclip"], weights_only=True)["model_state"]
    for key, value in state.items():
        expected = 0.25 * openai_sd[key] + 0.75 * tuned["model." + key]
        torch.testing.assert_close(mixed["model." + key], expected, atol=1e-6, rtol=0)
    # convert --clip: the classifier's text tower comes from the CLIP file, whatever its format
    assert main(["convert", str(checkpoints["open_vclip"]), "--from", "open_vclip", "--clip", str(clip),
                 "--out", str(tmp_path / "model.pt")]) == 0
    from ovar.models.model_file import load_model_file

    clip_model = load_model_file(tmp_path / "model.pt").backbone.clip
    torch.testing.assert_close(clip_model.token_embedding.weight, openai_sd["token_embedding.weight"], atol=0, rtol=0)
    torch.testing.assert_close(clip_model.visual.proj, tuned["model.visual.proj"], atol=0, rtol=0)


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if not e.startswith("eval")])
def test_entry_points_take_safetensors(entry, clip_files, checkpoints, video, tmp_path, capsys):
    argv = _entry_points(clip_files["safetensors"], checkpoints, tmp_path, video)[entry]
    assert main(argv) == 0, capsys.readouterr().err


def test_safetensors_is_refused_where_a_checkpoint_is_needed(clip_files, tmp_path, capsys):
    from safetensors.torch import save_file

    from ovar.hub import load_model

    path = clip_files["safetensors"]
    with pytest.raises(ModelError, match="safetensors file holds bare weights, not a checkpoint"):
        load_model(checkpoint=path)
    for epoch in (2, 3):
        save_file({"w": torch.full((2,), 0.25 * epoch)}, str(tmp_path / f"checkpoint_epoch_{epoch:05d}.safetensors"))
    assert main(["weights", "average", str(tmp_path / "checkpoint_epoch_00002.safetensors"),
                 str(tmp_path / "checkpoint_epoch_00003.safetensors"), "--out", str(tmp_path / "avg.pth")]) == 2
    assert "bare weights" in capsys.readouterr().err
    # as CLIP weights, the same file works
    backbone = load_backbone("tiny", path)
    assert backbone.image_size == 32
