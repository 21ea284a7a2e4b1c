"""A recipe's datasets are built for a model: clips take that model's backbone image size and
normalisation, whichever model the recipe built last, and building them loads no weights."""

from __future__ import annotations

import open_clip
import pytest
import torch

import ovar.recipes.clip_recipe as clip_recipe
from ovar.models.backbone import ClipBackbone
from ovar.recipes import video_data
from test_recipes import _config, _recipe, dataset  # noqa: F401  (fixture)

# CLIP's (OpenAI) normalisation, which `tiny` with pretrained=none uses, and tiny's image size.
CLIP_MEAN, CLIP_STD, TINY_SIZE = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), 64
# Another backbone: 48-pixel images (3 x 3 patches of 16) and a normalisation of its own.
SMALL_SIZE, SMALL_MEAN, SMALL_STD = 48, (0.25, 0.375, 0.625), (0.125, 0.3125, 0.1875)

CASES = {
    "actionclip": (),
    "text4vis": (),
    "evl": ("recipe.num_layers=2", "recipe.rand_augment=null"),
    "open_vclip": (),
}


def _small_backbone(*_: object) -> ClipBackbone:
    clip = open_clip.create_model("tiny", pretrained=None, force_quick_gelu=True, force_image_size=SMALL_SIZE)
    return ClipBackbone(clip, name="tiny", pretrained="none", mean=SMALL_MEAN, std=SMALL_STD)


def _refuse(*_: object) -> ClipBackbone:
    raise AssertionError("a dataset was built by loading a backbone, not from the model it is for")


def _pixels(video: torch.Tensor, mean, std) -> torch.Tensor:
    """Undo the per-channel normalisation of (..., 3, S, S) clips."""
    return video * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)


@pytest.mark.parametrize("name", list(CASES))
def test_datasets_take_the_shape_of_the_model_they_are_for(name, dataset, tmp_path, monkeypatch):  # noqa: F811
    config = _config(dataset, tmp_path, name, *CASES[name], "eval.views=1x1")
    recipe = _recipe(config)
    torch.manual_seed(0)
    with monkeypatch.context() as patch:
        patch.setattr(clip_recipe, "load_backbone", _small_backbone)
        small = recipe.build_model()
    plain = recipe.build_model()  # built last, on model.backbone=tiny as configured
    monkeypatch.setattr(clip_recipe, "load_backbone", _refuse)

    for model, size in ((small, SMALL_SIZE), (plain, TINY_SIZE)):
        train_item, eval_item = recipe.train_dataset(model)[1], recipe.eval_dataset(model)[0]
        assert train_item["video"].shape[-2:] == (size, size)
        assert eval_item["video"].shape[-2:] == (size, size)

    # The small model's clips are the plain CLIP-normalised clips at its size, normalised by its
    # own mean and std: the same pixels once each normalisation is undone.
    reference_eval = video_data.eval_dataset(config, SMALL_SIZE, CLIP_MEAN, CLIP_STD, kind=recipe.original)
    torch.testing.assert_close(_pixels(recipe.eval_dataset(small)[0]["video"], SMALL_MEAN, SMALL_STD),
                               _pixels(reference_eval[0]["video"], CLIP_MEAN, CLIP_STD), atol=2e-5, rtol=0)
    reference_train = video_data.train_dataset(config, SMALL_SIZE, CLIP_MEAN, CLIP_STD, recipe.augment(SMALL_SIZE),
                                               few_shot_epoch=recipe.few_shot_epoch, sampling=recipe.train_sampling())
    torch.testing.assert_close(_pixels(recipe.train_dataset(small)[1]["video"], SMALL_MEAN, SMALL_STD),
                               _pixels(reference_train[1]["video"], CLIP_MEAN, CLIP_STD), atol=2e-5, rtol=0)

    # The model scores clips of its own dataset.
    item = recipe.eval_dataset(small)[0]
    scores, _ = recipe.evaluate_batch(recipe.eval_model(small.eval()), {"video": item["video"][None],
                                                                        "label": torch.tensor([item["label"]])})
    assert scores.shape == (1, 3) and torch.isfinite(scores).all()


def test_open_vclip_jitter_and_evl_cache_key_follow_the_model(dataset, tmp_path, monkeypatch):  # noqa: F811
    # Open-VCLIP resizes the short side to U(S, S * 256/224) before its S crop.
    assert _recipe(_config(dataset, tmp_path, "open_vclip")).augment(SMALL_SIZE).jitter == (48, 55)
    assert _recipe(_config(dataset, tmp_path, "open_vclip")).augment(224).jitter == (224, 256)
    recipe = _recipe(_config(dataset, tmp_path, "evl", "recipe.num_layers=2", "recipe.cache.enabled=true",
                             f"recipe.cache.dir={tmp_path / 'cache'}"))
    with monkeypatch.context() as patch:
        patch.setattr(clip_recipe, "load_backbone", _small_backbone)
        small = recipe.build_model()
    plain = recipe.build_model()
    monkeypatch.setattr(clip_recipe, "load_backbone", _refuse)
    small_key, plain_key = recipe._cache_key(small.model), recipe._cache_key(plain.model)
    assert (small_key["image_size"], small_key["mean"], small_key["std"]) == (48, list(SMALL_MEAN), list(SMALL_STD))
    assert (plain_key["image_size"], plain_key["mean"], plain_key["std"]) == (64, list(CLIP_MEAN), list(CLIP_STD))
