"""Weight averaging (SWA) and interpolation: parity with the original tool, ovar layouts, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ovar.cli import main
from ovar.errors import ModelError
from ovar.train.interpolation import interpolate_files, patch_module, patch_towards_clip
from ovar.train.weights import average_checkpoints, average_state_dicts, checkpoint_id, select_for_average
from reference_set import ReferenceSet

STUDENT = ("model.backbone.clip.", "model.video_encoder.backbone.clip.")  # one CLIP, two names
CLIP_SHAPES = {"visual.conv1.weight": (4, 3, 2, 2), "visual.positional_embedding": (5, 4),
               "token_embedding.weight": (6, 4), "positional_embedding": (7, 4), "logit_scale": ()}


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _clip(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in CLIP_SHAPES.items()}


def _run_state(seed: int) -> dict[str, torch.Tensor]:
    """An ovar CLIP-recipe training state: student CLIP under two names, a fusion head,
    a frozen teacher CLIP and an integer buffer."""
    g = torch.Generator().manual_seed(1000 + seed)
    student = _clip(seed)
    state = {p + k: v for p in STUDENT for k, v in student.items()}
    state["model.video_encoder.fusion.weight"] = torch.randn(3, 3, generator=g)
    state.update({"teacher.clip." + k: v for k, v in _clip(500 + seed).items()})
    state["model.video_encoder.fusion.num_batches"] = torch.tensor(seed)
    return state


def _save_run(folder: Path, epoch: int, state: dict) -> Path:
    path = folder / f"epoch_{epoch:04d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": epoch, "optimizer": {"state": {}}}, path)
    return path


# --- parity with Open-VCLIP's and FROSTER's weight-average tool -----------------------------


@pytest.mark.parametrize("system", ["open_vclip", "froster"])
def test_matches_original_weight_average_tool(system, tmp_path, capsys):
    ref = ReferenceSet(system)
    if not (ref.root / "swa_inputs.pt").is_file():
        pytest.skip(f"no {system} SWA reference at {ref.root}")
    inputs, expected = ref.load("swa_inputs.pt"), ref.load("swa_expected.pt")
    paths = []
    for name, payload in inputs["checkpoints"].items():
        torch.save(payload, tmp_path / name)
        paths.append(tmp_path / name)
    clip = tmp_path / "clip.pt"
    torch.save(inputs["clip"], clip)
    start, end = int(inputs["wa_start"]), int(inputs["wa_end"])

    payload, _ = average_checkpoints(paths, clip=clip, start=start, end=end)
    code, out, err = _cli(capsys, "weights", "average", *paths, "--clip", clip, "--from-epoch", start,
                          "--to-epoch", end, "--out", tmp_path / "swa.pth")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    for result in (payload, _load(tmp_path / "swa.pth")):
        assert list(result) == list(expected)
        got, want = result["model_state"], expected["model_state"]
        assert list(got) == list(want)
        for key, value in want.items():
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=key)


def _original(seed: int, projector: bool = True) -> dict:
    g = torch.Generator().manual_seed(2000 + seed)
    state = {"model." + k: v for k, v in _clip(seed).items()}
    state.update({"raw_model." + k: v for k, v in _clip(99).items()})
    if projector:
        state["projector_v.0.weight"] = torch.randn(2, 2, generator=g)
    return {"epoch": seed - 1, "model_state": state, "optimizer_state": {}}


def test_original_layout_with_clip_included(tmp_path):
    states = {i: _original(i) for i in (1, 2, 3)}
    paths = []
    for i, payload in states.items():
        paths.append(tmp_path / f"checkpoint_epoch_{i:05d}.pyth")
        torch.save(payload, paths[-1])
    clip = _clip(7)
    torch.save({**clip, "input_resolution": torch.tensor(32), "vocab_size": torch.tensor(6)}, tmp_path / "clip.pt")
    payload, info = average_checkpoints(paths, clip=tmp_path / "clip.pt", include_clip=True, start=2)
    got = payload["model_state"]
    assert info.ids == [0, 2, 3] and list(payload) == ["model_state"]
    assert list(got) == ["model." + k for k in CLIP_SHAPES] + ["projector_v.0.weight"]
    for k in CLIP_SHAPES:  # the CLIP joins the CLIP keys only
        want = (clip[k] + states[2]["model_state"]["model." + k] + states[3]["model_state"]["model." + k]) / 3
        torch.testing.assert_close(got["model." + k], want, atol=1e-6, rtol=0)
    p2, p3 = (states[i]["model_state"]["projector_v.0.weight"] for i in (2, 3))
    torch.testing.assert_close(got["projector_v.0.weight"], (p2 + p3) / 2, atol=1e-6, rtol=0)


# --- naming and selection -------------------------------------------------------------------


def test_checkpoint_ids_and_selection(tmp_path):
    assert checkpoint_id("out/checkpoint_epoch_00005.pyth") == 5
    assert checkpoint_id("epoch_0012.pt") == 12
    with pytest.raises(ModelError, match="best.pt"):
        checkpoint_id("best.pt")
    names = [f"checkpoint_epoch_{i:05d}.pyth" for i in (3, 1, 22, 23, 2)]
    assert [p.name for p in select_for_average(names, 2, 22)] == [names[4], names[0], names[2]]
    assert [p.name for p in select_for_average(names)] == [names[4], names[0], names[2], names[3]]
    with pytest.raises(ModelError, match=r"no checkpoints with ids 30\.\.40 among"):
        select_for_average(names, 30, 40)


# --- ovar layouts ---------------------------------------------------------------------------


def test_average_of_identical_checkpoints_is_the_input(tmp_path):
    state = _run_state(1)
    paths = [_save_run(tmp_path, e, state) for e in (2, 3, 4)]
    payload, info = average_checkpoints(paths)
    assert info.ids == [2, 3, 4] and info.layout == "run"
    assert list(payload["model"]) == list(state)
    for key, value in state.items():
        assert payload["model"][key].dtype == value.dtype
        torch.testing.assert_close(payload["model"][key], value, atol=1e-6, rtol=0)


def test_run_directory_average_is_the_midpoint(tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    states = {e: _run_state(e) for e in (1, 2, 3)}
    for e, state in states.items():
        _save_run(folder, e, state)
    (folder / "best.pt").write_bytes((folder / "epoch_0003.pt").read_bytes())
    code, out, err = _cli(capsys, "weights", "average", tmp_path / "run", "--out", tmp_path / "avg.pt")
    assert code == 0, err
    assert "2, 3" in out and len(out.strip().splitlines()) == 1
    got = _load(tmp_path / "avg.pt")["model"]
    a, b = states[2], states[3]
    for key in a:
        if key.startswith("teacher.") or not a[key].is_floating_point():
            assert torch.equal(got[key], b[key]), key  # frozen teacher and counters: the last one's
        else:
            torch.testing.assert_close(got[key], (a[key] + b[key]) / 2, atol=1e-6, rtol=0, msg=key)


def test_model_file_average_keeps_a_loadable_model(tmp_path):
    from ovar.models.actionclip import ActionCLIPModel
    from ovar.models.backbone import load_backbone
    from ovar.models.model_file import load_model_file, save_model_file

    model = ActionCLIPModel(load_backbone("tiny", "none"), fusion="meanP", frames=2)
    save_model_file(tmp_path / "epoch_0002.pt", model)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    save_model_file(tmp_path / "epoch_0003.pt", model)
    second = model.state_dict()
    payload, _ = average_checkpoints([tmp_path / "epoch_0002.pt", tmp_path / "epoch_0003.pt"])
    original = _load(tmp_path / "epoch_0003.pt")
    assert {k: v for k, v in payload.items() if k != "state_dict"} == \
        {k: v for k, v in original.items() if k != "state_dict"}
    torch.save(payload, tmp_path / "avg.pt")
    loaded = load_model_file(tmp_path / "avg.pt").state_dict()
    for key, value in loaded.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[key] + second[key]) / 2, atol=1e-5, rtol=0, msg=key)


def test_average_state_dicts_errors_name_the_key():
    a = {"w": torch.zeros(2), "n": torch.tensor(1)}
    with pytest.raises(ModelError, match="'w' has shape"):
        average_state_dicts([a, {"w": torch.zeros(3), "n": torch.tensor(2)}], names=["a", "b"])
    with pytest.raises(ModelError, match="b: key 'n' is missing"):
        average_state_dicts([a, {"w": torch.zeros(2)}], keys=["w", "n"], names=["a", "b"])


# --- interpolation and patching -------------------------------------------------------------


def test_interpolate_ratio_ends_give_b_and_a(tmp_path):
    a, b = _save_run(tmp_path / "a", 1, _run_state(1)), _save_run(tmp_path / "b", 2, _run_state(2))
    sa, sb = _load(a)["model"], _load(b)["model"]
    zero, _ = interpolate_files(a, b, 0.0)
    one, _ = interpolate_files(a, b, 1.0)
    for key in sb:
        assert torch.equal(zero["model"][key], sb[key]), key
        want = sa[key] if sb[key].is_floating_point() else sb[key]
        assert torch.equal(one["model"][key], want), key


def test_interpolate_cli_matches_library_and_hand_value(tmp_path, capsys):
    a, b = _save_run(tmp_path / "a", 1, _run_state(1)), _save_run(tmp_path / "b", 2, _run_state(2))
    library, _ = interpolate_files(a, b, 0.3)
    code, out, err = _cli(capsys, "weights", "interpolate", "--ratio", "0.3", a, b, "--out", tmp_path / "mix.pt")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    written = _load(tmp_path / "mix.pt")
    sa, sb = _load(a)["model"], _load(b)["model"]
    assert list(written) == ["model"] and list(written["model"]) == list(sb)
    for key, value in sb.items():
        torch.testing.assert_close(written["model"][key], library["model"][key], atol=0, rtol=0)
        want = 0.3 * sa[key] + 0.7 * value if value.is_floating_point() else value
        torch.testing.assert_close(written["model"][key], want, atol=1e-6, rtol=0, msg=key)


def test_patch_towards_clip_by_hand():
    state = {"model.visual.conv1.weight": torch.tensor([[1.0, 2.0]]), "model.token_embedding.weight": torch.tensor([4.0]),
             "model.logit_scale": torch.tensor(2.0), "raw_model.visual.conv1.weight": torch.tensor([[9.0, 9.0]]),
             "projector_v.0.weight": torch.tensor([5.0])}
    clip = {"visual.conv1.weight": torch.tensor([[3.0, 0.0]]), "token_embedding.weight": torch.tensor([0.0]),
            "logit_scale": torch.tensor(4.0), "vocab_size": torch.tensor(1)}
    got = patch_towards_clip(state, clip, 0.25)
    assert torch.allclose(got["model.visual.conv1.weight"], torch.tensor([[1.5, 1.5]]))
    assert torch.allclose(got["model.token_embedding.weight"], torch.tensor([3.0]))
    assert torch.allclose(got["model.logit_scale"], torch.tensor(2.5))
    for key in ("raw_model.visual.conv1.weight", "projector_v.0.weight"):  # teacher and heads untouched
        assert torch.equal(got[key], state[key])
    with pytest.raises(ModelError, match="logit_scale"):
        patch_towards_clip({k: v for k, v in state.items() if k != "model.logit_scale"}, clip, 0.5)


def test_interpolate_with_a_clip_file_patches_the_checkpoint(tmp_path):
    clip = _clip(42)
    torch.save({**clip, "context_length": torch.tensor(7)}, tmp_path / "clip.pt")
    ckpt = _save_run(tmp_path, 3, _run_state(3))
    state = _load(ckpt)["model"]
    for args, r in (((tmp_path / "clip.pt", ckpt, 0.4), 0.4), ((ckpt, tmp_path / "clip.pt", 0.6), 0.4)):
        payload, _ = interpolate_files(*args)
        got = payload["model"]
        assert list(got) == list(state)
        for key, value in state.items():
            rel = next((key[len(p):] for p in STUDENT if key.startswith(p)), None)
            want = r * clip[rel] + (1 - r) * value if rel is not None else value
            torch.testing.assert_close(got[key], want, atol=1e-6, rtol=0, msg=key)


def test_patch_module_in_place_once_per_tensor():
    from ovar.models.backbone import load_backbone

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = load_backbone("tiny", "none")
            self.alias = self.backbone  # the same CLIP under a second name

    module = Wrapper()
    before = {k: v.clone() for k, v in module.backbone.clip.state_dict().items()}
    clip = {k: torch.randn_like(v) for k, v in before.items()}
    patched = patch_module(module, clip, 0.25)
    assert patched == len(before)
    for key, value in module.backbone.clip.state_dict().items():
        torch.testing.assert_close(value, 0.25 * clip[key] + 0.75 * before[key], atol=1e-6, rtol=0, msg=key)


# --- command-line errors --------------------------------------------------------------------


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    ckpt = _save_run(tmp_path, 1, _run_state(1))
    (tmp_path / "notes_3.txt").write_text("not a checkpoint")
    cases = [
        (["average", tmp_path / "missing_0004.pt", "--out", tmp_path / "o.pt"], "not found"),
        (["average", ckpt, "--out", tmp_path / "o.pt"], "no checkpoints with ids"),
        (["average", tmp_path / "notes_3.txt", "--out", tmp_path / "o.pt"], "notes_3.txt"),
        (["average", ckpt, "--include-clip", "--from-epoch", "0", "--out", tmp_path / "o.pt"], "--clip"),
        (["interpolate", "--ratio", "0.5", ckpt, tmp_path / "nothing.pt", "--out", tmp_path / "o.pt"], "not found"),
    ]
    for args, needle in cases:
        code, _, err = _cli(capsys, "weights", *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("ovar: error:"), (args, err)
        assert needle in lines[0], (needle, err)
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(SystemExit) as exc:
        main(["weights", "interpolate", "--ratio", "1.5", str(ckpt), str(ckpt), "--out", str(tmp_path / "o.pt")])
    assert exc.value.code == 2 and "[0, 1]" in capsys.readouterr().err
