"""VideoDataset + build_loader: bad videos, determinism, multi-view items, frame folders, sharding."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ovar.data.dataset import DatasetBrokenError, VideoDataset
from ovar.data.loader import FailureLog, ShardedSampler, build_loader, collate_videos, report_failures
from ovar.data.records import VideoRecord
from ovar.errors import VideoDecodeError
from ovar.video import ClipSampler, build_eval_transform, build_train_transform
from videogen import decode_all, frame_index_of, make_frame_folder, make_video

GOOD_FRAMES = [20, 27, 33, 40, 46, 52]  # one video per count; labels cycle over 3 classes
FOLDER_FRAMES = 16
BAD = {  # file name -> words its failure reason must contain
    "empty.mp4": "empty",
    "truncated.mp4": "truncated",
    "text.mp4": "not a video",
    "missing.mp4": "not found",
}
SIZE = 32


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    for i, n in enumerate(GOOD_FRAMES):
        make_video(folder / f"good{i}.mp4", num_frames=n, fps=24, size=(96, 64))
    make_frame_folder(folder / "frames", FOLDER_FRAMES, size=(96, 64))
    (folder / "empty.mp4").write_bytes(b"")
    whole = (folder / "good5.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # index (moov) at the end: cut off
    (folder / "text.mp4").write_text("this is not a video\n" * 20)
    return folder


def good_records() -> list[VideoRecord]:
    records = [VideoRecord(f"good{i}.mp4", i % 3) for i in range(len(GOOD_FRAMES))]
    return records + [VideoRecord("frames", 1, num_frames=999)]  # a wrong count the reader must not trust


def mixed_records() -> list[VideoRecord]:
    """Good and bad records interleaved, so bad ones land in several batches."""
    good, bad = good_records(), [VideoRecord(name, 2) for name in BAD]
    out = []
    for i, record in enumerate(good):
        out.append(record)
        if i < len(bad):
            out.append(bad[i])
    return out


def identity_train(clip: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keeps the frames readable by frame_index_of (a float copy of the clip)."""
    return clip.float()


class Replicate:
    """An evaluation 'transform' giving ``crops`` untouched copies, to read frame indices back."""

    def __init__(self, crops: int) -> None:
        self.num_crops = crops

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.stack([clip.float()] * self.num_crops)


def indices_of(clip: torch.Tensor) -> list[int]:
    return [frame_index_of(frame.to(torch.uint8)) for frame in clip]


def train_dataset(root: Path, records=None, **kw) -> VideoDataset:
    kw.setdefault("transform", build_train_transform(SIZE))
    return VideoDataset(records if records is not None else mixed_records(), root, ClipSampler("segment", 4),
                        train=True, seed=kw.pop("seed", 7), **kw)


def run_epochs(loader, epochs) -> list[dict]:
    batches = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        batches.extend(loader)
    return batches


# ---- bad videos ---------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_training_replaces_bad_videos_and_reports_each_once(root, workers, caplog):
    dataset = train_dataset(root)
    bad_index = {i for i, r in enumerate(dataset.records) if r.path in BAD}
    loader = build_loader(dataset, 3, workers=workers, shuffle=True, seed=1)
    with caplog.at_level(logging.WARNING, logger="ovar.data.loader"):
        batches = run_epochs(loader, [0, 1])

    seen = 0
    for batch in batches:
        b = len(batch["index"])
        assert batch["video"].shape == (b, 4, 3, SIZE, SIZE)
        assert batch["failed"] == []
        assert not set(batch["index"].tolist()) & bad_index  # replaced, never returned
        seen += b
    assert seen == 2 * len(dataset)  # nothing dropped: every bad item was replaced

    log = loader.failures
    expected = {str(root / name): words for name, words in BAD.items()}
    assert {f.path for f in log.as_list()} == set(expected)
    for failure in log.as_list():
        assert expected[failure.path] in failure.reason
    # Every bad index is requested once per epoch, plus any draws of it as a replacement.
    assert all(n >= 2 for n in log.counts().values())
    assert log.total == sum(len(b["failures"]) for b in batches)
    for path in expected:  # one log line per bad video, not per occurrence
        assert sum(path in rec.getMessage() for rec in caplog.records) == 1
    summary = log.summary()
    assert all(f"{path}: " in summary for path in expected)


