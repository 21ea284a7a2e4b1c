"""`ovar predict` and `ovar eval` fuse a video's views by the same rule: for every recipe's
model, the same video and views give the same class probabilities both ways."""

from __future__ import annotations

import pytest
import torch

import ovar
from ovar.config import load_config
from ovar.eval import RecipeScorer, evaluate_set
from ovar.eval.scores import read_scores
from ovar.models.view_fusion import FUSION_RULES
from videogen import make_video

CLASSES = ["archery", "surfing water", "playing guitar"]
RECIPES = {"actionclip": ("mean_softmax", ["recipe.fusion=meanP"]),
           "text4vis": ("features", ["recipe.fusion=meanP"]),
           "evl": ("mean_softmax", ["recipe.num_layers=1", "recipe.cache.enabled=false"]),
           "open_vclip": ("sum_logits", ["recipe.iwo=false"]),
           "froster": ("sum_logits", ["recipe.iwo=false"]),
           "text4vis_nce": ("features", ["recipe.fusion=meanP"])}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    make_video(root / "a.mp4", num_frames=20, fps=10, size=(72, 56))
    (root / "val.txt").write_text("a.mp4 1\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_predict_and_eval_agree_for_every_recipe(name, clip_dir, tmp_path):
    from ovar.recipes import get_recipe

    rule, extra = RECIPES[name]
    config = load_config(None, ["model.backbone=tiny", "model.pretrained=none", "data.frames=4",
                                f"data.root={clip_dir}", f"data.val_list={clip_dir / 'val.txt'}",
                                f"data.classes={clip_dir / 'classes.txt'}", "data.workers=0",
                                "eval.views=2x3", "run.device=cpu", *extra])
    recipe = get_recipe(name)(config)
    torch.manual_seed(3)
    trainer = recipe.build_model().eval()
    inner = recipe.inner(trainer)
    assert recipe.fusion_rule() == rule == inner.view_fusion  # one declaration, read by both

    result = evaluate_set(RecipeScorer(recipe, trainer), recipe.eval_dataset(trainer), CLASSES, tmp_path / "eval",
                          batch_size=1, workers=0, progress=False, plots=False)
    assert result.num_videos == 1
    scores = read_scores(tmp_path / "eval" / "scores.pt")["scores"][0].double()

    predicted = ovar.predict(clip_dir / "a.mp4", CLASSES, model=inner, views="2x3", frames=4, workers=0)
    by_label = {p.label: p.score for p in predicted.predictions}
    probs = torch.tensor([by_label[c] for c in CLASSES], dtype=torch.float64)

    # Independently: the probabilities each rule's eval scores stand for (summed logits of 6 views
    # are a mean logit times 6).
    if rule in ("features", "mean_softmax"):
        expected = scores
    else:
        expected = (scores / 6).softmax(-1)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)


def test_every_model_rule_is_a_known_rule():
    from ovar.models.actionclip import ActionCLIPModel
    from ovar.models.evl import EVLModel
    from ovar.models.open_vclip import OpenVCLIPModel
    from ovar.models.text4vis import Text4VisModel
    from ovar.models.zero_shot import VideoTextModel

    for cls in (VideoTextModel, ActionCLIPModel, Text4VisModel, EVLModel, OpenVCLIPModel):
        assert cls.view_fusion in FUSION_RULES
        assert not hasattr(cls, "eval_fusion")  # one attribute, read by predict and eval alike


def test_logit_rules_average_actionclips_templates(tiny_backbone):
    """ActionCLIP keeps its templates apart; a logit rule sums each view's template-mean logits."""
    import torch.nn.functional as F

    from ovar.models.actionclip import ActionCLIPModel
    from ovar.models.view_fusion import fuse_views

    model = ActionCLIPModel(tiny_backbone, fusion="meanP", frames=2)
    generator = torch.Generator().manual_seed(5)
    embeddings = torch.randn(2, 3, model.backbone.embed_dim, generator=generator)  # 2 videos x 3 views
    classifier = F.normalize(torch.randn(4, 5, embeddings.shape[-1], generator=generator), dim=-1)  # K=4, C=5
    # Independently: 100 * cosine per (video, view, template, class), mean over templates.
    cos = torch.einsum("bve,kce->bvkc", F.normalize(embeddings.float(), dim=-1), classifier)
    per_view = (100.0 * cos).mean(dim=2)
    torch.testing.assert_close(fuse_views(model, embeddings, classifier, "sum_logits"), per_view.sum(dim=1))
    torch.testing.assert_close(fuse_views(model, embeddings, classifier, "mean_logits"), per_view.mean(dim=1))


@pytest.mark.parametrize("rule", FUSION_RULES)
def test_fusion_scores_in_fp32_under_a_callers_autocast(rule, tiny_backbone):
    """Eval fuses inside its autocast, predict after it: the fused scores must not depend on it."""
    import torch.nn.functional as F

    from ovar.models.actionclip import ActionCLIPModel
    from ovar.models.view_fusion import fuse_views

    model = ActionCLIPModel(tiny_backbone, fusion="meanP", frames=2)
    generator = torch.Generator().manual_seed(11)
    embeddings = torch.randn(2, 3, model.backbone.embed_dim, generator=generator)
    classifier = F.normalize(torch.randn(4, 5, embeddings.shape[-1], generator=generator), dim=-1)
    plain = fuse_views(model, embeddings, classifier, rule)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fuse_views(model, embeddings, classifier, rule)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, plain, atol=1e-6, rtol=1e-6)
