"""Every cache returns what the same computation gives without it, whatever input changes.

Text classifiers (plain and ActionCLIP's per-template) and EVL's frozen-feature cache are
filled once, then asked again after one input changes (weights, structure, templates,
descriptions; seed, shot, frames, sampling). Each answer must equal the cache-less one,
so a key that ignores an input fails here.
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from ovar.eval.scorers import ModelScorer
from ovar.models import load_backbone
from ovar.models.actionclip import ActionCLIPModel
from ovar.models.backbone import ClipBackbone
from ovar.models.content_hash import module_digest, text_tower_digest
from ovar.models.evl.feature_cache import weights_fingerprint
from ovar.models.model_file import load_model_file, save_model_file
from ovar.models.open_vclip import FrosterModel
from ovar.hub import load_model
from ovar.text.classifier import TextEmbeddingCache, build_classifier, default_cache
from ovar.train import train
from test_evl_recipe import CLASSES, dataset, evl_config, evl_recipe  # noqa: F401  (fixture)

NAMES = ["archery", "surfing water", "playing guitar"]
TEMPLATES = ["a video of {}.", "{}, in a clip"]
DESCRIPTIONS = ["Archery: shooting arrows at a target", "Surfing water: riding a wave on a board",
                "Playing guitar: strumming the strings"]
TIGHT = dict(atol=1e-6, rtol=0.0)


def _perturb(tensor: torch.Tensor, seed: int, scale: float = 0.05) -> None:
    noise = torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        tensor.add_(scale * noise.to(tensor.dtype))


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape != b.shape or (a.float() - b.float()).abs().max().item() > 1e-4


def _param(backbone: ClipBackbone, name: str) -> torch.Tensor:
    return dict(backbone.clip.named_parameters())[name]


def _gelu_twin(backbone: ClipBackbone) -> ClipBackbone:
    """The same weights in a CLIP built with GELU instead of QuickGELU."""
    clip = open_clip.model.CLIP(**{**open_clip.get_model_config("tiny"), "quick_gelu": False})
    clip.load_state_dict(backbone.clip.state_dict())
    return ClipBackbone(clip, name="tiny", pretrained="none").eval()


# Each variant: (backbone edit or replacement, names, templates, descriptions). One input changes at a time.
def _variants():
    def edit(name, seed):
        return lambda b: (_perturb(_param(b, name), seed), b)[1]

    return {
        "base": (None, NAMES, TEMPLATES, None),
        "names": (None, NAMES[::-1], TEMPLATES, None),
        "templates": (None, NAMES, ["footage of {}", "{}, in a clip"], None),
        "descriptions": (None, NAMES, TEMPLATES, DESCRIPTIONS),
        "other descriptions": (None, NAMES, TEMPLATES, [d.replace("a ", "the ") for d in DESCRIPTIONS]),
        "token embedding": (edit("token_embedding.weight", 1), NAMES, TEMPLATES, None),
        "text block": (edit("transformer.resblocks.1.mlp.c_fc.weight", 3), NAMES, TEMPLATES, None),
        "text projection": (edit("text_projection", 5), NAMES, TEMPLATES, None),
        "activation": (_gelu_twin, NAMES, TEMPLATES, None),
    }


def _encode(kind: str, backbone: ClipBackbone, names, templates, descriptions, cache) -> torch.Tensor:
    if kind == "per-template":
        return ActionCLIPModel(backbone, fusion="meanP", frames=2).classifier(
            names, templates, descriptions=descriptions, cache=cache)
    return build_classifier(backbone, names, templates, descriptions=descriptions, cache=cache)


# ActionCLIP's per-template classifier shares the key function: a few inputs suffice there.
@pytest.mark.parametrize("kind, labels", [("mean", None), ("per-template", ["base", "templates", "descriptions",
                                                                            "text block"])])
def test_text_cache_equals_uncached_for_every_input(kind, labels, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "text")
    base = load_backbone("tiny", "none")
    seen: dict[str, torch.Tensor] = {}
    for label, (change, names, templates, descriptions) in _variants().items():
        if labels is not None and label not in labels:
            continue
        backbone = load_backbone("tiny", "none") if change is None else change(load_backbone("tiny", "none"))
        # Edits are in place on a model built from the same source: nothing but the content tells them apart.
        cached = _encode(kind, backbone, names, templates, descriptions, cache)
        uncached = _encode(kind, backbone, names, templates, descriptions, False)
        assert torch.allclose(cached, uncached, **TIGHT), label
        assert all(_differ(uncached, other) for other in seen.values()), f"{label} changes nothing"
        seen[label] = uncached
    assert cache.hits == 0 and cache.misses == len(seen)
    # Asked again from disk (a new process): every entry is a hit and still the right one.
    fresh = TextEmbeddingCache(tmp_path / "text")
    assert torch.allclose(_encode(kind, base, NAMES, TEMPLATES, None, fresh), seen["base"], **TIGHT)
    assert fresh.hits == 1


def test_image_tower_and_temperature_do_not_change_text_keys(tmp_path):
    """What the embeddings do not depend on stays out of the key: a hit, and still correct."""
    cache = TextEmbeddingCache(tmp_path / "text")
    first = build_classifier(load_backbone("tiny", "none"), NAMES, TEMPLATES, cache=cache)
    other = load_backbone("tiny", "none")
    _perturb(_param(other, "visual.conv1.weight"), 6)
    with torch.no_grad():
        other.clip.logit_scale.fill_(2.75)
    again = build_classifier(other, NAMES, TEMPLATES, cache=cache)
    assert cache.hits == 1 and torch.allclose(again, build_classifier(other, NAMES, TEMPLATES, cache=False), **TIGHT)
    assert torch.allclose(again, first, **TIGHT)


def test_training_in_place_changes_the_key(tmp_path):
    """An optimiser step on the text tower (no one refreshes anything) gives a miss."""
    backbone = load_backbone("tiny", "none")
    cache = TextEmbeddingCache(tmp_path / "text")
    before = build_classifier(backbone, NAMES, TEMPLATES, cache=cache)
    text = [p for n, p in backbone.clip.named_parameters() if not n.startswith("visual.")]
    optimizer = torch.optim.SGD(text, lr=0.25)
    tokens = backbone.tokenize(NAMES)
    backbone.encode_text(tokens).pow(2).sum().backward()
    optimizer.step()
    after = build_classifier(backbone, NAMES, TEMPLATES, cache=cache)
    assert cache.misses == 2 and _differ(after, before)
    assert torch.allclose(after, build_classifier(backbone, NAMES, TEMPLATES, cache=False), **TIGHT)


@pytest.mark.parametrize("model_class", [ActionCLIPModel, FrosterModel])
def test_checkpoints_differing_only_in_text_tower(model_class, tmp_path):
    """Two trained checkpoints from the same CLIP: each scored with its own text tower."""
    args = {"frames": 2, "templates": TEMPLATES, **({"fusion": "meanP"} if model_class is ActionCLIPModel else {})}
    first = model_class(load_backbone("tiny", "none"), **args)
    second = model_class(load_backbone("tiny", "none"), **args)
    _perturb(_param(second.backbone, "transformer.resblocks.0.attn.in_proj_weight"), 7)
    _perturb(_param(second.backbone, "text_projection"), 8)
    paths = [save_model_file(tmp_path / "a.pt", first), save_model_file(tmp_path / "b.pt", second)]
    size = first.backbone.image_size
    video = torch.randn(2, 2, 2, 3, size, size, generator=torch.Generator().manual_seed(9))
    store = default_cache()
    results = []
    for path in paths + paths:  # the second round is answered by the cache
        model = load_model(checkpoint=path)
        scorer = ModelScorer(model)
        classifier = scorer.classifier(NAMES)
        reference = model.classifier(NAMES, cache=False)
        assert torch.allclose(classifier, reference, **TIGHT), path.name
        scores = scorer.score(video, classifier)
        assert torch.allclose(scores, scorer.score(video, reference), **TIGHT), path.name
        results.append((classifier, scores))
    assert store.hits >= 2
    assert _differ(results[0][0], results[1][0]) and _differ(results[0][1], results[1][1])
    visual = [dict(load_model_file(p).backbone.clip.visual.named_parameters()) for p in paths]
    assert all(torch.equal(visual[0][k], visual[1][k]) for k in visual[0])  # only the text towers differ


def _actionclip_config(root, out, *extra):
    from ovar.config import load_config

    return load_config(None, [
        "recipe.name=actionclip", "recipe.fusion=meanP", "model.backbone=tiny", "model.pretrained=none",
        f"data.root={root}", f"data.train_list={root / 'train.txt'}", f"data.classes={root / 'classes.csv'}",
        "data.frames=2", "data.batch_size=3", "data.workers=0", "schedule.epochs=1", "schedule.warmup_epochs=0",
        "optim.lr=1e-2", "optim.backbone_lr_ratio=1.0", "eval.every_n_epochs=0", f"run.out_dir={out}",
        "run.device=cpu", *extra])


def test_trained_model_file_does_not_reuse_pretrained_text(dataset, tmp_path):  # noqa: F811
    from ovar.recipes import get_recipe
    from ovar.train import train

    config = _actionclip_config(dataset, tmp_path / "run")
    train(config, get_recipe("actionclip")(config))
    trained = load_model(checkpoint=tmp_path / "run")
    pretrained = ActionCLIPModel(load_backbone("tiny", "none"), fusion="meanP", frames=2)
    # The shared cache first gets the pretrained text tower's embeddings of the same texts.
    before = pretrained.classifier(CLASSES, trained.templates)
    reference = trained.classifier(CLASSES, cache=False)
    assert _differ(reference, before)  # the text tower did train
    assert torch.allclose(trained.classifier(CLASSES), reference, **TIGHT)
    assert torch.allclose(ModelScorer(trained).classifier(CLASSES), reference, **TIGHT)


def test_digests_cover_weights_and_structure():
    backbone = load_backbone("tiny", "none")
    twin = _gelu_twin(backbone)
    assert module_digest(backbone.clip.visual) != module_digest(twin.clip.visual)  # same weights, other activation
    assert text_tower_digest(backbone.clip) != text_tower_digest(twin.clip)
    assert backbone.fingerprint == load_backbone("tiny", "none").fingerprint
    before = backbone.fingerprint
    with torch.no_grad():
        backbone.clip.positional_embedding.data.mul_(1.25)  # through .data: no version counter sees it
    assert backbone.fingerprint != before


# --- EVL's frozen-feature cache --------------------------------------------------------------

def _opened(recipe):
    """``(trainer, train_set)`` with the feature cache opened as the engine opens it."""
    trainer = recipe.build_model()
    train_set = recipe.train_dataset(trainer)
    recipe.prepare(trainer, train_set)
    return trainer, train_set


def _evl_features(trainer, train_set, view: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cached, uncached) packed features of every training video in ``view``: read from
    ``train_set``'s complete cache, and computed by ``trainer``'s image tower."""
    assert train_set.cache.complete(view)
    cached = torch.stack([train_set[(view, i)]["video"] for i in range(len(train_set))]).float()
    with torch.no_grad():
        clips = torch.stack([train_set.base[(view, i)]["video"] for i in range(len(train_set))])
        uncached = trainer.layout.pack(trainer.model.video_encoder.block_features(clips))
    return cached, uncached


