"""EVL frozen-feature cache: hits, misses, invalidation, equality with uncached training."""

from __future__ import annotations

import numpy as np
import torch

from ovar.models.evl.feature_cache import FeatureCache, FeatureLayout
from ovar.train import train
from test_evl_recipe import dataset, evl_config, evl_recipe  # noqa: F401  (fixture)

LAYOUT = FeatureLayout(blocks=2, frames=2, tokens=5, width=8, heads=2)


def _opened(recipe):
    """``(trainer, train_set)`` with the feature cache opened as the engine opens it."""
    trainer = recipe.build_model()
    train_set = recipe.train_dataset(trainer)
    recipe.prepare(trainer, train_set)
    return trainer, train_set


def _records(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, LAYOUT.elements, generator=torch.Generator().manual_seed(seed))


def test_pack_unpack_round_trip():
    flat = _records(3)
    assert torch.equal(LAYOUT.pack(LAYOUT.unpack(flat)), flat)


def test_index_only_when_every_video_is_written(tmp_path):
    cache = FeatureCache(tmp_path, {"k": 1}, LAYOUT, num_videos=4, views=1, dtype="float32")
    recs = _records(4)
    cache.writer(0, rank=0).write([0, 1], [5, 6], recs[:2])
    assert not cache.finalize(0) and not cache.complete(0)
    cache.writer(0, rank=1).write([3, 2], [8, 7], recs[[3, 2]])  # another rank, own shard
    assert cache.finalize(0)
    fresh = FeatureCache(tmp_path, {"k": 1}, LAYOUT, num_videos=4, views=1, dtype="float32")
    assert fresh.complete(0)  # a hit from a new process
    for v in range(4):
        features, label = fresh.read(0, v)
        assert torch.equal(features, recs[v]) and label == 5 + v


def test_key_change_is_a_miss(tmp_path):
    a = FeatureCache(tmp_path, {"backbone": "aaa", "frames": 4}, LAYOUT, 1, 1)
    a.writer(0).write([0], [0], _records(1))
    assert a.finalize(0)
    assert not FeatureCache(tmp_path, {"backbone": "bbb", "frames": 4}, LAYOUT, 1, 1).complete(0)
    assert not FeatureCache(tmp_path, {"backbone": "aaa", "frames": 8}, LAYOUT, 1, 1).complete(0)
    assert FeatureCache(tmp_path, {"backbone": "aaa", "frames": 4}, LAYOUT, 1, 1).complete(0)


def test_half_precision_storage_and_torn_records(tmp_path):
    cache = FeatureCache(tmp_path, {}, LAYOUT, 2, 1)
    recs = _records(2)
    cache.writer(0).write([0, 1], [0, 0], recs)
    cache.close()
    with open(cache.directory / "v0-r0.jnl", "ab") as f:  # a journal entry past the shard's end
        f.write(np.array([1, 99, 0], dtype=np.int64).tobytes())
    assert cache.finalize(0)
    features, _ = cache.read(0, 1)
    assert features.dtype == torch.float16 and torch.allclose(features.float(), recs[1], atol=2e-3, rtol=1e-3)


def test_recipe_cache_hit_miss_and_invalidation(dataset, tmp_path):  # noqa: F811
    cache_dir = tmp_path / "cache"
    opts = ("recipe.cache.enabled=true", f"recipe.cache.dir={cache_dir}", "recipe.cache.views=1")
    recipe = evl_recipe(evl_config(dataset, tmp_path, *opts))
    cache = recipe.build_cache(batch_size=4)
    assert cache.complete(0)
    unprepared = recipe.train_dataset(recipe.build_model())
    assert unprepared.cache is None and unprepared[(5, 0)]["video"].dim() == 4  # clips until prepared
    torch.manual_seed(0)
    again = evl_recipe(evl_config(dataset, tmp_path, *opts))
    trainer, train_set = _opened(again)
    assert trainer.train_set is train_set
    assert train_set.cache.directory == cache.directory and train_set.cache.complete(0)
    assert train_set[(5, 0)]["video"].dim() == 1  # any epoch reads view 0 from disk
    for change in (("data.frames=2", "data.sampling=2x2"), ("data.sampling=4x3",)):  # new key -> miss
        other = evl_recipe(evl_config(dataset, tmp_path, *opts, *change))
        torch.manual_seed(0)
        _, other_set = _opened(other)
        assert other_set.cache.directory != cache.directory and not other_set.cache.complete(0)
    other = evl_recipe(evl_config(dataset, tmp_path, *opts))
    trainer = other.build_model()
    with torch.no_grad():  # other backbone weights -> another fingerprint
        trainer.model.video_encoder.backbone.visual.transformer.resblocks[0].mlp.c_fc.bias.add_(1e-3)
    other_set = other.train_dataset(trainer)
    other.prepare(trainer, other_set)
    assert other_set.cache.directory != cache.directory


def test_max_gb_disables_the_cache(dataset, tmp_path):  # noqa: F811
    import pytest

    recipe = evl_recipe(evl_config(dataset, tmp_path, "recipe.cache.enabled=true", "recipe.cache.max_gb=1e-9"))
    trainer = recipe.build_model()
    train_set = recipe.train_dataset(trainer)
    with pytest.warns(UserWarning, match="feature cache disabled"):
        recipe.prepare(trainer, train_set)
    assert train_set.cache is None and trainer.train_set is None
    assert train_set.views == 1  # the same views, without the cache


def test_cached_training_equals_uncached(dataset, tmp_path):  # noqa: F811
    common = ("eval.every_n_epochs=0", "schedule.epochs=4")
    plain = evl_config(dataset, tmp_path / "plain", *common, "recipe.fixed_views=2")
    a = train(plain, evl_recipe(plain)).model.state_dict()
    cached = evl_config(dataset, tmp_path / "cached", *common, "recipe.cache.enabled=true", "recipe.cache.views=2",
                        "recipe.cache.dtype=float32")
    trained = train(cached, evl_recipe(cached)).model
    b = trained.state_dict()
    assert trained.train_set.cache.complete(0) and trained.train_set.cache.complete(1)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    half = evl_config(dataset, tmp_path / "half", *common, "recipe.cache.enabled=true", "recipe.cache.views=2")
    c = train(half, evl_recipe(half)).model.state_dict()
    # fp16 storage: features differ by ~1e-3 relative, so weights agree loosely.
    assert all(torch.allclose(a[k], c[k], atol=5e-3, rtol=5e-2) for k in a)


def test_cache_build_command(dataset, tmp_path):  # noqa: F811
    """`ovar cache build` fills every view, and the recipe then finds the cache complete."""
    from ovar.cli import main

    cache_dir = tmp_path / "cache"
    opts = ["recipe.name=evl", "recipe.num_layers=2", "model.backbone=tiny", "model.pretrained=none",
            f"data.root={dataset}", f"data.train_list={dataset / 'train.txt'}",
            f"data.classes={dataset / 'classes.csv'}", "data.frames=4", "data.sampling=4x2", "data.workers=0",
            f"run.out_dir={tmp_path}", "run.device=cpu", "recipe.cache.enabled=true",
            f"recipe.cache.dir={cache_dir}", "recipe.cache.views=2"]
    (tmp_path / "c.yaml").write_text("{}\n")
    assert main(["cache", "build", "--config", str(tmp_path / "c.yaml"), *opts]) == 0
    _, train_set = _opened(evl_recipe(evl_config(dataset, tmp_path, *opts[12:])))
    assert train_set.cache.directory.parent == cache_dir
    assert train_set.cache.complete(0) and train_set.cache.complete(1)
