"""The evaluation core: metrics against brute-force definitions, view fusion against manual
computation, the resumable score store, and one list scored with a failing video."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ovar.errors import OvarError
from ovar.eval import compute_metrics, fuse_scores, harmonic_mean, mean_std, score_views
from ovar.eval.scores import ScoreStore, read_scores


def _brute_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """Interpolated AP by its definition: for each positive's recall level, the best
    precision reached at that recall or beyond, averaged."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    hits, points = 0, []
    for rank, i in enumerate(order, 1):
        hits += bool(positives[i])
        points.append((hits / positives.sum(), hits / rank))
    levels = [recall for (recall, _), i in zip(points, order) if positives[i]]
    return float(np.mean([max(p for r, p in points if r >= level) for level in levels]))


def test_metrics_match_their_definitions():
    gen = np.random.default_rng(0)
    scores = gen.normal(size=(40, 7))
    labels = gen.integers(0, 6, size=40)  # class 6 never occurs
    m = compute_metrics(torch.tensor(scores), torch.tensor(labels))
    ranks = np.argsort(-scores, axis=1)
    assert m.top1 == pytest.approx(100 * np.mean(ranks[:, 0] == labels))
    assert m.top5 == pytest.approx(100 * np.mean([l in r[:5] for r, l in zip(ranks, labels)]))
    confusion = np.zeros((7, 7), int)
    for l, p in zip(labels, ranks[:, 0]):
        confusion[l, p] += 1
    assert m.confusion == confusion.tolist()
    per_class = [100 * confusion[c, c] / confusion[c].sum() for c in range(6)]
    assert m.per_class_accuracy[:6] == pytest.approx(per_class) and m.per_class_accuracy[6] is None
    assert m.mean_class_accuracy == pytest.approx(np.mean(per_class))
    aps = [_brute_ap(scores[:, c], labels == c) for c in range(6)]
    assert m.mean_ap == pytest.approx(100 * np.mean(aps))


def test_perfect_scores_and_aggregates():
    labels = torch.tensor([0, 1, 2, 1])
    m = compute_metrics(torch.eye(3)[labels] * 5, labels)
    assert (m.top1, m.mean_class_accuracy, m.mean_ap) == (100.0, 100.0, 100.0)
    values = [61.2, 58.9, 63.4]
    assert mean_std(values) == pytest.approx((np.mean(values), np.std(values)))  # ddof=0
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0
    empty = compute_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert empty.num_videos == 0 and math.isnan(empty.top1)


class _Linear:
    """A stand-in video-text model: embeddings are the mean pixel per frame position."""

    def encode_video(self, clips):
        return clips.flatten(2).mean(-1)

    def class_logits(self, embeddings, classifier):
        return embeddings @ classifier.t()

    def probabilities(self, embeddings, classifier):
        return self.class_logits(embeddings, classifier).softmax(-1)


def test_fusion_rules():
    video = torch.randn(2, 3, 4, 3, 2, 2)  # B=2, V=3, T=4
    classifier = torch.randn(5, 4)
    model = _Linear()
    per_view = torch.stack([model.class_logits(model.encode_video(video[:, v]), classifier) for v in range(3)], 1)
    assert torch.allclose(score_views(model, video, classifier, "sum_logits"), per_view.sum(1), atol=1e-6)
    assert torch.allclose(score_views(model, video, classifier, "mean_logits"), per_view.mean(1), atol=1e-6)
    assert torch.allclose(score_views(model, video, classifier, "mean_softmax"), per_view.softmax(-1).mean(1),
                          atol=1e-6)
    features = torch.stack([model.encode_video(video[:, v]) for v in range(3)], 1).mean(1)
    assert torch.allclose(score_views(model, video, classifier, "features"),
                          model.probabilities(features, classifier), atol=1e-6)
    with pytest.raises(ValueError, match="unknown view fusion rule 'max'"):
        fuse_scores(per_view, "max")


def test_score_store_resumes_and_refuses_another_list(tmp_path):
    paths, labels, names = ["a.mp4", "b.mp4", "c.mp4"], [0, 1, 0], ["x", "y"]
    store = ScoreStore(tmp_path, paths, labels, names)
    store.add([0, 2], torch.tensor([[1.0, 0.0], [0.2, 0.8]]))
    store.flush()
    store.add([1], torch.tensor([[0.0, 1.0]]))  # never flushed: lost with the process
    store.add_failure(1, "broken")

    again = ScoreStore(tmp_path, paths, labels, names)
    assert again.done() == {0, 1, 2} and again.failure_list() == [("b.mp4", "broken")]
    assert sorted(again.scores) == [0, 2]
    partial = read_scores(tmp_path)
    assert partial["paths"] == ["a.mp4", "c.mp4"] and partial["labels"].tolist() == [0, 0]
    again.finish()
    final = read_scores(tmp_path / "scores.pt")
    assert torch.equal(final["scores"], torch.tensor([[1.0, 0.0], [0.2, 0.8]]))
    assert not list(tmp_path.glob("chunk_*.pt"))
    with pytest.raises(OvarError, match="another list"):
        ScoreStore(tmp_path, paths, labels, ["x", "z"])
    fresh = ScoreStore(tmp_path, paths, labels, ["x", "z"], resume=False)
    assert fresh.done() == set()


def test_evaluate_set_skips_an_undecodable_video(tmp_path, tiny_backbone):
    from ovar.data.records import VideoRecord
    from ovar.eval import ModelScorer, evaluate_set
    from ovar.protocols.sources import EvalSettings, eval_dataset
    from ovar.models.zero_shot import VideoTextModel
    from videogen import make_video

    for i in range(3):
        make_video(tmp_path / f"v{i}.mp4", num_frames=8 + 4 * i, fps=8, size=(64, 48))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    records = [VideoRecord(f"v{i}.mp4", i % 2) for i in range(3)] + [VideoRecord("bad.mp4", 1)]
    model = VideoTextModel(tiny_backbone, frames=4)
    settings = EvalSettings(root=tmp_path, views="2x1", frames=4, workers=0, batch_size=2)
    dataset = eval_dataset(records, tiny_backbone, 4, settings)
    result = evaluate_set(ModelScorer(model), dataset, ["walking", "jumping"], tmp_path / "out", batch_size=2,
                          workers=0, progress=False)
    assert result.num_videos == 3 and [f[0] for f in result.failures] == [str(tmp_path / "bad.mp4")]
    stored = read_scores(tmp_path / "out")
    assert stored["paths"] == [str(tmp_path / f"v{i}.mp4") for i in range(3)]
    # The stored scores are the model's: mean of the two clips' embeddings, then scored.
    item = dataset[1]["video"].unsqueeze(0)
    classifier = model.classifier(["walking", "jumping"])
    expected = score_views(model, item, classifier, "features")
    assert torch.allclose(stored["scores"][1], expected[0], atol=1e-5)
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert result.metrics.top1 == pytest.approx(
        100 * float((stored["scores"].argmax(1) == stored["labels"]).float().mean()))
