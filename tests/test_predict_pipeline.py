"""The predict pipeline: per-video decoding in workers, clips gathered into fixed-size batches."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ovar
import ovar.inference.loader as loader_module
from ovar.inference.batching import ClipSplitter, gather_clips
from ovar.models import load_model
from ovar.video import build_eval_transform, open_video, parse_sampling
from videogen import make_video

LABELS = ["archery", "juggling balls", "playing guitar", "riding a bike", "surfing water"]


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", "none")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, frames in enumerate((40, 30, 36, 24, 50)):
        make_video(root / f"v{i}.mp4", num_frames=frames, fps=20, size=(96 + 8 * i, 64))
    (root / "v2b_broken.mp4").write_bytes(b"not a video at all")
    return root


def _reference(model, path, views: str) -> list[float]:
    """One video scored alone: its own 2x3 or 1x1 views, encoded in one pass, fused the model's way."""
    temporal, spatial = (int(v) for v in views.split("x"))
    sampler = dataclasses.replace(parse_sampling("segment", frames=model.frames), num_clips=temporal)
    transform = build_eval_transform(model.image_size, crop="three" if spatial == 3 else "center",
                                     mean=model.backbone.mean, std=model.backbone.std)
    with open_video(path) as reader:
        n = reader.info.num_frames
        clips = torch.cat([transform(reader.get_frames(sampler(n, reader.info.fps, train=False, clip=c)))
                           for c in range(temporal)])
    classifier = model.classifier(LABELS)
    with torch.no_grad():
        embeddings = model.encode_video(clips)
    return ovar.inference.api.view_probabilities(model, embeddings, classifier).tolist()


@pytest.mark.parametrize("workers, batch_size, views", [(0, 5, "2x3"), (2, 4, "1x1")])
def test_scores_order_and_failures_do_not_depend_on_batching(model, folder, workers, batch_size, views):
    streamed = []
    results = ovar.predict(folder, LABELS, model=model, views=views, batch_size=batch_size, workers=workers,
                           on_result=streamed.append)
    names = sorted(p.name for p in folder.iterdir())
    assert [r.video.rsplit("/", 1)[-1] for r in results] == names
    assert [r.video for r in streamed] == [r.video for r in results]  # streamed in input order
    for result in results:
        if "broken" in result.video:
            assert result.error is not None and not result.predictions
            continue
        got = {p.label: p.score for p in result.predictions}
        expected = dict(zip(LABELS, _reference(model, result.video, views)))
        assert got == pytest.approx(expected, abs=1e-6)


def _run(items, batch_size):
    """gather_clips -> a stand-in encoder (x0.25) -> ClipSplitter, recording each batch's size."""
    seen, out = [], []
    splitter = ClipSplitter()
    for batch in gather_clips(items, batch_size):
        outputs = None if batch["video"] is None else batch["video"] * 0.25
        seen.append(0 if outputs is None else outputs.shape[0])
        out += [("error", key, message) for key, message in batch["errors"]]
        out += [("done", key, value, warning) for key, value, warning in splitter.split(batch["parts"], outputs)]
    assert not splitter.partial  # every video handed back
    return seen, out


def test_batches_are_cut_exactly_and_videos_come_back_whole():
    sizes = {10: 3, 11: 6, 12: 1, 13: 2}
    items = [(k, {"clips": torch.arange(n * 2, dtype=torch.float32).view(n, 2) + 100 * k,
                  "warning": "w" if k == 12 else None}) for k, n in sizes.items()]
    seen, out = _run(items, 4)
    assert seen == [4, 4, 4]  # 12 clips: three full passes, no remainder
    assert [entry[1] for entry in out] == [10, 11, 12, 13]  # in arrival order
    for _, key, value, warning in out:
        n = sizes[key]
        expected = (torch.arange(n * 2, dtype=torch.float32).view(n, 2) + 100 * key) * 0.25
        assert torch.equal(value, expected)  # its own clips, in order, across batch borders
        assert warning == ("w" if key == 12 else None)


def test_a_video_longer_than_two_batches_and_failures_in_between():
    items = [(7, {"clips": torch.ones(9, 2)}),
             (8, {"clips": None, "error": "broken"}),
             (9, {"clips": torch.full((2, 2), 3.0)})]
    seen, out = _run(items, 4)
    assert seen == [4, 4, 0, 3]  # the failure comes out as it arrives, with no forward pass
    assert out[0] == ("error", 8, "broken")
    assert [entry[1] for entry in out[1:]] == [7, 9]
    assert out[1][2].shape == (9, 2) and torch.equal(out[2][2], torch.full((2, 2), 0.75))


def test_segments_open_each_video_once_for_all_windows(model, folder, monkeypatch):
    import ovar.video.decode as decode_module

    opened = []
    real = decode_module._open_container

    def counting(path):
        opened.append(str(path))
        return real(path)

    monkeypatch.setattr(decode_module, "_open_container", counting)  # every file open, info reads too
    result = ovar.predict([folder / "v4.mp4"], LABELS, model=model, segments=0.5, workers=0)[0]
    assert len(result.segments) == 5  # 50 frames at 20 fps in 0.5 s windows
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0),
                                                            (2.0, 2.5)]
    assert opened == [str(folder / "v4.mp4")]  # the windows are measured and decoded in one open


def test_segments_in_workers_match_in_process(model, folder):
    videos = [folder / "v4.mp4", folder / "v2b_broken.mp4", folder / "v1.mp4"]
    runs = [ovar.predict(videos, LABELS, model=model, segments=0.5, workers=w, batch_size=3) for w in (0, 2)]
    for alone, spread in zip(*runs):
        assert alone.video == spread.video and alone.error == spread.error
        if alone.error is not None:
            assert "broken" in alone.video and not spread.segments
            continue
        assert len(alone.segments) == len(spread.segments) == {"v4.mp4": 5, "v1.mp4": 3}[alone.video.rsplit("/", 1)[-1]]
        for a, b in zip(alone.segments, spread.segments):
            assert (a.start, a.end) == (b.start, b.end)
            assert [p.score for p in a.predictions] == pytest.approx([p.score for p in b.predictions], abs=1e-6)
