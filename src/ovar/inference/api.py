"""Zero-shot prediction: videos x free-text labels -> ranked labels with probabilities."""

from __future__ import annotations

import dataclasses

import os
from collections import defaultdict
from contextlib import nullcontext
from typing import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import LabelError, OvarError, VideoDecodeError
from ..models.zero_shot import VideoTextModel, load_model
from ..text import check_labels, read_descriptions, short_name
from ..video import parse_sampling, parse_views
from ..video.eval_scale import original_eval_transform, segment_position
from .inputs import expand_inputs
from .loader import ClipDataset, ClipRequest, collate_items, segment_requests
from .results import SegmentPrediction, VideoPrediction, rank


def predict(videos: str | os.PathLike | Sequence[str | os.PathLike], labels: Sequence[str] | None = None, *,
            model: VideoTextModel | str = "ViT-B-16", pretrained: str | None = "openai",
            frames: int | None = None, sampling: str = "segment", views: str = "1x1",
            templates: str | Sequence[str] | None = None, descriptions: str | os.PathLike | None = None,
            top_k: int | None = None, batch_size: int = 16, device: str | torch.device | None = None,
            segments: float | None = None, workers: int | None = None,
            progress: bool = False, test_scale: str | None = None) -> VideoPrediction | list[VideoPrediction]:
    """Classify videos against free-text ``labels``.

    ``videos`` is a file, a frame folder, a folder of videos, or a list of those. A single
    video returns one :class:`VideoPrediction` (and raises :class:`VideoDecodeError` if it
    cannot be read); several return a list in which unreadable videos carry ``error``.
    ``model`` is a loaded model or a backbone name (loaded with ``pretrained``).
    ``labels`` may be omitted when ``descriptions`` (a ``{"0": "Name: text"}`` file) is given.
    ``segments=S`` also classifies consecutive S-second windows of each video.
    ``test_scale`` (``"256/224"``, see :mod:`ovar.video.eval_scale`) overrides the test
    scale of the system the model comes from (plain CLIP: short side = crop size).
    """
    names, description_texts = _class_texts(labels, descriptions)
    single_input = isinstance(videos, (str, os.PathLike))
    paths, batch = expand_inputs([videos] if single_input else videos)
    if isinstance(model, str):
        model = load_model(model, pretrained, device=device or _default_device())
    elif device is not None:
        model = model.to(device)
    model.eval()

    sampler = parse_sampling(sampling, frames=frames or model.frames)
    if sampler.kind == "segment":  # the test frames of the system the model comes from
        sampler = dataclasses.replace(sampler, position=segment_position(getattr(model, "kind", None)))
    temporal, spatial = parse_views(views)
    try:
        transform = original_eval_transform(getattr(model, "kind", None), model.image_size, spatial,
                                            model.backbone.mean, model.backbone.std, test_scale)
    except ValueError as exc:
        raise OvarError(f"test scale: {exc}") from None
    classifier = model.classifier(names, templates, descriptions=description_texts)

    requests, failures = _requests(paths, segments)
    dataset = ClipDataset(requests, sampler, temporal, spatial, transform)
    probabilities = _score(model, dataset, classifier, batch_size, _workers(workers, len(requests)),
                           progress and len(requests) > 1)
    results = _assemble(paths, requests, probabilities, failures, names, top_k, segments is not None)
    if single_input and not batch:
        if results[0].error is not None:
            raise VideoDecodeError(results[0].video, results[0].error)
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


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _workers(workers: int | None, items: int) -> int:
    if workers is not None:
        return workers
    # Worker start-up costs more than it saves for a handful of clips.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if items < 4 else min(4, cores)


def _requests(paths: list[str], segments: float | None) -> tuple[list[ClipRequest], dict[str, str]]:
    if segments is None:
        return [ClipRequest(p) for p in paths], {}
    if segments <= 0:
        raise LabelError(f"--segments must be positive, got {segments}")
    requests, failures = [], {}
    for path in paths:
        try:
            requests.extend(segment_requests(path, segments))
        except VideoDecodeError as exc:
            failures[path] = exc.reason
    return requests, failures


@torch.no_grad()
def _score(model: VideoTextModel, dataset: ClipDataset, classifier: torch.Tensor, batch_size: int,
           workers: int, progress: bool) -> dict[int, torch.Tensor | str]:
    """Request index -> class probabilities (C,), or the decode error message."""
    loader = DataLoader(dataset, batch_size=max(1, batch_size // dataset.views_per_item), num_workers=workers,
                        collate_fn=collate_items, pin_memory=model.device.type == "cuda",
                        persistent_workers=False)
    device = model.device
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    out: dict[int, torch.Tensor | str] = {}
    # None lets tqdm hide the bar when stderr is not a terminal (logs, CI).
    bar = tqdm(total=len(dataset), unit="clip", desc="predict", disable=None if progress else True, leave=False)
    for items in loader:
        good = [item for item in items if item["clips"] is not None]
        for item in items:
            if item["clips"] is None:
                out[item["index"]] = item["error"]
        if good:
            clips = torch.cat([item["clips"] for item in good]).to(device, non_blocking=True)
            with autocast:
                embeddings = torch.cat([model.encode_video(chunk) for chunk in clips.split(batch_size)])
            offset = 0
            for item in good:
                count = item["clips"].shape[0]
                views = embeddings[offset:offset + count].float()
                if model.view_fusion == "scores":
                    out[item["index"]] = model.probabilities(views, classifier).mean(dim=0).cpu()
                else:  # average the views' embeddings, then score once
                    out[item["index"]] = model.probabilities(views.mean(dim=0, keepdim=True), classifier)[0].cpu()
                offset += count
        bar.update(len(items))
    bar.close()
    return out


def _assemble(paths, requests, probabilities, failures, names, top_k, with_segments) -> list[VideoPrediction]:
    per_video: dict[str, list[tuple[ClipRequest, torch.Tensor | str]]] = defaultdict(list)
    for index, request in enumerate(requests):
        per_video[request.video].append((request, probabilities[index]))
    results = []
    for path in paths:
        entries = per_video.get(path, [])
        error = failures.get(path) or next((p for _, p in entries if isinstance(p, str)), None)
        if error is not None or not entries:
            results.append(VideoPrediction(path, error=error or "no frames"))
            continue
        probs = torch.stack([p for _, p in entries])
        prediction = VideoPrediction(path, rank(names, probs.mean(dim=0).tolist(), top_k))
        if with_segments:
            prediction.segments = [SegmentPrediction(r.start_s, r.end_s, rank(names, p.tolist(), top_k))
                                   for r, p in entries]
        results.append(prediction)
    return results
