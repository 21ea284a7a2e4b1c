"""Training and test procedure as the originals ran it: few-shot epochs, test scale, batches,
augmentation (the defaults; each has a test that fails if it changes back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ovar.config import ConfigError, load_config
from ovar.data.loader import build_loader
from ovar.recipes import load_recipe
from ovar.recipes import video_data
from ovar.train import train
from ovar.video.clip_augment import MultiScaleCrop, TimmRandAugment
from ovar.video.eval_scale import eval_scale, parse_eval_scale
from ovar.video.transforms import CLIP_MEAN, CLIP_STD, build_train_transform
from labelled_videos import CLASSES, recipe_config, write_labelled_videos

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_labelled_videos(tmp_path_factory.mktemp("videos"), 4, val_every=3)


def _config(root, out, recipe, *extra):
    return recipe_config(root, out, recipe, "schedule.epochs=1", "eval.every_n_epochs=0", *extra)


# ------------------------------------------------------------------ 1. few-shot epochs


def test_few_shot_repeat_rule() -> None:
    # Text4Vis: ⌊N_full / (K·C)⌋, e.g. UCF101 split-1 train (9,537 videos), K=2, 101 classes.
    assert video_data.few_shot_repeats("full", 9537, 2, 101) == 47
    assert video_data.few_shot_repeats("full", 9537, 16, 101) == 5
    assert video_data.few_shot_repeats("full", 50, 16, 101) == 1  # never below one pass
    assert video_data.few_shot_repeats("subset", 9537, 2, 101) == 1


def test_text4vis_few_shot_epoch_has_the_full_sets_steps(dataset, tmp_path) -> None:
    # 12 videos, K=1, 3 classes: the 3-video list is read 12 // 3 = 4 times per epoch.
    config = _config(dataset, tmp_path / "run", "text4vis", "data.shot=1")
    recipe = load_recipe("text4vis")(config)
    train_set = recipe.train_dataset(recipe.build_model())
    assert len(train_set) == 12
    assert len({r.path for r in train_set.records}) == 3
    loader = build_loader(train_set, 3, workers=0, shuffle=True, seed=0, distributed=False)
    assert len(loader) == 4


@pytest.mark.slow
def test_text4vis_few_shot_run_makes_the_full_sets_steps(dataset, tmp_path) -> None:
    config = _config(dataset, tmp_path / "run", "text4vis", "data.shot=1")
    result = train(config, load_recipe("text4vis")(config))
    assert result.step == 4  # optimiser steps in the one epoch: 12 videos / batch 3


@pytest.mark.parametrize("recipe, extra, size", [("text4vis", ["data.shot_epoch=subset"], 3),
                                                 ("actionclip", [], 3),
                                                 ("actionclip", ["data.shot_epoch=full"], 12)])
def test_few_shot_epoch_option(dataset, tmp_path, recipe, extra, size) -> None:
    config = _config(dataset, tmp_path, recipe, "data.shot=1", *extra)
    built = load_recipe(recipe)(config)
    assert len(built.train_dataset(built.build_model())) == size


def test_few_shot_protocol_repeats_as_the_recipe() -> None:
    from ovar.protocols.training import RecipeSpec, few_shot_repeat

    for name, expected in (("text4vis", 47), ("actionclip", 1), ("evl", 1)):
        spec = RecipeSpec(recipe=name)
        assert few_shot_repeat(spec, spec.config(), 2, 9537, 101) == expected
    spec = RecipeSpec(recipe="actionclip", overrides=["data.shot_epoch=full"])
    assert few_shot_repeat(spec, spec.config(), 2, 9537, 101) == 47


# -------------------------------------------------------------------- 3. test scale


def _known_frame() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8, generator=g)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _centre(x: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., (h - crop) // 2:(h - crop) // 2 + crop, (w - crop) // 2:(w - crop) // 2 + crop]


def _expected_pil(clip: torch.Tensor, short: int, crop: int) -> torch.Tensor:
    """ActionCLIP / Text4Vis: PIL bicubic resize of the short side, centre crop, normalise."""
    from PIL import Image

    h, w = clip.shape[-2:]
    size = (int(short * w / h), short) if w >= h else (short, int(short * h / w))
    frames = [torch.from_numpy(np.array(Image.fromarray(f.permute(1, 2, 0).numpy()).resize(size, Image.BICUBIC)))
              .permute(2, 0, 1) for f in clip]
    return _normalize(_centre(torch.stack(frames).float() / 255, crop))[None]


def _expected_torch(clip: torch.Tensor, short: int, crop: int) -> torch.Tensor:
    """EVL / PySlowFast: normalise, bilinear F.interpolate (no antialias), centre crop."""
    h, w = clip.shape[-2:]
    size = (short, w * short // h) if h <= w else (h * short // w, short)
    x = torch.nn.functional.interpolate(_normalize(clip.float() / 255), size=size, mode="bilinear",
                                        align_corners=False)
    return _centre(x, crop)[None]


@pytest.mark.parametrize("kind, short", [("actionclip", 256), ("text4vis", 256), ("evl", 224),
                                         ("open_vclip", 224), ("froster", 224)])
def test_each_recipes_test_transform_on_a_known_frame(kind, short) -> None:
    config = load_config(None, [])
    transform = video_data.eval_transform(config, kind, 224, 1, CLIP_MEAN, CLIP_STD)
    clip = _known_frame()
    out = transform(clip)
    expected = (_expected_pil if short == 256 else _expected_torch)(clip, short, 224)
    # uint8 rounding of the resized frame stays within a level; the other resize rule is ~0.1 off.
    assert out.shape == expected.shape
    assert (out - expected).abs().mean() < 0.01 and (out - expected).abs().max() < 0.05
    other = (_expected_pil if short == 224 else _expected_torch)(clip, 480 - short, 224)
    assert (out - other).abs().mean() > 0.3


@pytest.mark.parametrize("name, ratio", [("actionclip", 256 / 224), ("text4vis", 256 / 224), ("evl", 1.0),
                                         ("open_vclip", 1.0), ("froster", 1.0)])
def test_recipes_evaluate_at_their_test_scale(dataset, tmp_path, name, ratio) -> None:
    small = ["recipe.num_layers=2"] if name == "evl" else []  # the tiny backbone has 3 blocks
    config = _config(dataset, tmp_path, name, "eval.views=1x3", *small)
    recipe = load_recipe(name)(config)
    model = recipe.build_model()
    transform = recipe.eval_dataset(model).transform
    size = recipe.inner(model).backbone.image_size
    assert (transform.short_side, transform.size, transform.num_crops) == (round(size * ratio), size, 3)


def test_test_scale_option_per_view_layout(dataset, tmp_path) -> None:
    assert parse_eval_scale("1=256/224,3=224") == {1: (256, 224), 3: (224, None)}
    assert eval_scale("evl", 224, 1, "256/224") == (256, 224)
    assert eval_scale("evl", 224, 3, "1=256/224") == (224, 224)  # layout 3 keeps the original
    assert eval_scale(None, 336, 1) == (336, 336)  # plain CLIP: no margin
    config = load_config(None, ["data.test_scale=1=288/256,3=224/224"])
    one = video_data.eval_transform(config, "actionclip", 224, 1, CLIP_MEAN, CLIP_STD)
    three = video_data.eval_transform(config, "actionclip", 224, 3, CLIP_MEAN, CLIP_STD)
    assert (one.short_side, one.size, three.short_side, three.size) == (288, 256, 224, 224)
    with pytest.raises(ConfigError, match="data.test_scale"):
        video_data.eval_transform(load_config(None, ["data.test_scale=200/224"]), "evl", 224, 1,
                                  CLIP_MEAN, CLIP_STD)


# -------------------------------------------------------- 4. FROSTER B2N batch per dataset


@pytest.mark.parametrize("file, global_batch", [("b2n.yaml", 32), ("b2n_hmdb51.yaml", 32),
                                                ("b2n_ucf101.yaml", 64), ("b2n_ssv2.yaml", 32)])
def test_froster_b2n_batch_per_dataset(file, global_batch) -> None:
    config = load_config(ROOT / "configs" / "froster" / file)
    assert config.data.batch_size * 8 == global_batch  # the released runs: 8 processes
    assert config.schedule.epochs == 12 and config.recipe["name"] == "froster"


# ------------------------------------------------------------------- 5. augmentation


def _ops(recipe, size: int = 224) -> list:
    aug = recipe.augment(size)
    t = build_train_transform(size, random_resized_crop=aug.random_resized_crop, scale=aug.scale, flip=aug.flip,
                              rand_augment=aug.rand_augment, jitter=aug.jitter, grayscale=aug.grayscale,
                              multi_scale_crop=aug.multi_scale_crop, color_jitter=aug.color_jitter,
                              timm_rand_augment=aug.timm_rand_augment,
                              short_side=round(aug.short_side_ratio * size) if aug.short_side_ratio else None)
    return list(t.ops.transforms), t


def test_actionclip_augmentation_as_released(dataset, tmp_path) -> None:
    ops, _ = _ops(load_recipe("actionclip")(_config(dataset, tmp_path, "actionclip")))
    kinds = [type(op).__name__ for op in ops]
    assert kinds == ["Resize", "RandAugment", "MultiScaleCrop", "RandomHorizontalFlip", "RandomApply",
                     "RandomGrayscale"]
    assert (ops[1].num_ops, ops[1].magnitude) == (2, 9)
    assert ops[2].scales == (1.0, 0.875, 0.75, 0.66)
    jitter = ops[4]
    assert jitter.p == 0.8 and isinstance(jitter.transforms[0], v2.ColorJitter)
    cj = jitter.transforms[0]
    assert (cj.brightness, cj.contrast, cj.saturation, cj.hue) == ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1))
    assert ops[5].p == 0.2 and ops[3].p == 0.5


def test_text4vis_and_evl_rand_augment(dataset, tmp_path) -> None:
    ops, _ = _ops(load_recipe("text4vis")(_config(dataset, tmp_path, "text4vis")))
    ra = [op for op in ops if isinstance(op, v2.RandAugment)]
    assert len(ra) == 1 and (ra[0].num_ops, ra[0].magnitude) == (2, 9)
    ops, _ = _ops(load_recipe("evl")(_config(dataset, tmp_path, "evl")))
    assert isinstance(ops[0], TimmRandAugment) and ops[0].spec == "rand-m7-n4-mstd0.5-inc1"
    assert not any(isinstance(op, v2.RandomHorizontalFlip) for op in ops)  # EVL never flips


@pytest.mark.parametrize("name", ["actionclip", "evl", "text4vis"])
def test_every_frame_gets_the_same_random_transform(dataset, tmp_path, name) -> None:
    _, transform = _ops(load_recipe(name)(_config(dataset, tmp_path, name)), size=96)
    g = torch.Generator().manual_seed(11)
    frame = torch.randint(0, 256, (1, 3, 120, 150), dtype=torch.uint8, generator=g)
    clip = frame.expand(4, -1, -1, -1).clone()
    changed = 0
    for seed in range(6):
        out = transform(clip, torch.Generator().manual_seed(seed))
        for t in range(1, 4):
            torch.testing.assert_close(out[t], out[0], rtol=0, atol=0)
        changed += int(not torch.equal(out[0], transform(clip, torch.Generator().manual_seed(seed + 100))[0]))
    assert changed >= 5  # the transform is random from clip to clip


def test_multi_scale_crop_boxes() -> None:
    crop = MultiScaleCrop(224)
    # Short side 256: sides 256, 224, 192, 168; aspect distortion at most one step.
    pairs = crop.candidates(256, 340)
    assert len(pairs) == 10 and (224, 256) in pairs and (168, 256) not in pairs
    offsets = crop.offsets(256, 340, 192, 224)
    assert len(offsets) == 13 and offsets[1] == (4 * 37, 0) and offsets[4] == (2 * 37, 2 * 8)
    clip = torch.arange(256 * 340, dtype=torch.float32).view(1, 1, 256, 340).expand(1, 3, -1, -1)
    torch.manual_seed(5)
    params = crop.make_params([clip])
    assert (params["width"], params["height"]) in pairs
    assert (params["left"], params["top"]) in crop.offsets(256, 340, params["width"], params["height"])


# ------------------------------------------------------- Text4Vis 5- and 10-crop testing


def _norm(x: torch.Tensor) -> torch.Tensor:
    return _normalize(x.float() / 255)


def test_five_and_ten_crops_at_text4vis_scale() -> None:
    clip = _known_frame()
    config = load_config(None, [])
    ten = video_data.eval_transform(config, "text4vis", 224, 10, CLIP_MEAN, CLIP_STD)(clip)
    five = video_data.eval_transform(config, "text4vis", 224, 5, CLIP_MEAN, CLIP_STD)(clip)
    assert ten.shape == (10, 2, 3, 224, 224) and five.shape == (5, 2, 3, 224, 224)
    resized = TF.resize(clip, [256], interpolation=v2.InterpolationMode.BICUBIC, antialias=True)  # 256 x 341
    torch.testing.assert_close(ten[0], _norm(resized[..., :224, :224]))  # top-left
    torch.testing.assert_close(ten[1], _norm(resized[..., :224, -224:]))  # top-right
    torch.testing.assert_close(ten[4], _norm(resized[..., 16:240, 58:282]))  # centre
    # torchvision mirrors the frame, then takes its five crops: crop 5 is the mirrored top-right
    # (Text4Vis lists the same ten views, each mirror next to its box; views are averaged).
    torch.testing.assert_close(ten[5], _norm(resized[..., :224, -224:].flip(-1)))
    torch.testing.assert_close(five, ten[:5])


def test_protocol_evaluation_uses_the_originals_test_input(dataset) -> None:
    from ovar.data.records import VideoRecord
    from ovar.protocols.sources import EvalSettings, eval_dataset
    from ovar.models.backbone import load_backbone

    backbone = load_backbone("tiny", None)  # 64 px input
    records = [VideoRecord("c0_0.mp4", 0, None)]
    settings = EvalSettings(root=dataset, views="1x1", frames=4)
    ac = eval_dataset(records, backbone, 4, settings, "actionclip")
    assert (ac.transform.short_side, ac.transform.size, ac.sampler.position) == (73, 64, "tsn_offset")
    clip = eval_dataset(records, backbone, 4, settings, None)
    assert (clip.transform.short_side, clip.sampler.position) == (64, "middle")
    custom = eval_dataset(records, backbone, 4, settings, "actionclip", "80/64", "start")
    assert (custom.transform.short_side, custom.sampler.position) == (80, "start")
