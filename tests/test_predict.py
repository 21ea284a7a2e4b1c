"""ovar.predict end to end on generated videos with the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ovar
from ovar.errors import LabelError, VideoDecodeError
from ovar.models import load_model
from ovar.video import build_eval_transform, open_video, segment_indices
from videogen import make_frame_folder, make_video

LABELS = ["archery", "juggling balls", "playing guitar", "riding a bike", "surfing water"]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", "none")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    make_video(folder / "a.mp4", num_frames=40, fps=20, size=(96, 64))
    make_video(folder / "b.avi", num_frames=30, fps=25, size=(80, 60), codec="mpeg4")
    make_frame_folder(folder / "c_frames", 12)
    return folder


def test_single_video_ranking(model, clips):
    result = ovar.predict(clips / "a.mp4", LABELS, model=model)
    assert isinstance(result, ovar.VideoPrediction) and result.error is None
    scores = [p.score for p in result.predictions]
    assert sorted(p.label for p in result.predictions) == sorted(LABELS)
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, abs_tol=1e-5)


def test_scores_match_an_independent_computation(model, clips):
    """Middle frame of 8 segments, CLIP preprocessing, mean of unit frame embeddings, softmax."""
    result = ovar.predict(clips / "a.mp4", LABELS, model=model, templates="plain")
    with open_video(clips / "a.mp4") as reader:
        n = reader.info.num_frames
        frames = reader.get_frames([int(n / 8 * (k + 0.5)) for k in range(8)])
    clip = build_eval_transform(64, mean=model.backbone.mean, std=model.backbone.std)(frames)[0]
    with torch.no_grad():
        video = F.normalize(model.backbone.encode_image(clip), dim=-1).mean(0)
        text = F.normalize(model.backbone.encode_text(model.backbone.tokenize(LABELS)), dim=-1)
        probs = (model.backbone.logit_scale * F.normalize(video, dim=-1) @ text.t()).softmax(-1)
    assert segment_indices(n, 8, train=False) == [int(n / 8 * (k + 0.5)) for k in range(8)]
    got = {p.label: p.score for p in result.predictions}
    for label, p in zip(LABELS, probs.tolist()):
        assert got[label] == pytest.approx(p, abs=1e-5)


def test_batch_of_paths_and_folder(model, clips):
    results = ovar.predict(clips, LABELS, model=model, top_k=2)
    assert [r.video for r in results] == [str(clips / "a.mp4"), str(clips / "b.avi"), str(clips / "c_frames")]
    assert all(r.error is None and len(r.predictions) == 2 for r in results)
    single = ovar.predict(clips / "b.avi", LABELS, model=model, top_k=2)
    assert single.predictions[0].label == results[1].predictions[0].label
    assert single.predictions[0].score == pytest.approx(results[1].predictions[0].score, abs=1e-5)


def test_bad_file_in_batch_is_reported_and_skipped(model, clips, tmp_path):
    (tmp_path / "good.mp4").write_bytes((clips / "a.mp4").read_bytes())
    (tmp_path / "broken.mp4").write_text("this is not a video")
    results = ovar.predict(tmp_path, LABELS, model=model, workers=0)
    by_name = {r.video.rsplit("/", 1)[-1]: r for r in results}
    assert by_name["broken.mp4"].error and not by_name["broken.mp4"].predictions
    assert by_name["good.mp4"].error is None and by_name["good.mp4"].predictions


def test_single_bad_video_raises(model, tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="x.mp4"):
        ovar.predict(tmp_path / "x.mp4", LABELS, model=model)


def test_multi_view_and_dense_sampling(model, clips):
    one = ovar.predict(clips / "a.mp4", LABELS, model=model, views="1x1", sampling="dense", frames=4)
    many = ovar.predict(clips / "a.mp4", LABELS, model=model, views="3x3", sampling="4x4")
    for result in (one, many):
        assert math.isclose(sum(p.score for p in result.predictions), 1.0, abs_tol=1e-5)
    assert [p.score for p in one.predictions] != [p.score for p in many.predictions]
    # One dense clip of 4 frames 16 apart (clamped), centred; the probabilities by hand.
    from ovar.video import dense_indices

    with open_video(clips / "a.mp4") as reader:
        frames = reader.get_frames(dense_indices(reader.info.num_frames, 4, 16, train=False))
    clip = build_eval_transform(64, mean=model.backbone.mean, std=model.backbone.std)(frames)[0]
    with torch.no_grad():
        video = F.normalize(F.normalize(model.backbone.encode_image(clip), dim=-1).mean(0), dim=-1)
        text = model.classifier(LABELS, cache=False)  # the default templates' mean (tested in test_text)
    got = {p.label: p.score for p in one.predictions}
    assert [got[label] for label in LABELS] == pytest.approx((model.backbone.logit_scale * video @ text.t())
                                                             .softmax(-1).tolist(), abs=1e-5)


def test_segments_cover_the_video(model, clips):
    result = ovar.predict(clips / "a.mp4", LABELS, model=model, segments=0.5)  # 40 frames at 20 fps
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]
    mean = torch.tensor([[next(p.score for p in s.predictions if p.label == name) for name in LABELS]
                         for s in result.segments]).mean(0)
    overall = {p.label: p.score for p in result.predictions}
    assert all(overall[name] == pytest.approx(float(m), abs=1e-5) for name, m in zip(LABELS, mean))


def test_descriptions_give_labels(model, clips, tmp_path):
    import json

    path = tmp_path / "d.json"
    path.write_text(json.dumps({"0": "Archery: shooting arrows.", "1": "Surfing: riding waves."}))
    result = ovar.predict(clips / "a.mp4", model=model, descriptions=path)
    assert sorted(p.label for p in result.predictions) == ["Archery", "Surfing"]


@pytest.mark.parametrize("labels", [[], ["a", "a"], ["a", " "]])
def test_bad_labels(model, clips, labels):
    with pytest.raises(LabelError):
        ovar.predict(clips / "a.mp4", labels, model=model)
