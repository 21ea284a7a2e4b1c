"""Clips per forward pass chosen from the device when predict is not told."""

from __future__ import annotations

import pytest
import torch

import ovar
from ovar.inference.batch_size import (CPU_BATCH, CUDA_MAX_BATCH, OTHER_BATCH, batch_for_memory,
                                       default_batch_size)
from ovar.models import load_model
from videogen import make_video

GIB, MIB = 2**30, 2**20


def test_batch_follows_free_memory():
    # Half of 10 GiB free holds 17 clips of 300 MiB (17.07).
    assert batch_for_memory(10 * GIB, 300 * MIB) == 17
    assert batch_for_memory(10 * GIB, 300 * MIB, share=0.25) == 8  # 8.53
    assert batch_for_memory(100 * MIB, 300 * MIB) == 1  # never below one clip
    assert batch_for_memory(140 * GIB, 75 * MIB) == CUDA_MAX_BATCH  # capped
    assert batch_for_memory(140 * GIB, 75 * MIB, cap=500) == 500 > CUDA_MAX_BATCH
    assert batch_for_memory(GIB, 0) == CUDA_MAX_BATCH


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", "none")


def test_fixed_batches_where_memory_cannot_be_asked(model):
    assert default_batch_size(model, 8, torch.device("cpu")) == CPU_BATCH
    assert default_batch_size(model, 8, torch.device("mps")) == OTHER_BATCH  # not touched: no probe


def test_predict_on_cpu_uses_the_cpu_batch(model, tmp_path, monkeypatch):
    path = make_video(tmp_path / "v.mp4", num_frames=30, fps=10)
    passes: list[int] = []
    real = model.encode_video

    def recording(clips):
        passes.append(clips.shape[0])
        return real(clips)

    monkeypatch.setattr(model, "encode_video", recording)
    labels = ["archery", "surfing water", "juggling"]
    auto = ovar.predict(path, labels, model=model, views="5x3")  # 15 clips
    assert passes == [CPU_BATCH, 15 - CPU_BATCH]
    passes.clear()
    told = ovar.predict(path, labels, model=model, views="5x3", batch_size=4)
    assert passes == [4, 4, 4, 3]
    assert [p.score for p in auto.predictions] == pytest.approx([p.score for p in told.predictions], abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batch_fits_the_measured_clip(model):
    device = torch.device("cuda")
    gpu = load_model("tiny", "none", device=device)
    batch = default_batch_size(gpu, 8, device)
    assert 1 <= batch <= CUDA_MAX_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        gpu.encode_video(torch.zeros(batch, 8, 3, gpu.image_size, gpu.image_size, device=device))
    assert torch.cuda.max_memory_allocated(device) - base <= free