@pytest.fixture(scope="module")
def other_visual_weights(tmp_path_factory):
    """A tiny CLIP file whose image tower differs from ``pretrained=none`` (text tower equal)."""
    backbone = load_backbone("tiny", "none")
    _perturb(_param(backbone, "visual.transformer.resblocks.0.attn.in_proj_weight"), 10)
    path = tmp_path_factory.mktemp("weights") / "other_visual.pt"
    torch.save(backbone.clip.state_dict(), path)
    return path


def test_evl_cache_equals_uncached_for_every_input(dataset, other_visual_weights, tmp_path):  # noqa: F811
    cache_dir = tmp_path / "cache"
    common = ("recipe.cache.enabled=true", f"recipe.cache.dir={cache_dir}", "recipe.cache.views=1",
              "recipe.cache.dtype=float32")
    variants = {"base": (), "seed": ("data.seed=3",), "shot": ("data.shot=1",),
                "frames": ("data.frames=2", "data.sampling=2x2"), "sampling": ("data.sampling=4x3",),
                "weights": (f"model.pretrained={other_visual_weights}",)}
    seen: dict[str, torch.Tensor] = {}
    for label, change in variants.items():
        recipe = evl_recipe(evl_config(dataset, tmp_path / label, *common, *change))
        recipe.build_cache(batch_size=6)  # a no-op when the key matches an earlier variant's
        cached, uncached = _evl_features(*_opened(recipe), view=0)
        assert torch.allclose(cached, uncached, atol=1e-5, rtol=1e-5), label
        assert all(_differ(uncached, other) for other in seen.values()), f"{label} changes nothing"
        seen[label] = uncached
    assert len({p.name for p in cache_dir.iterdir()}) == len(variants)


