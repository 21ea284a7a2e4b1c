"""Training data-loader throughput: ovar's VideoDataset vs. decoding every frame.

Both sides run through the same :func:`ovar.data.loader.build_loader` (same sampler, same
seeded frame choice, same 224 px training transform: random resized crop + flip), so they
differ only in how frames are read:

* ovar: :func:`ovar.video.open_video` + ``get_frames`` (decodes only what the clip needs,
  seeks to keyframes, converts only the wanted frames to RGB);
* naive (what the original codebases do): ``av.open`` with default settings, decode every
  frame sequentially, convert each to an RGB array, then pick the sampled ones.

The first batch of every configuration is checked to be identical on both sides.

    python benchmarks/bench_loader.py [--quick] [--videos N] [--batch-size B] [--cache DIR]

Videos: N (32; 16 with --quick) generated 320x240 30 fps H.264 videos of 5-10 s (5-7 s
with --quick), x264 defaults (keyframe interval up to 250), cached in ``--cache``
(default ``$TMPDIR/ovar-bench-loader``).  Throughput is clips per second over one epoch,
measured after a warm-up epoch (worker start-up and the page cache are not timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from ovar.data.dataset import VideoDataset
from ovar.data.loader import build_loader
from ovar.data.records import VideoRecord
from ovar.video import build_train_transform, parse_sampling

SAMPLINGS = ("8x16", "1x1x8")
WORKERS = (0, 1, 2)


# ---- videos ------------------------------------------------------------------------


def generate(path: Path, seconds: float, seed: int, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    """A textured, panning synthetic video with a moving object and grain (cached)."""
    if path.exists():
        return path
    w, h = size
    rng = np.random.default_rng(seed)

    def smooth(cells: tuple[int, int], out: tuple[int, int], amp: float) -> np.ndarray:
        coarse = torch.from_numpy(rng.uniform(-amp, amp, (1, 3, *cells)).astype(np.float32))
        up = torch.nn.functional.interpolate(coarse, size=out, mode="bicubic", align_corners=False)
        return up[0].permute(1, 2, 0).numpy()

    bh, bw = h + 120, w + 240
    land = 128 + smooth((bh // 40, bw // 40), (bh, bw), 70) + smooth((bh // 8, bw // 8), (bh, bw), 25)
    texture = np.clip(land, 24, 231).astype(np.uint8)
    obj = np.clip(128 + smooth((4, 4), (60, 80), 90), 24, 231).astype(np.uint8)
    grain = [rng.integers(0, 10, size=(h, w, 3), dtype=np.uint8) for _ in range(4)]
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_type = "FRAME"  # one slice per frame, like most footage
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(int(seconds * fps)):
            ox, oy = i % 240, int(60 + 55 * np.sin(i / 40))
            frame = texture[oy : oy + h, ox : ox + w].copy()
            x, y = (3 * i) % (w - 80), int((h - 60) / 2 * (1 + np.sin(i / 25)))
            frame[y : y + 60, x : x + 80] = obj
            frame = frame + grain[i % 4]
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def make_videos(folder: Path, count: int, quick: bool) -> list[VideoRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.random.default_rng(0).uniform(5, 7 if quick else 10, size=count)
    records = []
    for i, seconds in enumerate(lengths):
        name = f"v{i:03d}_{seconds:.1f}s.mp4"
        generate(folder / name, float(seconds), seed=i)
        records.append(VideoRecord(name, i % 4))
    return records


# ---- the naive baseline --------------------------------------------------------------


class NaiveDataset(VideoDataset):
    """The same items, but each video decoded completely with default PyAV, every frame to RGB."""

    def _load_train(self, index: int, gen: torch.Generator) -> torch.Tensor:
        with av.open(self.paths[index]) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        wanted = self.sampler(len(frames), fps, train=True, generator=gen)
        clip = torch.from_numpy(np.stack([frames[i] for i in wanted])).permute(0, 3, 1, 2)
        return self.transform(clip, generator=gen)


# ---- measuring -----------------------------------------------------------------------


def throughput(dataset: VideoDataset, workers: int, batch_size: int) -> tuple[float, dict]:
    """Clips per second over one epoch after a warm-up epoch; also the first batch."""
    loader = build_loader(dataset, batch_size, workers=workers, shuffle=True, seed=0, pin_memory=False)
    loader.set_epoch(0)
    first = None
    for batch in loader:  # warm-up: starts the workers, fills the page cache
        first = first or batch
    loader.set_epoch(1)
    start = time.perf_counter()
    clips = sum(len(batch["index"]) for batch in loader)
    elapsed = time.perf_counter() - start
    if len(loader.failures):
        raise RuntimeError(loader.failures.summary())
    del loader  # stop the persistent workers before the next configuration
    return clips / elapsed, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 shorter videos")
    parser.add_argument("--videos", type=int, default=None, help="number of videos (default 32, 16 with --quick)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--size", type=int, default=224, help="training crop size (default 224)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ovar-bench-loader")
    args = parser.parse_args()
    count = args.videos or (16 if args.quick else 32)

    t0 = time.perf_counter()
    records = make_videos(args.cache / ("quick" if args.quick else "full"), count, args.quick)
    with av.open(str(args.cache / ("quick" if args.quick else "full") / records[0].path)) as c:
        codec = c.streams.video[0].codec_context.name
    total_frames = 0
    for r in records:
        with av.open(str(args.cache / ("quick" if args.quick else "full") / r.path)) as c:
            total_frames += c.streams.video[0].frames
    print(f"{count} videos, 320x240 {codec} 30 fps, {total_frames / count / 30:.1f} s average "
          f"(ready in {time.perf_counter() - t0:.1f} s); batch {args.batch_size}, train transform {args.size} px")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"PyAV {av.__version__}\n")

    root = args.cache / ("quick" if args.quick else "full")
    transform = build_train_transform(args.size)
    header = f"{'sampling':<9} {'workers':>7} {'ovar clips/s':>13} {'naive clips/s':>14} {'speedup':>8}"
    print(header)
    print("-" * len(header))
    for text in SAMPLINGS:
        sampler = parse_sampling(text)
        for workers in WORKERS:
            ours = VideoDataset(records, root, sampler, transform, train=True, seed=0)
            naive = NaiveDataset(records, root, sampler, transform, train=True, seed=0)
            fast, first_ours = throughput(ours, workers, args.batch_size)
            slow, first_naive = throughput(naive, workers, args.batch_size)
            if not torch.equal(first_ours["video"], first_naive["video"]):
                raise RuntimeError(f"{text}, {workers} workers: ovar and the naive loader disagree")
            print(f"{text:<9} {workers:>7} {fast:>13.1f} {slow:>14.1f} {fast / slow:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
