"""End-to-end videos/s of ``ovar.predict`` against bare open_clip and HF X-CLIP (see bench_predict.py)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F


def _decode_all(path: Path) -> torch.Tensor:
    """Every frame of ``path`` as (N, H, W, 3) uint8, decoded in order with PyAV (the usual bare loop)."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(__import__("numpy").stack(frames))


def _preprocess(frames: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, size, size): shorter side to ``size`` (bicubic), centre crop, normalise."""
    x = frames.permute(0, 3, 1, 2).float() / 255
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                      align_corners=False, antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _sequential(videos: list[Path], frames: int, size: int, mean, std, batch: int,
                encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Decode each video in turn, then encode clips ``batch`` at a time (no overlap)."""
    from ovar.video import segment_indices

    clips = []
    for path in videos:
        decoded = _decode_all(path)
        clips.append(_preprocess(decoded[segment_indices(len(decoded), frames, train=False)], size, mean, std))
    with torch.no_grad():
        for start in range(0, len(clips), batch):
            encode(torch.stack(clips[start:start + batch]))


def _xclip(model_name: str, frames: int, size: int):
    """A random-weight X-CLIP of the benchmark's vision size, or None with the reason."""
    try:
        from transformers import XCLIPConfig, XCLIPModel
    except ImportError:
        return None, "transformers is not installed (pip install transformers)"
    tiny = model_name == "tiny"
    vision = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                  mit_hidden_size=64, mit_intermediate_size=256, mit_num_hidden_layers=1,
                  mit_num_attention_heads=2) if tiny else \
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    config = XCLIPConfig(text_config=dict(hidden_size=64 if tiny else 512, num_hidden_layers=2),
                         vision_config=dict(image_size=size, patch_size=16 if size >= 64 else 8,
                                            num_frames=frames, **vision),
                         projection_dim=64 if tiny else 512)
    torch.manual_seed(0)
    return XCLIPModel(config).eval(), None


def _features(output) -> torch.Tensor:
    """transformers 4 returns the projected features, 5 an output object carrying them as pooler_output."""
    return output if torch.is_tensor(output) else output.pooler_output


def run_end_to_end(args, model, labels: list[str]) -> None:
    import ovar
    from videogen import make_video

    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    size, mean, std = model.image_size, model.backbone.mean, model.backbone.std
    reduced = ("bf16", "fp16") if args.device.startswith("cuda") else ("bf16",)  # fp16 needs a GPU
    amp = torch.autocast("cuda", dtype=torch.float16) if args.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    with torch.no_grad():
        text = F.normalize(model.backbone.encode_text(model.backbone.tokenize(labels).to(args.device)).float(), dim=-1)

    def bare_encode(clips: torch.Tensor) -> torch.Tensor:
        with amp:
            frames = model.backbone.clip.encode_image(clips.flatten(0, 1).to(args.device))
        video = F.normalize(frames.float(), dim=-1).view(clips.shape[0], clips.shape[1], -1).mean(1)
        return (100 * F.normalize(video, dim=-1) @ text.t()).softmax(-1)

    xclip, why = _xclip(args.model, args.frames, size)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        videos = [make_video(folder / f"v{i:02d}.mp4", num_frames=150, fps=30, size=(340, 256))
                  for i in range(args.videos)]
        runs: dict[str, Callable[[], object]] = {
            "ovar.predict fp32": lambda: ovar.predict(folder, labels, model=model, batch_size=args.batch_size,
                                                      precision="fp32"),
            **{f"ovar.predict {p}": (lambda p=p: ovar.predict(folder, labels, model=model, batch_size=args.batch_size,
                                                              precision=p)) for p in reduced},
            "bare open_clip": lambda: _sequential(videos, args.frames, size, mean, std,
                                                  max(1, args.batch_size), bare_encode),
        }
        if xclip is not None:
            xclip.to(args.device)
            with torch.no_grad():
                xtext = F.normalize(_features(xclip.get_text_features(
                    input_ids=torch.randint(0, 1000, (len(labels), 8), device=args.device))), dim=-1)

            def xclip_encode(clips: torch.Tensor) -> torch.Tensor:
                with amp:
                    video = _features(xclip.get_video_features(pixel_values=clips.to(args.device)))
                return (100 * F.normalize(video.float(), dim=-1) @ xtext.float().t()).softmax(-1)

            runs["HF X-CLIP"] = lambda: _sequential(videos, args.frames, size, mean, std, max(1, args.batch_size),
                                                     xclip_encode)
        if args.compile:
            runs["ovar.predict fp32 --compile"] = lambda: ovar.predict(folder, labels, model=model, compile=True,
                                                                       batch_size=args.batch_size, precision="fp32")
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for name, fn in runs.items():  # warm-up: text cache, allocator, kernels, compilation
            fn()
        for _ in range(max(1, args.repeats // 2)):
            for name, fn in runs.items():  # alternate so load drifts hit every system alike
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)

    print(f"\nend to end: {args.videos} generated videos (5 s, 340x256, 30 fps) in a folder, {args.frames} frames "
          f"per clip, {len(labels)} classes, batch {args.batch_size} clips, device {args.device}, "
          f"{threads} torch threads on {cores} cores, 1-min load average {load:.1f} at the end, "
          f"median of {max(1, args.repeats // 2)}")
    base = statistics.median(samples["bare open_clip"])
    print(f"{'':32s}{'videos/s':>10s}{'vs open_clip':>14s}")
    for name, times in samples.items():
        t = statistics.median(times)
        print(f"{name:32s}{args.videos / t:10.2f}{base / t:13.2f}x")
    if xclip is None:
        print(f"HF X-CLIP skipped: {why}")
