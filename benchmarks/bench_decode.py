"""Decode benchmark: ovar's planned reader vs. sequential PyAV, torchcodec and decord.

The baseline is what action-recognition codebases do: open the file with PyAV
(default settings), decode frames in order and keep the wanted ones, stopping after the
last wanted frame (the early stop only helps the baseline).  The peers, when installed
(``pip install torchcodec decord``; torchcodec also needs FFmpeg's shared libraries),
are torchcodec (exact seek mode) and decord.  ovar opens the same file with
:func:`ovar.video.open_video` and calls ``get_frames``.  Every reader is timed per clip
including the open, and must return ovar's frames bit for bit to be counted.

    python benchmarks/bench_decode.py [--quick] [--repeats N] [--only TEXT] [--no-peers] [--cpu]

Videos: ``../shared/videos/demo.mp4`` and ``test.avi`` (skipped if absent) and generated
ones, cached in ``--cache`` (default: ``$TMPDIR/ovar-bench-decode``): a 3 s 320x240 clip,
1280x720 30 fps H.264 (60 s, 20 s with --quick) with keyframes every 60 and 250 frames,
720p with B-frames, 1920x1080, MJPEG in AVI, VP9 in WebM and a 333x187 4:4:4 MKV.
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


def generate(path: Path, seconds: float, gop: int, size=(1280, 720), fps: int = 30,
             codec: str = "libx264", pix_fmt: str = "yuv420p", bframes: int | None = None) -> Path:
    """Encode a textured, moving synthetic video unless already cached.

    The container follows the suffix; ``codec`` is any PyAV encoder (libx264, mjpeg,
    libvpx-vp9, ...).  H.264 uses CRF 23 and a fixed GOP; ``bframes`` sets B-frames.
    """
    if path.exists():
        return path
    w, h = size
    rng = np.random.default_rng(0)
    # A smooth "landscape" (coarse + medium detail) panned over time, three textured
    # objects moving across it, and light grain: I-frames about 5-8x the size of the
    # others, like camera footage (pure noise would make keyframes unrealistically big).
    def smooth(cells_y: int, cells_x: int, out_h: int, out_w: int, amp: float) -> np.ndarray:
        cells = rng.uniform(-amp, amp, (1, 3, max(2, cells_y), max(2, cells_x))).astype(np.float32)
        coarse = torch.from_numpy(cells)
        up = torch.nn.functional.interpolate(coarse, size=(out_h, out_w), mode="bicubic",
                                             align_corners=False)
        return up[0].permute(1, 2, 0).numpy()
    bh, bw = h + 320, w + 640
    land = 128 + smooth(bh // 90, bw // 90, bh, bw, 70) + smooth(bh // 12, bw // 12, bh, bw, 25)
    texture = np.clip(land, 24, 231).astype(np.uint8)
    scale = min(1.0, h / 720)
    shapes = [(max(8, int(a * scale)), max(8, int(b * scale))) for a, b in ((180, 240), (120, 160), (240, 140))]
    objects = [np.clip(128 + smooth(6, 6, oh, ow, 90) + smooth(oh // 6, ow // 6, oh, ow, 30),
                       24, 231).astype(np.uint8) for oh, ow in shapes]
    grain = [rng.integers(0, 12, size=(h, w, 3), dtype=np.uint8) for _ in range(8)]
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    n = int(seconds * fps)
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        options: dict[str, str] = {}
        if codec == "libx264":
            # Frame-threaded x264 (the ffmpeg CLI's default) writes one slice per frame, like
            # most real footage; PyAV's default (slice threads) would split every frame.
            vs.codec_context.thread_type = "FRAME"
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
            if bframes is not None:
                params += f":bframes={bframes}"
            options = {"preset": "veryfast", "crf": "23", "x264-params": params}
        elif codec.startswith("libvpx"):
            vs.codec_context.gop_size = gop
            options = {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}
        elif codec == "mjpeg":
            vs.codec_context.qmax = 6
        vs.options = options
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


# ---- the readers ---------------------------------------------------------------------


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


def ovar_frames(path: str, indices: list[int]) -> torch.Tensor:
    with open_video(path) as reader:
        return reader.get_frames(indices)


def torchcodec_reader():
    """torchcodec's exact-seek decoder (it scans the file on open, as ovar does), or None."""
    try:
        from torchcodec.decoders import VideoDecoder
        VideoDecoder(str(_probe_video()), seek_mode="exact")
    except Exception as exc:  # not installed, or its FFmpeg libraries are missing
        return None, f"torchcodec unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"

    def read(path: str, indices: list[int]) -> torch.Tensor:
        decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=0)
        return decoder.get_frames_at(indices=indices).data
    return read, None


