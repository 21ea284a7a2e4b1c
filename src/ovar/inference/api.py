"""Zero-shot prediction: videos x free-text labels -> ranked labels with probabilities."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..devices import check_precision, resolve_device, resolve_precision
from ..errors import LabelError, OvarError, VideoDecodeError
from ..eval.scoring import score_batches
from ..models.loading import load_model
from ..models.view_fusion import view_probabilities
from ..models.zero_shot import VideoTextModel
from ..text import check_labels, read_descriptions, short_name
from ..video import ClipSampler, parse_sampling, parse_views
from ..video.eval_scale import original_eval_transform, segment_position
from .inputs import expand_inputs
from .batching import ClipSplitter, gather_clips
from .batch_size import default_batch_size
from .loader import ClipDataset, ClipRequest, VideoGroups
from .results import SegmentPrediction, VideoPrediction, rank


def predict(videos: str | os.PathLike | Sequence[str | os.PathLike], labels: Sequence[str] | None = None, *,
            model: VideoTextModel | str = "ViT-B-16", pretrained: str | None = "openai",
            frames: int | None = None, sampling: str = "segment", views: str = "1x1",
            templates: str | Sequence[str] | None = None, descriptions: str | os.PathLike | None = None,
            top_k: int | None = None, batch_size: int | None = None, device: str | torch.device | None = None,
            segments: float | None = None, workers: int | None = None, progress: bool = False,
            on_result: Callable[[VideoPrediction], None] | None = None,
            missing_ok: bool = False, precision: str = "auto",
            test_scale: str | None = None, compile: bool = False) -> VideoPrediction | list[VideoPrediction]:
    """Classify videos against free-text ``labels``.

    ``videos`` is a file, a frame folder, a folder of videos, or a list of those. A single
    video returns one :class:`VideoPrediction` (and raises :class:`VideoDecodeError` if it
    cannot be read); several return a list in which unreadable videos carry ``error``.
    ``model`` is a loaded model or a backbone name (loaded with ``pretrained``).
    ``labels`` may be omitted when ``descriptions`` (a ``{"0": "Name: text"}`` file) is given.
    ``segments=S`` also classifies consecutive S-second windows of each video.
    ``on_result`` receives each video's result, in input order, as soon as it is known (so a
    long run can write results as it goes); ``missing_ok`` makes a missing path an error
    result instead of a :class:`VideoDecodeError` before any work.
    ``precision`` is ``fp32``, ``fp16`` (GPU only), ``bf16``, or ``auto``
    (:func:`ovar.devices.resolve_precision`: bf16 or fp16 on a GPU, fp32 on a CPU).
    ``test_scale`` (``"256/224"``, see :mod:`ovar.video.eval_scale`) overrides the test
    scale of the system the model comes from (plain CLIP: short side = crop size).
    ``compile`` runs the video encoder through ``torch.compile`` (the first batch is slow).
    ``batch_size`` (clips per forward pass) defaults to one fitted to the device
    (:func:`ovar.inference.batch_size.default_batch_size`).
    """
    check_precision(precision, "--precision")  # a misspelt precision fails before any model loads
    names, description_texts = _class_texts(labels, descriptions)
    if segments is not None and not (math.isfinite(segments) and segments > 0):
        raise OvarError(f"--segments must be a finite positive number of seconds, got {segments}")
    single_input = isinstance(videos, (str, os.PathLike))
    paths, batch = expand_inputs([videos] if single_input else videos, missing_ok=missing_ok)
    if isinstance(model, str):
        model = load_model(model, pretrained, device=_device(device))
    elif device is not None:
        model = model.to(_device(device))
    model.eval()
    if compile:
        from .compiling import compile_video_encoder

        compile_video_encoder(model)

    sampler = test_sampler(model, sampling, frames)
    temporal, spatial = parse_views(views)
    transform = test_transform(model, spatial, test_scale)
    classifier = model.classifier(names, templates, descriptions=description_texts)

    precision = resolve_precision(precision, model.device, "--precision")
    if batch_size is None:
        batch_size = default_batch_size(model, sampler.frames, model.device, precision)
    single = single_input and not batch
    requests, owners, failures = clip_requests(paths, segments)
    dataset = ClipDataset(requests, sampler, temporal, spatial, transform)
    assembler = ResultAssembler(paths, requests, owners, failures, names, top_k, segments is not None,
                                None if single else on_result)
    _score(model, dataset, classifier, batch_size, _workers(workers, len(requests)),
           progress and len(requests) > 1, assembler, precision)
    results = assembler.results
    if single:
        if results[0].error is not None:
            raise VideoDecodeError(results[0].video, results[0].error)
        if on_result is not None:
            on_result(results[0])
        return results[0]
    return results


def _class_texts(labels, descriptions) -> tuple[list[str], list[str] | None]:
    if descriptions is not None:
        texts = read_descriptions(descriptions)
        names = [short_name(t) for t in texts]
        if labels is not None and list(labels) != names:
            raise LabelError(f"{descriptions}: descriptions do not match the given labels")
        return names, texts
    if labels is None:
        raise LabelError("no labels given")
    if isinstance(labels, str):
        raise LabelError("labels must be a list of names (use ovar.text.parse_labels for 'a, b, c')")
    return check_labels(labels, "labels"), None


def _device(device: str | torch.device | None) -> torch.device:
    """``device`` as ``--device`` means it everywhere (auto, cpu, cuda, cuda:N, mps)."""
    return device if isinstance(device, torch.device) else resolve_device(device)


def _workers(workers: int | None, items: int) -> int:
    if workers is not None:
        return workers
    from ..config import default_workers

    # Worker start-up costs more than it saves for a handful of clips.
    return 0 if items < 4 else default_workers()


def clip_requests(paths: list[str], segments: float | None) -> tuple[list[ClipRequest], list[int], dict[int, str]]:
    """The clips to score, the position in ``paths`` each belongs to, and per-position failures.

    With ``segments`` each video is one request cut into windows where it is decoded
    (:meth:`ClipDataset.group`), so no file is opened here.
    """
    return [ClipRequest(p, window_s=segments) for p in paths], list(range(len(paths))), {}


class ResultAssembler:
    """Turns scored clips into per-video results, in input order, as soon as each video is complete."""

    def __init__(self, paths: list[str], requests: list[ClipRequest], owners: list[int], failures: dict[int, str],
                 names: list[str], top_k: int | None, with_segments: bool,
                 on_result: Callable[[VideoPrediction], None] | None) -> None:
        self.paths, self.requests, self.failures = paths, requests, failures
        self.names, self.top_k, self.with_segments, self.on_result = names, top_k, with_segments, on_result
        self.clips_of: list[list[int]] = [[] for _ in paths]
        for index, owner in enumerate(owners):
            self.clips_of[owner].append(index)
        self.scored: dict[int | tuple[int, int], torch.Tensor | str] = {}
        self.warnings: dict[int | tuple[int, int], str] = {}
        self.results: list[VideoPrediction] = []
        self.windows: dict[int, int] = {}  # request index -> its windows, once decoded
        self.window_requests: dict[tuple[int, int], ClipRequest] = {}

    def note(self, item: dict) -> int | tuple[int, int]:
        """The key to :meth:`add` a decoded item under: its request index, or (index, window).

        A request cut into windows is measured only where it is decoded: learn them here.
        """
        if "windows" not in item:
            return item["index"]
        key = (item["index"], item["window"])
        self.windows[item["index"]] = item["windows"]
        self.window_requests[key] = item["request"]
        return key

    def _keys(self, index: int) -> list[int | tuple[int, int]]:
        windows = self.windows.get(index)
        return [index] if windows is None else [(index, k) for k in range(windows)]

    def add(self, index: int | tuple[int, int], value: torch.Tensor | str, warning: str | None = None) -> None:
        self.scored[index] = value
        if warning:
            self.warnings[index] = warning

    def flush(self) -> None:
        """Emit every video, from the next one on, whose clips have all been scored."""
        while len(self.results) < len(self.paths):
            position = len(self.results)
            indices = [key for i in self.clips_of[position] for key in self._keys(i)]
            if any(i not in self.scored for i in indices):
                return
            entries = [(self.window_requests.pop(i) if isinstance(i, tuple) else self.requests[i],
                        self.scored.pop(i)) for i in indices]  # pop: memory stays flat
            warning = next((self.warnings.pop(i) for i in indices if i in self.warnings), None)
            result = self._result(self.paths[position], entries, self.failures.get(position), warning)
            self.results.append(result)
            if self.on_result is not None:
                self.on_result(result)

    def _result(self, path: str, entries: list, failure: str | None, warning: str | None) -> VideoPrediction:
        error = failure or next((p for _, p in entries if isinstance(p, str)), None)
        if error is not None or not entries:
            return VideoPrediction(path, error=error or "no frames")
        probs = torch.stack([p for _, p in entries])
        prediction = VideoPrediction(path, rank(self.names, probs.mean(dim=0).tolist(), self.top_k), warning=warning)
        if self.with_segments:
            prediction.segments = [SegmentPrediction(r.start_s, r.end_s, rank(self.names, p.tolist(), self.top_k))
                                   for r, p in entries]
        return prediction


@torch.no_grad()  # fusing the views too
def _score(model: VideoTextModel, dataset: ClipDataset, classifier: torch.Tensor, batch_size: int,
           workers: int, progress: bool, assembler: ResultAssembler, precision: str) -> None:
    """Score every request into ``assembler``: class probabilities (C,), or the decode error message.

    Workers decode one video each (all its windows with one open) and run ahead of the model
    by ``prefetch_factor`` videos each, so decoding overlaps the forward passes; this process
    gathers the decoded clips into forward passes of ``batch_size`` clips, run by the one
    scoring loop (:func:`ovar.eval.scoring.score_batches`), and fuses each video's views once
    all its clips are encoded.
    """
    extra = {"prefetch_factor": 4} if workers > 0 else {}
    loader = DataLoader(VideoGroups(dataset), batch_size=None, num_workers=workers,
                        pin_memory=model.device.type == "cuda", persistent_workers=False, **extra)
    # One loader item per video; None lets tqdm hide the bar when stderr is not a terminal.
    videos = tqdm(loader, total=len(dataset), unit="video", desc="predict", leave=False,
                  disable=None if progress else True)
    keyed = ((assembler.note(item), item) for items in videos for item in items)
    splitter = ClipSplitter()
    assembler.flush()  # videos that failed before any clip (or have none) come out at once
    try:
        for done in score_batches(gather_clips(keyed, batch_size), lambda batch: model.encode_video(batch["video"]),
                                  model.device, precision, progress=False):
            for key, error in done.batch["errors"]:
                assembler.add(key, error)
            for key, embeddings, warning in splitter.split(done.batch["parts"], done.scores):
                assembler.add(key, view_probabilities(model, embeddings, classifier), warning)
            assembler.flush()
    finally:
        videos.close()
    assembler.flush()


def test_sampler(model: VideoTextModel, sampling: str, frames: int | None = None) -> ClipSampler:
    """The frame sampler for scoring ``model``: ``sampling`` with the test frame positions of
    the system the model comes from."""
    sampler = parse_sampling(sampling, frames=frames or model.frames)
    if sampler.kind == "segment":
        sampler = dataclasses.replace(sampler, position=segment_position(getattr(model, "kind", None)))
    return sampler


def test_transform(model: VideoTextModel, spatial_crops: int, test_scale: str | None = None):
    """The test-time resize/crop/normalise of the system ``model`` comes from (or ``test_scale``)."""
    try:
        return original_eval_transform(getattr(model, "kind", None), model.image_size, spatial_crops,
                                       model.backbone.mean, model.backbone.std, test_scale)
    except ValueError as exc:
        raise OvarError(f"test scale: {exc}") from None
