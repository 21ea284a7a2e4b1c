"""Decode benchmark: ovar's planned reader vs. sequential PyAV decoding.

The baseline is what action-recognition codebases do: open the file with PyAV
(default settings), decode frames in order and keep the wanted ones, stopping after the
last wanted frame (the early stop only helps the baseline).  ovar opens the same file
with :func:`ovar.video.open_video` and calls ``get_frames``.  Both are timed per clip
including the open, and must return identical frames.

    python benchmarks/bench_decode.py [--quick] [--repeats N] [--cache DIR]

Videos: ``../shared/videos/demo.mp4`` (10 s, 340x256; skipped if absent) and generated
1280x720 30 fps H.264 videos (60 s, 20 s with --quick) with keyframes every 60 and
250 frames, cached in ``--cache`` (default: ``$TMPDIR/ovar-bench-decode``).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from ovar.video import decode as ovar_decode
from ovar.video import open_video

REPO = Path(__file__).resolve().parents[1]


def shared_videos() -> Path:
    shared = os.environ.get("OVAR_SHARED_DIR")
    return (Path(shared) if shared else REPO.parent / "shared") / "videos"


# ---- test videos -------------------------------------------------------------------


def generate(path: Path, seconds: float, gop: int, size=(1280, 720), fps: int = 30) -> Path:
    """Encode a textured, moving synthetic video (H.264, CRF 23) unless already cached."""
    if path.exists():
        return path
    w, h = size
    rng = np.random.default_rng(0)
    # A smooth "landscape" (coarse + medium detail) panned over time, three textured
    # objects moving across it, and light grain: I-frames about 5-8x the size of the
    # others, like camera footage (pure noise would make keyframes unrealistically big).
    def smooth(cells_y: int, cells_x: int, out_h: int, out_w: int, amp: float) -> np.ndarray:
        cells = rng.uniform(-amp, amp, (1, 3, cells_y, cells_x)).astype(np.float32)
        coarse = torch.from_numpy(cells)
        up = torch.nn.functional.interpolate(coarse, size=(out_h, out_w), mode="bicubic",
                                             align_corners=False)
        return up[0].permute(1, 2, 0).numpy()
    bh, bw = h + 320, w + 640
    land = 128 + smooth(bh // 90, bw // 90, bh, bw, 70) + smooth(bh // 12, bw // 12, bh, bw, 25)
    texture = np.clip(land, 24, 231).astype(np.uint8)
    objects = [np.clip(128 + smooth(6, 6, oh, ow, 90) + smooth(oh // 6, ow // 6, oh, ow, 30),
                       24, 231).astype(np.uint8) for oh, ow in ((180, 240), (120, 160), (240, 140))]
    grain = [rng.integers(0, 12, size=(h, w, 3), dtype=np.uint8) for _ in range(8)]
    tmp = path.with_suffix(".part.mp4")
    n = int(seconds * fps)
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        # Frame-threaded x264 (the ffmpeg CLI's default) writes one slice per frame, like
        # most real footage; PyAV's default (slice threads) would split every frame.
        vs.codec_context.thread_type = "FRAME"
        vs.options = {"preset": "veryfast", "crf": "23",
                      "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i in range(n):
            ox, oy = (2 * i) % 640, int(150 + 140 * np.sin(i / 200))
            frame = texture[oy : oy + h, ox : ox + w].copy()
            for k, obj in enumerate(objects):
                oh, ow = obj.shape[:2]
                x = int((w - ow) * (0.5 + 0.5 * np.sin(i / (37 + 11 * k) + k)))
                y = int((h - oh) * (0.5 + 0.5 * np.cos(i / (53 + 7 * k) + 2 * k)))
                frame[y : y + oh, x : x + ow] = obj
            frame += grain[i % len(grain)]  # stays <= 242: no overflow
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    tmp.rename(path)
    return path


# ---- sampling rules (the two families the model zoo uses) ----------------------------


def segment_clip(n: int, t: int = 8) -> list[int]:
    """TSN test sampling: the middle frame of each of ``t`` equal segments."""
    return [int(n / t * (k + 0.5)) for k in range(t)]


def dense_clip(n: int, start: int, t: int = 8, stride: int = 16) -> list[int]:
    return [min(start + k * stride, n - 1) for k in range(t)]


# ---- the two readers ------------------------------------------------------------------


def baseline_frames(path: str, indices: list[int]) -> torch.Tensor:
    """Sequential PyAV decoding with default settings, stopping after the last wanted frame."""
    wanted = set(indices)
    last = max(indices)
    got: dict[int, np.ndarray] = {}
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
    final = max(got)
    return torch.from_numpy(np.stack([got[min(i, final)] for i in indices])).permute(0, 3, 1, 2)


def ovar_frames(path: str, indices: list[int]) -> tuple[torch.Tensor, int]:
    with open_video(path) as reader:
        return reader.get_frames(indices), reader.frames_decoded


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - t0) * 1000


def measure(path: str, clips: list[list[int]], repeats: int) -> tuple[float, float, float]:
    """Mean over clips of the median time (ms) of each reader; mean frames ovar decoded."""
    base_ms, ovar_ms, decoded = [], [], []
    for clip in clips:
        b_times, o_times = [], []
        for _ in range(repeats):  # interleave the two so drift hits both alike
            ref, tb = timed(baseline_frames, path, clip)
            (out, n_dec), to = timed(ovar_frames, path, clip)
            if not torch.equal(ref, out):
                raise AssertionError(f"{path}: ovar and baseline frames differ for {clip}")
            b_times.append(tb)
            o_times.append(to)
            decoded.append(n_dec)
        base_ms.append(statistics.median(b_times))
        ovar_ms.append(statistics.median(o_times))
    return statistics.mean(base_ms), statistics.mean(ovar_ms), statistics.mean(decoded)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 s generated videos, fewer runs")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per clip")
    ap.add_argument("--starts", type=int, default=None, help="random starts for dense sampling")
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "ovar-bench-decode")
    ap.add_argument("--seek-overhead", type=int, default=None,
                    help=f"override ovar's SEEK_OVERHEAD_FRAMES "
                         f"({ovar_decode.SEEK_OVERHEAD_FRAMES})")
    ap.add_argument("--threads", choices=("auto", "none"), default="auto",
                    help="ovar's decoder threading (the baseline keeps PyAV's default)")
    ap.add_argument("--no-skip", action="store_true",
                    help="ovar decodes non-reference frames too (isolates the planning gain)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    starts = args.starts or (3 if args.quick else 6)
    seconds = 20 if args.quick else 60
    if args.seek_overhead is not None:
        ovar_decode.SEEK_OVERHEAD_FRAMES = args.seek_overhead
    ovar_decode.THREADED_DECODING = args.threads == "auto"
    if args.no_skip:
        ovar_decode.SKIP_NONREF_CODECS = frozenset()

    videos: list[tuple[str, Path]] = []
    demo = shared_videos() / "demo.mp4"
    if demo.exists():
        videos.append(("demo.mp4 10s 340x256", demo))
    else:
        print(f"(skipping {demo}: not found)")
    args.cache.mkdir(parents=True, exist_ok=True)
    for gop in (60, 250):
        name = f"gen_{seconds}s_720p_gop{gop}.mp4"
        t0 = time.perf_counter()
        path = generate(args.cache / name, seconds, gop)
        if time.perf_counter() - t0 > 1:
            print(f"generated {path} in {time.perf_counter() - t0:.0f} s", flush=True)
        videos.append((f"{seconds}s 1280x720 gop{gop}", path))

    torch.set_num_threads(1)
    rows = []
    rng = random.Random(0)
    for label, path in videos:
        with open_video(path) as r:
            n = r.info.num_frames
        plans = {
            "segment 8x1": [segment_clip(n)],
            "dense 8x16": [dense_clip(n, rng.randrange(max(1, n - 8 * 16))) for _ in range(starts)],
        }
        for sampling, clips in plans.items():
            base, ours, decoded = measure(str(path), clips, repeats)
            rows.append((label, sampling, base, ours, base / ours, decoded))
            print(f"  {label:24s} {sampling:12s} done", file=sys.stderr, flush=True)

    print()
    print("| video | sampling | baseline ms/clip | ovar ms/clip | speed-up | ovar frames decoded |")
    print("|---|---|---:|---:|---:|---:|")
    for label, sampling, base, ours, ratio, decoded in rows:
        print(f"| {label} | {sampling} | {base:.1f} | {ours:.1f} | {ratio:.2f}x | {decoded:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