def test_evl_cache_is_keyed_by_the_weights_training_starts_from(dataset, tmp_path):  # noqa: F811
    """run.resume loads a checkpoint before the engine prepares the recipe: weights changed by
    then get a cache of their own, which stores the features those weights compute."""
    opts = ("recipe.cache.enabled=true", f"recipe.cache.dir={tmp_path}/c", "recipe.cache.dtype=float32")
    _, plain_set = _opened(evl_recipe(evl_config(dataset, tmp_path, *opts)))
    recipe = evl_recipe(evl_config(dataset, tmp_path, *opts))
    trainer = recipe.build_model()
    train_set = recipe.train_dataset(trainer)
    visual = trainer.model.video_encoder.backbone.visual
    _perturb(visual.conv1.weight, 11)  # what loading another backbone's checkpoint does
    recipe.prepare(trainer, train_set)
    assert trainer.train_set is train_set
    assert train_set.cache.directory != plain_set.cache.directory
    assert train_set.cache.key["backbone"] == weights_fingerprint(visual) != plain_set.cache.key["backbone"]
    items = [train_set[i] for i in range(len(train_set))]
    batch = {"video": torch.stack([it["video"] for it in items]), "label": torch.tensor([it["label"] for it in items]),
             "index": torch.arange(len(items))}
    assert torch.isfinite(recipe.training_step(trainer, batch)["loss"])
    assert train_set.cache.finalize(0)
    assert not any(plain_set.cache.directory.glob("*.bin"))  # nothing was stored under the other key
    cached, uncached = _evl_features(trainer, train_set, view=0)
    assert torch.allclose(cached, uncached, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        clips = torch.stack([it["video"] for it in items])
        unperturbed = _opened(evl_recipe(evl_config(dataset, tmp_path, *opts)))[0]
        other = unperturbed.layout.pack(unperturbed.model.video_encoder.block_features(clips))
    assert _differ(cached, other)  # the perturbation reaches the features


def test_evl_resumed_run_caches_the_resumed_weights_features(dataset, tmp_path):  # noqa: F811
    """Through the engine: a run resumed from a checkpoint whose frozen image tower differs
    fills a cache keyed by the resumed weights, with the features those weights compute."""
    cache_dir = tmp_path / "c"
    opts = ("recipe.cache.enabled=true", f"recipe.cache.dir={cache_dir}", "recipe.cache.views=2",
            "recipe.cache.dtype=float32", "eval.every_n_epochs=0", "schedule.epochs=2")
    config = evl_config(dataset, tmp_path / "run", *opts)
    first = train(config, evl_recipe(config), stop_after_epoch=1)
    first_cache = first.model.train_set.cache
    assert first_cache.finalize(0) and not first_cache.complete(1)  # epoch 1 filled view 0
    path = tmp_path / "run" / "checkpoints" / "epoch_0001.pt"
    state = torch.load(path, weights_only=True)
    names = [k for k in state["model"] if k.endswith("visual.conv1.weight")]
    assert names
    for name in names:  # one tensor under every name it is saved with
        _perturb(state["model"][name], 12)
    torch.save(state, path)
    config = evl_config(dataset, tmp_path / "run", *opts, f"run.resume={path}")
    resumed = train(config, evl_recipe(config))
    assert resumed.completed
    trainer, train_set = resumed.model, resumed.model.train_set
    visual = trainer.model.video_encoder.backbone.visual
    assert torch.equal(visual.conv1.weight, state["model"][names[0]])
    assert train_set.cache.key["backbone"] == weights_fingerprint(visual) != first_cache.key["backbone"]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([first_cache.directory.name,
                                                                   train_set.cache.directory.name])
    assert not first_cache.complete(1) and not any(first_cache.directory.glob("v1-*"))
    assert train_set.cache.finalize(1)  # epoch 2 filled view 1
    cached, uncached = _evl_features(trainer, train_set, view=1)
    assert torch.allclose(cached, uncached, atol=1e-5, rtol=1e-5)