def decord_reader():
    try:
        import decord
    except Exception as exc:
        return None, f"decord unavailable ({type(exc).__name__})"

    def read(path: str, indices: list[int]) -> torch.Tensor:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
        return torch.from_numpy(vr.get_batch(indices).asnumpy()).permute(0, 3, 1, 2)
    return read, None


_PROBE: Path | None = None


def _probe_video() -> Path:
    """A tiny video to check that a peer library can decode at all."""
    global _PROBE
    if _PROBE is None:
        _PROBE = generate(Path(tempfile.mkdtemp()) / "probe.mp4", 0.2, 6, size=(64, 48))
    return _PROBE


CLOCK = time.perf_counter  # --cpu: time.process_time (this process's CPU time, all threads)


def timed(fn, *args):
    t0 = CLOCK()
    result = fn(*args)
    return result, (CLOCK() - t0) * 1000


def measure(path: str, clips: list[list[int]], readers: dict, repeats: int) -> dict[str, float | str]:
    """Mean over clips of each reader's median time (ms), or why it was not counted.

    Every reader's frames are compared with ovar's; a reader returning other pixels (a
    different colour conversion, a wrong frame) is reported, not timed.
    """
    times: dict[str, list[float]] = {name: [] for name in readers}
    status: dict[str, str] = {}
    for clip in clips:
        per: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(repeats):  # interleave the readers so drift hits all alike
            ref = None
            for name, read in readers.items():
                if name in status:
                    continue
                try:
                    out, ms = timed(read, path, clip)
                except Exception as exc:  # a peer that cannot read this file
                    status[name] = f"error: {type(exc).__name__}"
                    continue
                out = out.contiguous()
                if ref is None:
                    ref = out  # ovar's, which runs first
                elif out.shape != ref.shape or not torch.equal(out, ref):
                    diff = ((out.int() - ref.int()).abs().max().item() if out.shape == ref.shape
                            else "shape")
                    status[name] = f"differs ({diff})"
                    continue
                per[name].append(ms)
        for name, values in per.items():
            if values and name not in status:
                times[name].append(statistics.median(values))
    return {name: status.get(name) or statistics.mean(values) for name, values in times.items()}


