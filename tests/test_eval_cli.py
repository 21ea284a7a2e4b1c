"""`ovar eval` beyond the protocols' tables: each recipe's view fusion and its override,
undecodable videos listed in the report, and patched evaluation of an original checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ovar.cli import main
from ovar.eval import score_views
from ovar.eval.scores import read_scores
from reference_set import ReferenceSet
from videogen import make_video

TINY = ["model.backbone=tiny", "model.pretrained=none", "data.frames=4", "run.device=cpu"]
CLASSES = ["Archery", "Surfing", "Biking"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six videos (two per class), a corrupt one, a list and a class file."""
    base = tmp_path_factory.mktemp("evalcli")
    rows = []
    for c, name in enumerate(CLASSES):
        for i in range(2):
            (base / name).mkdir(exist_ok=True)
            make_video(base / name / f"{i}.mp4", num_frames=8 + 3 * c + i, fps=8, size=(64, 48))
            rows.append(f"{name}/{i}.mp4,{c}")
    (base / "Archery" / "broken.mp4").write_bytes(b"\x00" * 64)
    (base / "test.csv").write_text("\n".join(rows + ["Archery/broken.mp4,0"]) + "\n")
    (base / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return base


@pytest.mark.parametrize("name, rule", [("actionclip", "mean_softmax"), ("text4vis", "features"),
                                        ("evl", "mean_softmax"), ("open_vclip", "sum_logits"),
                                        ("froster", "sum_logits")])
def test_each_recipe_fuses_views_its_way_unless_overridden(name, rule, tmp_path):
    from ovar.config import load_config
    from ovar.recipes import get_recipe

    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    overrides = [*TINY, f"data.classes={tmp_path / 'classes.txt'}", "eval.views=2x1"]
    overrides += {"open_vclip": ["recipe.iwo=false"], "evl": ["recipe.num_layers=2", "recipe.cache.enabled=false"]
                  }.get(name, [])
    recipe = get_recipe(name)(load_config(None, overrides))
    assert recipe.fusion_rule() == rule
    torch.manual_seed(0)
    model = recipe.build_model().eval()
    emodel = recipe.eval_model(model)
    inner = recipe.inner(emodel)
    size = inner.image_size
    video = torch.randn(2, 2, 4, 3, size, size)
    batch = {"video": video, "label": torch.tensor([0, 2])}
    classifier = recipe.classifier_for(emodel, CLASSES)
    scores, _ = recipe.evaluate_batch(emodel, batch)
    torch.testing.assert_close(scores, score_views(inner, video, classifier, rule), atol=1e-5, rtol=0)

    other = "mean_logits" if rule != "mean_logits" else "sum_logits"
    recipe.config.eval.fusion = other
    fused, _ = recipe.evaluate_batch(emodel, batch)
    torch.testing.assert_close(fused, score_views(inner, video, classifier, other), atol=1e-5, rtol=0)
    assert not torch.allclose(fused, scores)


def _closed(videos: Path, out: Path, *args: str) -> int:
    return main(["eval", "--protocol", "closed", "--root", str(videos), "--list", str(videos / "test.csv"),
                 "--classes", str(videos / "classes.txt"), "--out", str(out), "--workers", "0", *args])


def test_undecodable_video_is_reported_and_skipped(videos, tmp_path, capsys):
    out = tmp_path / "closed"
    code = _closed(videos, out, "--model", "tiny", "--pretrained", "none", "--views", "2x1", *TINY)
    assert code == 1  # finished, with a failure to look at
    report = json.loads((out / "report.json").read_text())
    failed = report["failures"]["failed"]
    assert len(failed) == 1 and list(failed.values())[0][0][0].endswith("broken.mp4")
    part = report["parts"][0]
    assert part["num_videos"] == 6 and part["num_listed"] == 7
    md = (out / "report.md").read_text()
    assert "broken.mp4" in md and "failed to decode" in md
    for plot in ("per_class_accuracy.png", "confusion.png"):
        assert (out / "closed" / "test" / plot).read_bytes()[:4] == b"\x89PNG"
        assert plot in md
    metrics = json.loads((out / "closed" / "test" / "metrics.json").read_text())
    assert len(metrics["confusion"]) == 3 and sum(map(sum, metrics["confusion"])) == 6
    assert metrics["top1"] == pytest.approx(part["top1"]) and "mAP" in metrics


REFERENCE = ReferenceSet("open_vclip")


@REFERENCE.skip_unless_available("Open-VCLIP")
def test_patch_ratio_evaluates_the_patched_original(videos, tmp_path):
    from ovar.protocols.sources import EvalSettings, eval_dataset
    from ovar.hub import load_model

    checkpoint, clip = REFERENCE.root / "checkpoint.pth", REFERENCE.root / "clip.pt"
    args = ["--checkpoint", str(checkpoint), "--clip", str(clip), "--views", "1x1"]
    assert _closed(videos, tmp_path / "plain", *args) == 1
    assert _closed(videos, tmp_path / "patched", *args, "--patch-ratio", "0.25") == 1
    plain = read_scores(tmp_path / "plain" / "closed" / "test")
    patched = read_scores(tmp_path / "patched" / "closed" / "test")
    assert not torch.allclose(plain["scores"], patched["scores"])

    model = load_model(checkpoint=checkpoint, clip=clip, patch_ratio=0.25)
    records = __import__("ovar.data.lists", fromlist=["read_list"]).read_list(videos / "test.csv")[:6]
    settings = EvalSettings(root=videos, views="1x1", frames=model.frames, workers=0)
    dataset = eval_dataset(records, model.backbone, model.frames, settings, kind=model.kind)  # the original system's test input
    video = torch.stack([dataset[i]["video"] for i in range(len(dataset))])
    with torch.no_grad():
        expected = score_views(model, video, model.classifier(CLASSES), "sum_logits")
    torch.testing.assert_close(patched["scores"], expected, atol=1e-4, rtol=0)


def test_bad_options_are_one_line_usage_errors(videos, tmp_path, capsys):
    for bad, message in ((["--patch-ratio", "1.5"], "expected a number in [0, 1], got '1.5'"),
                         (["--fusion", "max"], "unknown fusion 'max'")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            _closed(videos, tmp_path / "out", "--model", "tiny", "--pretrained", "none", *bad)
        assert stop.value.code == 2 and message in capsys.readouterr().err
