"""Decoding and preprocessing the clips of each video, in DataLoader workers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset

from ..errors import VideoDecodeError
from ..video import ClipSampler, open_video, read_info


@dataclass(frozen=True)
class ClipRequest:
    """One scored unit: a whole video, or the frames [start, end) of it (a time segment)."""

    video: str
    start: int = 0
    end: int | None = None
    start_s: float = 0.0
    end_s: float | None = None


def segment_requests(video: str, seconds: float) -> list[ClipRequest]:
    """Consecutive windows of ``seconds`` covering the whole video (the last may be shorter)."""
    info = read_info(video)
    per_window = max(1, round(seconds * info.fps))
    requests = []
    for start in range(0, info.num_frames, per_window):
        end = min(start + per_window, info.num_frames)
        requests.append(ClipRequest(video, start, end, start / info.fps, end / info.fps))
    return requests


class ClipDataset(Dataset):
    """Item ``i`` -> ``{"index", "clips": (V, T, 3, S, S) float or None, "error", "warning": str or None}``.

    ``V`` = temporal views x spatial crops. A video that cannot be decoded gives an item
    with its error instead of raising, so one bad file never stops a batch run.
    """

    def __init__(self, requests: list[ClipRequest], sampler: ClipSampler, temporal_views: int,
                 spatial_crops: int, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.requests = requests
        self.sampler = dataclasses.replace(sampler, num_clips=temporal_views)
        self.temporal_views = temporal_views
        self.views_per_item = temporal_views * spatial_crops
        self.transform = transform

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> dict:
        request = self.requests[index]
        try:
            clips, warning = self._load(request)
            return {"index": index, "clips": clips, "error": None, "warning": warning}
        except VideoDecodeError as exc:
            return {"index": index, "clips": None, "error": exc.reason, "warning": None}

    def _load(self, request: ClipRequest) -> tuple[torch.Tensor, str | None]:
        with open_video(request.video) as reader:
            warning = getattr(reader.info, "truncation_warning", lambda: None)()
            end = reader.info.num_frames if request.end is None else request.end
            length = max(1, end - request.start)
            views = [self.sampler(length, reader.info.fps, train=False, clip=c)
                     for c in range(self.temporal_views)]
            # One decode pass for all temporal views: the reader plans over the union.
            wanted = sorted({request.start + i for view in views for i in view})
            frames = reader.get_frames(wanted)
        position = {frame: row for row, frame in enumerate(wanted)}
        clips = []
        for view in views:
            clip = frames[[position[request.start + i] for i in view]]
            clips.append(self.transform(clip))  # (crops, T, 3, S, S)
        return torch.cat(clips), warning


def collate_items(items: list[dict]) -> list[dict]:
    """Keep items as a list: views differ per video and failed items carry no tensor."""
    return items
