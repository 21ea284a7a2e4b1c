"""Frames per clip have one source, ``data.frames``: models and samplers are built from it, a
sampling rule naming another count is a load-time error, and reports print what ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ovar.cli import main
from ovar.config import ConfigError, load_config
from videogen import make_video

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["archery", "surfing water"]
# Each recipe's shipped configuration (EVL's and Open-VCLIP's sample densely).
SHIPPED = {"actionclip": "configs/actionclip/k400.yaml", "text4vis": "configs/text4vis/k400.yaml",
           "evl": "configs/evl/k400.yaml", "open_vclip": "configs/open_vclip/k400.yaml",
           "froster": "configs/froster/k400.yaml"}
SMALL = {"actionclip": ["recipe.fusion=meanP"], "text4vis": ["recipe.fusion=meanP"],
         "evl": ["recipe.num_layers=1"], "open_vclip": [], "froster": []}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_data_frames_builds_every_recipe_with_that_many_frames(name, tmp_path):
    from ovar.recipes import get_recipe

    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "val.txt").write_text("x.mp4 0\n")
    config = load_config(REPO / SHIPPED[name], [
        "model.backbone=tiny", "model.pretrained=none", "data.frames=13", f"data.root={tmp_path}",
        f"data.classes={tmp_path / 'classes.txt'}", f"data.val_list={tmp_path / 'val.txt'}", *SMALL[name]])
    recipe = get_recipe(name)(config)
    trainer = recipe.build_model().eval()
    model = recipe.inner(trainer)
    assert model.frames == 13
    assert recipe.eval_dataset(trainer).sampler.frames == 13
    if name == "evl":
        assert model.build_args["num_frames"] == 13 and recipe.layout(model).frames == 13
    size = model.image_size
    with torch.no_grad():  # a 13-frame clip goes through (EVL's temporal layers are sized by it)
        out = model.encode_video(torch.randn(1, 13, 3, size, size))
    assert out.shape[0] == 1


@pytest.mark.parametrize("overrides, message", [
    (["data.frames=16", "data.sampling=8x16"], "'8x16' takes 8 frames per clip but data.frames is 16"),
    (["data.frames=16", "data.sampling=segment:8"], "takes 8 frames per clip but data.frames is 16"),
    (["data.frames=4", "data.sampling=fps:8x16@30"], "takes 8 frames per clip but data.frames is 4"),
    (["model.frames=16"], "unknown key 'model.frames' (set data.frames instead)"),
])
def test_a_second_frame_count_is_a_one_line_error_at_load(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert load_config(None, ["data.frames=8", "data.sampling=8x16"]).data.frames == 8  # agreeing is fine


def test_the_eval_report_prints_the_frames_used(tmp_path, tiny_backbone, capsys):
    from ovar.models.actionclip import ActionCLIPModel
    from ovar.models.model_file import save_model_file

    for i, name in enumerate(CLASSES):
        make_video(tmp_path / f"{i}.mp4", num_frames=10, fps=10, size=(48, 40))
    (tmp_path / "test.csv").write_text("0.mp4,0\n1.mp4,1\n")
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    torch.manual_seed(0)
    save_model_file(tmp_path / "m.pt", ActionCLIPModel(tiny_backbone, fusion="meanP", frames=3))
    code = main(["eval", "--protocol", "closed", "--root", str(tmp_path), "--list", str(tmp_path / "test.csv"),
                 "--classes", str(tmp_path / "classes.txt"), "--out", str(tmp_path / "out"), "--workers", "0",
                 "--checkpoint", str(tmp_path / "m.pt"), "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["settings"]["frames"] == 3  # the model file's 3, not the default data.frames (8)
    assert "frames 3," in (tmp_path / "out" / "report.md").read_text()
