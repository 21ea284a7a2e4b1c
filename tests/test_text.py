"""Templates, label files, descriptions, and the cached text classifier."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ovar.errors import LabelError
from ovar.data import read_labels_file
from ovar.text import (TEMPLATE_SETS, TextEmbeddingCache, build_classifier, fill_prompts, parse_labels,
                       read_descriptions, resolve_templates)

NAMES = ["archery", "juggling balls", "surfing water"]


def test_builtin_template_sets():
    assert len(TEMPLATE_SETS["actionclip"]) == 16
    assert len(TEMPLATE_SETS["open_vclip"]) == 28
    assert TEMPLATE_SETS["froster"][-1] == "{}" and len(TEMPLATE_SETS["froster"]) == 29
    assert TEMPLATE_SETS["text4vis"] == ("a video of a person {}.",)
    assert "a video of a person {}." in TEMPLATE_SETS["open_vclip"]
    assert "a demonstration of {}." in TEMPLATE_SETS["open_vclip"]
    assert all(t.count("{}") == 1 for s in TEMPLATE_SETS.values() for t in s)


def test_resolve_templates(tmp_path):
    (tmp_path / "t.txt").write_text("a clip of {}\n\nsomeone {}\n")
    assert resolve_templates(str(tmp_path / "t.txt")) == ["a clip of {}", "someone {}"]
    assert resolve_templates(["x {}"]) == ["x {}"]
    assert resolve_templates("Open-VCLIP") == list(TEMPLATE_SETS["open_vclip"])
    with pytest.raises(LabelError, match="unknown template set"):
        resolve_templates("nonsense")
    (tmp_path / "bad.txt").write_text("no placeholder\n")
    with pytest.raises(LabelError, match="bad.txt"):
        resolve_templates(str(tmp_path / "bad.txt"))


def test_labels_parsing(tmp_path):
    assert parse_labels(" surfing, skiing ,dancing") == ["surfing", "skiing", "dancing"]
    for bad, message in [("", "empty"), ("a, , b", "empty name"), ("a, b, A", "duplicate")]:
        with pytest.raises(LabelError, match=message):
            parse_labels(bad)
    (tmp_path / "l.csv").write_text("id,name\n0,abseiling\n1,air drumming\n")
    (tmp_path / "l.json").write_text(json.dumps({"1": "b", "0": "a"}))
    (tmp_path / "l.txt").write_text("one\ntwo\n")
    (tmp_path / "gap.json").write_text(json.dumps({"0": "a", "2": "b"}))
    assert read_labels_file(tmp_path / "l.csv") == ["abseiling", "air drumming"]
    assert read_labels_file(tmp_path / "l.json") == ["a", "b"]
    assert read_labels_file(tmp_path / "l.txt") == ["one", "two"]
    with pytest.raises(LabelError, match="gap.json"):
        read_labels_file(tmp_path / "gap.json")
    with pytest.raises(LabelError, match="not found"):
        read_labels_file(tmp_path / "missing.txt")


def test_descriptions_and_prompt_filling(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"0": "Archery: shooting arrows at a target.", "1": "Surfing: riding waves."}))
    texts = read_descriptions(path)
    assert fill_prompts(["archery"], "a video of {}.") == ["a video of archery."]
    assert fill_prompts(["x", "y"], "a video of {}.", texts) == [
        "a video of Archery. Archery: shooting arrows at a target.", "a video of Surfing. Surfing: riding waves."]
    assert fill_prompts(["x", "y"], "{}", texts) == texts


def test_classifier_is_mean_of_unit_template_embeddings(tiny_backbone):
    templates = ["a photo of {}.", "a video of a person {}."]
    got = build_classifier(tiny_backbone, NAMES, templates, cache=False)
    with torch.no_grad():
        per_template = []
        for template in templates:
            tokens = tiny_backbone.tokenize([template.format(n) for n in NAMES])
            per_template.append(F.normalize(tiny_backbone.encode_text(tokens), dim=-1))
    expected = F.normalize(torch.stack(per_template).mean(0), dim=-1)
    assert got.shape == (3, tiny_backbone.embed_dim)
    assert torch.allclose(got, expected, atol=1e-6)


def test_cache_hit_and_miss(tiny_backbone, tmp_path, monkeypatch):
    cache = TextEmbeddingCache(tmp_path / "text")
    calls = []
    original = tiny_backbone.encode_text
    monkeypatch.setattr(tiny_backbone, "encode_text", lambda t: calls.append(len(t)) or original(t))

    first = build_classifier(tiny_backbone, NAMES, "text4vis", cache=cache)
    assert (cache.hits, cache.misses, len(calls)) == (0, 1, 1)
    again = build_classifier(tiny_backbone, NAMES, "text4vis", cache=cache)
    assert (cache.hits, len(calls)) == (1, 1) and torch.equal(first, again)

    # A new process: only the disk copy is left.
    fresh = TextEmbeddingCache(tmp_path / "text")
    from_disk = build_classifier(tiny_backbone, NAMES, "text4vis", cache=fresh)
    assert (fresh.hits, len(calls)) == (1, 1) and torch.equal(first, from_disk)

    build_classifier(tiny_backbone, NAMES + ["dancing"], "text4vis", cache=fresh)
    build_classifier(tiny_backbone, NAMES, "actionclip", cache=fresh)
    assert fresh.misses == 2 and len(calls) == 3


def test_cache_key_follows_weights(tiny_backbone, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "text")
    before = build_classifier(tiny_backbone, NAMES, "plain", cache=cache)
    old = tiny_backbone.fingerprint
    try:
        with torch.no_grad():
            tiny_backbone.clip.ln_final.bias.add_(0.5)
        assert tiny_backbone.fingerprint != old
        changed = build_classifier(tiny_backbone, NAMES, "plain", cache=cache)
        assert cache.misses == 2
        assert torch.allclose(changed, build_classifier(tiny_backbone, NAMES, "plain", cache=False))
        assert not torch.allclose(changed, before)
    finally:
        with torch.no_grad():
            tiny_backbone.clip.ln_final.bias.sub_(0.5)


def test_damaged_cache_entry_is_recomputed(tiny_backbone, tmp_path):
    cache = TextEmbeddingCache(tmp_path / "text")
    good = build_classifier(tiny_backbone, NAMES, "plain", cache=cache)
    for entry in (tmp_path / "text").glob("*.pt"):
        entry.write_bytes(b"garbage")
    again = build_classifier(tiny_backbone, NAMES, "plain", cache=TextEmbeddingCache(tmp_path / "text"))
    assert torch.allclose(good, again)