@pytest.mark.parametrize("workers", [0, 2])
def test_evaluation_lists_bad_videos_and_excludes_them(root, workers):
    records = mixed_records()
    dataset = VideoDataset(records, root, ClipSampler("segment", 4), build_eval_transform(SIZE), train=False)
    loader = build_loader(dataset, 4, workers=workers, shuffle=False, seed=0)
    evaluated, failed, labels = [], [], []
    for batch in loader:
        assert batch["video"] is None or batch["video"].shape[1:] == (1, 4, 3, SIZE, SIZE)
        if batch["video"] is not None:
            assert len(batch["video"]) == len(batch["label"]) == len(batch["index"])
        evaluated += batch["index"].tolist()
        labels += batch["label"].tolist()
        failed += batch["failed"]
    good = [i for i, r in enumerate(records) if r.path not in BAD]
    assert evaluated == good  # each good video once, in order; the metrics see only these
    assert labels == [records[i].label for i in good]
    assert sorted(failed) == [i for i, r in enumerate(records) if r.path in BAD]
    listed = {f.path: f.reason for f in loader.failures.as_list()}
    assert set(listed) == {str(root / name) for name in BAD}
    assert all(n == 1 for n in loader.failures.counts().values())


def test_failed_item_without_loader(root):
    dataset = VideoDataset([VideoRecord("text.mp4", 4)], root, ClipSampler("segment", 4),
                           build_eval_transform(SIZE), train=False)
    item = dataset[0]
    assert item["video"] is None and item["label"] == 4
    assert item["failures"][0].path == str(root / "text.mp4")


@pytest.mark.parametrize("workers", [0, 2])
def test_strict_mode_raises(root, workers):
    train = train_dataset(root, strict=True)
    with pytest.raises(VideoDecodeError) as info:
        for _ in build_loader(train, 3, workers=workers, shuffle=False, seed=0):
            pass
    assert info.value.path in {str(root / name) for name in BAD}
    evaluation = VideoDataset(mixed_records(), root, ClipSampler("segment", 4), build_eval_transform(SIZE),
                              train=False, strict=True)
    with pytest.raises(VideoDecodeError, match="empty"):
        list(build_loader(evaluation, 2, workers=workers, shuffle=False, seed=0))


def test_strict_mode_raises_on_direct_access(root):
    dataset = train_dataset(root, records=[VideoRecord("good0.mp4", 0), VideoRecord("empty.mp4", 1)],
                            strict=True)
    assert dataset[0]["video"].shape == (4, 3, SIZE, SIZE)
    with pytest.raises(VideoDecodeError, match="empty file"):
        dataset[1]


@pytest.mark.parametrize("workers", [0, 2])
def test_gives_up_when_everything_fails(root, workers):
    dataset = train_dataset(root, records=[VideoRecord(name, 0) for name in BAD], max_failures=5)
    loader = build_loader(dataset, 2, workers=workers, shuffle=True, seed=0)
    for _ in range(2):  # the workers stopped with the error; a new pass starts fresh ones
        with pytest.raises(DatasetBrokenError, match="5 videos in a row"):
            list(loader)


# ---- determinism --------------------------------------------------------------------


def test_same_seed_and_epoch_give_identical_batches_with_any_workers(root):
    runs = {}
    for workers in (0, 2):
        loader = build_loader(train_dataset(root), 3, workers=workers, shuffle=True, seed=3)
        runs[workers] = run_epochs(loader, [0, 1])
    for a, b in zip(runs[0], runs[2], strict=True):
        assert torch.equal(a["index"], b["index"])
        assert torch.equal(a["video"], b["video"])
        assert a["failures"] == b["failures"]
    per_epoch = len(runs[0]) // 2
    first, second = runs[0][:per_epoch], runs[0][per_epoch:]
    assert [b["index"].tolist() for b in first] != [b["index"].tolist() for b in second]


