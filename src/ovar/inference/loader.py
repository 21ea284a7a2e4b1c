"""Decoding and preprocessing the clips of each video, in DataLoader workers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import Dataset

from ..errors import VideoDecodeError
from ..video import ClipSampler, VideoInfo, open_video, read_info


@dataclass(frozen=True)
class ClipRequest:
    """One scored unit: a whole video, or the frames [start, end) of it (a time segment).

    ``window_s`` asks for the whole video cut into consecutive windows of that many
    seconds; they are worked out where the video is decoded, so the file is opened once.
    """

    video: str
    start: int = 0
    end: int | None = None
    start_s: float = 0.0
    end_s: float | None = None
    window_s: float | None = None


def segment_windows(video: str, seconds: float, info: VideoInfo) -> list[ClipRequest]:
    """Consecutive windows of ``seconds`` covering the video of ``info`` (the last may be shorter)."""
    per_window = max(1, round(seconds * info.fps))
    requests = []
    for start in range(0, info.num_frames, per_window):
        end = min(start + per_window, info.num_frames)
        requests.append(ClipRequest(video, start, end, start / info.fps, end / info.fps))
    return requests


def segment_requests(video: str, seconds: float) -> list[ClipRequest]:
    """:func:`segment_windows` of the file ``video`` (opened here just for its length)."""
    return segment_windows(video, seconds, read_info(video))


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
        """The item of request ``index`` (of a request cut into windows, the first window: use :meth:`group`)."""
        return self.group([index])[0]

    def group(self, indices: list[int]) -> list[dict]:
        """The items of ``indices`` (requests of one video), with one open of the file.

        A request with ``window_s`` gives one item per window, which also carries
        ``"window"`` (its number), ``"windows"`` (how many there are) and ``"request"``.
        """
        try:
            with open_video(self.requests[indices[0]].video) as reader:
                warning = getattr(reader.info, "truncation_warning", lambda: None)()
                items = []
                for index in indices:
                    request = self.requests[index]
                    if request.window_s is None:
                        units: list[tuple[ClipRequest, dict]] = [(request, {})]
                    else:
                        windows = segment_windows(request.video, request.window_s, reader.info)
                        units = [(w, {"window": k, "windows": len(windows), "request": w})
                                 for k, w in enumerate(windows)]
                    for unit, extra in units:
                        try:
                            clips = self._load(unit, reader)
                            items.append({"index": index, "clips": clips, "error": None, "warning": warning,
                                          **extra})
                        except VideoDecodeError as exc:
                            items.append({**_failed(index, exc), **extra})
                return items
        except VideoDecodeError as exc:
            return [_failed(index, exc) for index in indices]

    def _load(self, request: ClipRequest, reader) -> torch.Tensor:
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
        return torch.cat(clips)


def _failed(index: int, exc: VideoDecodeError) -> dict:
    return {"index": index, "clips": None, "error": exc.reason, "warning": None}


class VideoGroups(Dataset):
    """Item ``g`` -> the items of the ``g``-th run of consecutive requests of one video.

    A DataLoader worker then decodes one video at a time (videos spread over the workers) and
    opens each file once for all of its time windows.
    """

    def __init__(self, dataset: ClipDataset) -> None:
        self.dataset = dataset
        self.groups: list[list[int]] = []
        for index, request in enumerate(dataset.requests):
            if self.groups and dataset.requests[self.groups[-1][-1]].video == request.video:
                self.groups[-1].append(index)
            else:
                self.groups.append([index])

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, group: int) -> list[dict]:
        return self.dataset.group(self.groups[group])


def collate_items(items: list[dict]) -> list[dict]:
    """Keep items as a list: views differ per video and failed items carry no tensor."""
    return items