def build_videos(cache: Path, quick: bool, only: str | None = None) -> list[tuple[str, Path]]:
    """The benchmark's videos (those whose label contains ``only``), generating the missing ones."""
    long_s = 20 if quick else 60
    videos: list[tuple[str, Path]] = []
    for name, label in (("demo.mp4", "demo.mp4 10s 340x256 h264"),
                        ("test.avi", "test.avi 320x240 mpeg4+audio")):
        if only and only not in label:
            continue
        shared = shared_videos() / name
        if shared.exists():
            videos.append((label, shared))
        else:
            print(f"(skipping {shared}: not found)")
    specs = [
        ("short_3s_320x240.mp4", "3s 320x240 h264", dict(seconds=3, gop=30, size=(320, 240))),
        (f"long_{long_s}s_720p_gop60.mp4", f"{long_s}s 1280x720 gop60",
         dict(seconds=long_s, gop=60)),
        (f"long_{long_s}s_720p_gop250.mp4", f"{long_s}s 1280x720 gop250",
         dict(seconds=long_s, gop=250)),
        ("bframes_20s_720p.mp4", "20s 1280x720 gop120 3 B-frames",
         dict(seconds=20, gop=120, bframes=3)),
        ("fullhd_10s.mp4", "10s 1920x1080 gop60", dict(seconds=10, gop=60, size=(1920, 1080))),
        ("mjpeg_10s_640x480.avi", "10s 640x480 mjpeg avi",
         dict(seconds=10, gop=1, size=(640, 480), codec="mjpeg", pix_fmt="yuvj420p")),
        ("vp9_10s_640x360.webm", "10s 640x360 vp9 webm",
         dict(seconds=10, gop=60, size=(640, 360), codec="libvpx-vp9")),
        ("odd_10s_333x187_444.mkv", "10s 333x187 yuv444p mkv",
         dict(seconds=10, gop=48, size=(333, 187), pix_fmt="yuv444p")),
    ]
    cache.mkdir(parents=True, exist_ok=True)
    for filename, label, kw in specs:
        if only and only not in label:
            continue
        t0 = time.perf_counter()
        try:
            path = generate(cache / filename, **kw)
        except Exception as exc:  # an encoder missing from this PyAV build
            print(f"(skipping {label}: {type(exc).__name__}: {exc})")
            continue
        if time.perf_counter() - t0 > 1:
            print(f"generated {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        videos.append((label, path))
    return videos


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 s long videos, fewer runs")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per clip")
    ap.add_argument("--starts", type=int, default=None, help="random starts for dense sampling")
    ap.add_argument("--only", default=None, help="only videos whose label contains this text")
    ap.add_argument("--cache", type=Path,
                    default=Path(tempfile.gettempdir()) / "ovar-bench-decode")
    ap.add_argument("--seek-overhead", type=int, default=None,
                    help=f"override ovar's SEEK_OVERHEAD_FRAMES "
                         f"({ovar_decode.SEEK_OVERHEAD_FRAMES})")
    ap.add_argument("--threads", choices=("auto", "none"), default="auto",
                    help="ovar's decoder threading (the baseline keeps PyAV's default)")
    ap.add_argument("--no-skip", action="store_true",
                    help="ovar decodes non-reference frames too (isolates the planning gain)")
    ap.add_argument("--no-peers", action="store_true", help="only ovar and the PyAV baseline")
    ap.add_argument("--cpu", action="store_true",
                    help="time CPU seconds of this process (all threads) instead of wall time: "
                         "steadier on a loaded machine, but blind to gains from parallelism")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.cpu else time.perf_counter
    repeats = args.repeats or (2 if args.quick else 3)
    starts = args.starts or (3 if args.quick else 6)
    if args.seek_overhead is not None:
        ovar_decode.SEEK_OVERHEAD_FRAMES = args.seek_overhead
    ovar_decode.THREADED_DECODING = args.threads == "auto"
    if args.no_skip:
        ovar_decode.SKIP_NONREF_CODECS = frozenset()

    readers = {"ovar": ovar_frames, "pyav sequential": baseline_frames}
    peers: list[str] = []
    if not args.no_peers:
        for name, make in (("torchcodec", torchcodec_reader), ("decord", decord_reader)):
            read, why = make()
            if read is None:
                print(f"({why}: not compared)")
            else:
                readers[name] = read
                peers.append(name)

    videos = build_videos(args.cache, args.quick, args.only)
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
            rows.append((label, sampling, measure(str(path), clips, readers, repeats)))
            print(f"  {label:32s} {sampling:12s} done", file=sys.stderr, flush=True)

    names = list(readers)
    print()
    clock = "CPU ms (process, all threads)" if args.cpu else "ms (wall)"
    print(f"{clock} per clip (open + 8 frames), median of runs; 'differs' = other pixels than ovar's.")
    print("| video | sampling | " + " | ".join(names) + " | fastest other / ovar |")
    print("|---|---|" + "---:|" * (len(names) + 1))
    for label, sampling, result in rows:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in (result[n] for n in names)]
        others = [v for n, v in result.items() if n != "ovar" and isinstance(v, float)]
        ratio = (f"{min(others) / result['ovar']:.2f}x"
                 if others and isinstance(result["ovar"], float) else "-")
        print(f"| {label} | {sampling} | " + " | ".join(cells) + f" | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
