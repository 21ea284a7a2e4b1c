"""The parts of `ovar serve` that need no server: request batching, the class-embedding
cache, and the command's own checks."""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from ovar.cli import main
from ovar.serve.batching import Batcher


def _encoder(calls: list[int]):
    def encode(clips: torch.Tensor) -> torch.Tensor:  # (N, T, 3, S, S) -> (N, 2), per clip
        calls.append(clips.shape[0])
        return torch.stack([clips.flatten(1).sum(1) * 0.25, clips.flatten(1).amax(1)], dim=1)
    return encode


def _clips(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_jobs_share_batches_up_to_max_batch():
    calls: list[int] = []
    batcher = Batcher(_encoder(calls), torch.device("cpu"), max_batch=4, wait_s=1.0)
    jobs = [_clips(1, 0), _clips(2, 1), _clips(2, 2)]
    try:
        futures = [batcher.submit(c) for c in jobs]  # queued within the first job's wait
        results = [f.result(timeout=30) for f in futures]
    finally:
        batcher.close()
    for clips, got in zip(jobs, results):
        assert torch.allclose(got, _encoder([])(clips))
    # 1 + 2 clips fit in 4; the third job would make 5, so it starts the next batch.
    assert calls == [3, 2]
    assert batcher.stats.to_dict() == {"batches": 2, "jobs": 3, "clips": 5, "largest_batch_jobs": 2}


def test_a_job_larger_than_max_batch_runs_in_chunks():
    calls: list[int] = []
    batcher = Batcher(_encoder(calls), torch.device("cpu"), max_batch=4, wait_s=0.0)
    try:
        clips = _clips(7, 3)
        got = batcher.submit(clips).result(timeout=30)
    finally:
        batcher.close()
    assert calls == [4, 3] and torch.allclose(got, _encoder([])(clips))


def test_a_failing_batch_fails_its_requests_only():
    def encode(clips: torch.Tensor) -> torch.Tensor:
        if clips.shape[0] == 3:
            raise RuntimeError("out of memory")
        return clips.flatten(1)[:, :2]

    batcher = Batcher(encode, torch.device("cpu"), max_batch=8, wait_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.submit(_clips(3, 4)).result(timeout=30)
        assert batcher.submit(_clips(2, 5)).result(timeout=30).shape == (2, 2)  # the worker lives on
    finally:
        batcher.close()


def test_the_precision_reaches_the_encoder_and_embeddings_come_back_fp32():
    layer = torch.nn.Linear(96, 2)
    seen: list[torch.dtype] = []

    def encode(clips: torch.Tensor) -> torch.Tensor:
        out = layer(clips.flatten(1) * 0.25)
        seen.append(out.dtype)
        return out

    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        batcher = Batcher(encode, torch.device("cpu"), max_batch=4, wait_s=0.0, precision=precision)
        try:
            got = batcher.submit(_clips(3, 6)).result(timeout=30)
        finally:
            batcher.close()
        assert seen[-1] == dtype and got.dtype == torch.float32 and not got.requires_grad


def test_classifier_cache_builds_each_label_set_once(tiny_backbone):
    from ovar.models.zero_shot import VideoTextModel
    from ovar.serve.service import ClassifierCache

    model = VideoTextModel(tiny_backbone)
    cache = ClassifierCache(model, capacity=2)
    first = ["surfing", "skiing"]
    threads = [threading.Thread(target=cache.get, args=(first,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert (cache.hits, cache.misses) == (3, 1)
    assert torch.equal(cache.get(first), model.classifier(first))
    cache.get(["a", "b"])
    cache.get(["c", "d"])  # capacity 2: the least recently used set (first) goes
    cache.get(first)
    assert cache.misses == 4


def test_serve_command_checks(tmp_path, monkeypatch, capsys):
    pytest.importorskip("fastapi", reason="the option checks run once the serve extra is found")
    pytest.importorskip("uvicorn", reason="the option checks run once the serve extra is found")
    assert main(["serve", "--model", "tiny", "--pretrained", "none", "--root", str(tmp_path / "nope")]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny", "--pretrained", "none", "--label-set", "k400"]) == 2
    assert "expected NAME=FILE" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    assert main(["serve", "--model", "tiny", "--pretrained", "none"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'ovar[serve]'" in err and len(err.strip().splitlines()) == 1