def test_different_epoch_gives_different_clips(root):
    dataset = train_dataset(root, records=good_records(), transform=identity_train)
    n = GOOD_FRAMES[-1]  # good5.mp4
    clips = {}
    for epoch in range(4):
        frames = indices_of(dataset[(epoch, 5)]["video"])
        # Training segment sampling: frame k lies in segment k = [k*n//4, (k+1)*n//4).
        assert all(k * n // 4 <= f < (k + 1) * n // 4 for k, f in enumerate(frames))
        clips[epoch] = frames
    assert len({tuple(c) for c in clips.values()}) > 1
    dataset.set_epoch(2)
    assert indices_of(dataset[5]["video"]) == clips[2]  # dataset[i] follows set_epoch
    fresh = train_dataset(root, records=good_records(), transform=identity_train)
    assert indices_of(fresh[(2, 5)]["video"]) == clips[2]  # a new process/instance agrees
    other_seed = train_dataset(root, records=good_records(), transform=identity_train, seed=8)
    assert [indices_of(other_seed[(e, 5)]["video"]) for e in range(4)] != list(clips.values())


def test_augmentation_is_seeded(root):
    a, b = train_dataset(root, records=good_records()), train_dataset(root, records=good_records())
    assert torch.equal(a[(0, 2)]["video"], b[(0, 2)]["video"])
    assert not torch.equal(a[(0, 2)]["video"], a[(1, 2)]["video"])


# ---- multi-view evaluation and frame folders ----------------------------------------


def expected_test_clips(n: int, segments: int, clips: int) -> list[list[int]]:
    """Text4Vis test clips, written with numpy: start_c = int(linspace(0, n/T - 1, clips)[c])."""
    starts = np.linspace(0, n / segments - 1, clips).astype(int)
    return [[int(s + k * n / segments) for k in range(segments)] for s in starts]


def test_multi_view_item_shape_and_order(root):
    n = GOOD_FRAMES[3]
    expected = expected_test_clips(n, 4, 2)
    assert expected[0] != expected[1]
    record = [VideoRecord("good3.mp4", 2)]
    readable = VideoDataset(record, root, ClipSampler("segment", 4), Replicate(3), train=False, views=(2, 3))
    item = readable[0]
    assert item["video"].shape == (6, 4, 3, 64, 96) and item["label"] == 2
    for view in range(6):  # clip-major: views 0-2 are clip 0's crops, 3-5 clip 1's
        assert indices_of(item["video"][view]) == expected[view // 3]

    transform = build_eval_transform(64, crop="three")  # short side 64: crops only, no resize
    real = VideoDataset(record, root, ClipSampler("segment", 4), transform, train=False, views=(2, 3))
    video = real[0]["video"]
    assert video.shape == (6, 4, 3, 64, 64)
    frames = torch.from_numpy(np.stack(decode_all(root / "good3.mp4"))).permute(0, 3, 1, 2)
    for clip in range(2):
        crops = transform(frames[expected[clip]])
        for crop in range(3):
            assert torch.allclose(video[clip * 3 + crop], crops[crop])
    assert not torch.allclose(video[0], video[1])  # left and middle crops differ


def test_views_must_match_the_transform(root):
    with pytest.raises(ValueError, match="crops"):
        VideoDataset(good_records(), root, ClipSampler("segment", 4), build_eval_transform(SIZE, crop="three"),
                     train=False, views=(1, 1))
    with pytest.raises(ValueError, match="evaluation"):
        train_dataset(root, views=(2, 1))


def test_frame_folder_records_load(root):
    record = [VideoRecord("frames", 1, num_frames=999)]
    evaluation = VideoDataset(record, root, ClipSampler("segment", 4), Replicate(1), train=False)
    item = evaluation[0]
    assert item["failures"] == []
    # Middle frame of each of 4 segments of the 16 real images (not of the listed 999).
    assert indices_of(item["video"][0]) == [int((k + 0.5) * FOLDER_FRAMES / 4) for k in range(4)]
    train = VideoDataset(record, root, ClipSampler("dense", 4, stride=2), build_train_transform(SIZE), train=True)
    assert train[0]["video"].shape == (4, 3, SIZE, SIZE)


# ---- collate, failure log, sharding -------------------------------------------------


def test_collate_keeps_failed_items_out_of_the_tensor():
    ok = {"video": torch.ones(2, 3), "label": 1, "index": 0, "failures": [], "fatal": None}
    bad = {"video": None, "label": 0, "index": 1, "failures": [("x.mp4", "empty")], "fatal": None}
    batch = collate_videos([ok, bad, dict(ok, index=2)])
    assert batch["video"].shape == (2, 2, 3) and batch["index"].tolist() == [0, 2]
    assert batch["failed"] == [1] and batch["failures"] == [("x.mp4", "empty")]
    assert collate_videos([bad])["video"] is None
    assert batch["packed"] is False  # clips, not precomputed features


def test_collate_says_when_items_hold_precomputed_features():
    item = {"video": torch.full((5,), 0.25), "label": 2, "index": 3, "failures": [], "fatal": None, "packed": True}
    batch = collate_videos([item, dict(item, index=4)])
    assert batch["packed"] is True and batch["video"].shape == (2, 5)
    assert collate_videos([dict(item, video=None)])["packed"] is False  # nothing decoded: nothing packed


def test_failure_log_dedups_and_summarises(caplog):
    log = FailureLog("replaced")
    assert log.add([("b.mp4", "empty file"), ("a.mp4", "not found"), ("b.mp4", "empty file")]) == 2
    other = FailureLog("replaced")
    other.add([("c.mp4", "truncated")], log=False)
    log.merge(other)
    assert len(log) == 3 and log.total == 4
    assert log.counts() == {"a.mp4": 1, "b.mp4": 2, "c.mp4": 1}
    assert [f.path for f in log.as_list()] == ["a.mp4", "b.mp4", "c.mp4"]
    assert log.summary().splitlines() == ["3 videos could not be decoded (replaced, 4 times in all):",
                                          "  a.mp4: not found", "  b.mp4: empty file (x2)", "  c.mp4: truncated"]
    caplog.clear()  # add() above logged each new path
    assert report_failures(FailureLog()) == 0 and caplog.text == ""
    assert report_failures(log) == 3 and "b.mp4: empty file" in caplog.text


@pytest.mark.parametrize("n,world", [(10, 3), (7, 4), (3, 5), (12, 4)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_evaluation_shards_cover_every_video_once(n, world, shuffle):
    shards = [ShardedSampler(n, rank=r, world_size=world, shuffle=shuffle, seed=5).indices() for r in range(world)]
    flat = [i for shard in shards for i in shard]
    assert sorted(flat) == list(range(n))  # every video exactly once, no padding
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    if not shuffle:
        assert shards[1] == list(range(1, n, world))


@pytest.mark.parametrize("drop_last", [False, True])
def test_training_shards_are_equal_and_reshuffled(drop_last):
    n, world = 10, 3
    samplers = [ShardedSampler(n, rank=r, world_size=world, shuffle=True, seed=1, pad=True, drop_last=drop_last)
                for r in range(world)]
    shards = [s.indices() for s in samplers]
    size = n // world if drop_last else -(-n // world)
    assert [len(s) for s in shards] == [len(s) for s in samplers] == [size] * world
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == (size * world if drop_last else n)
    for s in samplers:
        s.set_epoch(1)
    assert [s.indices() for s in samplers] != shards


def _distributed_worker(rank: int, world: int, init: str, root: str, out: str) -> None:
    import torch.distributed as dist

    from ovar.data.loader import gather_failures

    # A forked child must not reuse the parent's OpenMP pool (it would hang): one thread.
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        dataset = VideoDataset(mixed_records(), root, ClipSampler("segment", 2), build_eval_transform(SIZE),
                               train=False)
        loader = build_loader(dataset, 2, workers=0, shuffle=False, seed=0)  # distributed detected
        seen = [i for batch in loader for i in batch["index"].tolist() + batch["failed"]]
        everything: list = [None] * world
        dist.all_gather_object(everything, seen)
        failures = gather_failures(loader.failures)
        if rank == 0:
            torch.save({"seen": everything, "failed": [f.path for f in failures.as_list()]}, out)
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_reads_every_video_once(root, tmp_path):
    import torch.multiprocessing as mp

    world, out = 2, tmp_path / "result.pt"
    mp.start_processes(_distributed_worker, args=(world, f"file://{tmp_path / 'pg'}", str(root), str(out)),
                       nprocs=world, start_method="fork")
    result = torch.load(out, weights_only=True)
    assert result["seen"][0] and result["seen"][1]
    assert sorted(result["seen"][0] + result["seen"][1]) == list(range(len(mixed_records())))
    assert result["failed"] == sorted(str(root / name) for name in BAD)
