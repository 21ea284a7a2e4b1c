"""`ovar serve` throughput and latency vs. a loop of `ovar.predict` calls in one process.

The same clips (generated, plus the shared real videos when present) are classified
against the same labels.  The baseline calls ``ovar.predict(clip, labels, model=model)``
one after another with a loaded model; the server (a subprocess on a free loopback port)
is asked by 1, 4 and 16 concurrent clients over HTTP.  Reported: requests per second and
the p50/p95 latency of one request.  The first answers are checked against the baseline's.

    python benchmarks/bench_serve.py --model tiny --pretrained none --requests 24   # quick
    python benchmarks/bench_serve.py --model ViT-B-16 --pretrained openai --upload
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

LABELS = ["surfing water", "skiing", "playing guitar", "juggling balls", "riding a bike", "swimming",
          "dancing ballet", "archery", "rowing a boat", "walking the dog", "cooking", "reading a book"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clips(folder: Path) -> list[str]:
    from videogen import make_video, shared_videos_dir

    names = []
    for i, (frames, size) in enumerate([(48, (320, 240)), (64, (256, 256)), (36, (340, 256)), (80, (320, 180))]):
        make_video(folder / f"gen{i}.mp4", num_frames=frames, fps=24, size=size)
        names.append(f"gen{i}.mp4")
    for name in ("part_0.mp4", "demo.mp4"):
        if (shared_videos_dir() / name).is_file():
            shutil.copy(shared_videos_dir() / name, folder / name)
            names.append(name)
    return names


def _summary(latencies: list[float], wall: float) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return len(latencies) / wall, statistics.median(ordered) * 1000, p95 * 1000


def _baseline(args, folder: Path, names: list[str]) -> tuple[tuple[float, float, float], dict]:
    import torch

    import ovar

    if args.threads:
        torch.set_num_threads(args.threads)
    model = ovar.load_model(args.model, args.pretrained, device=args.device)
    first = ovar.predict(folder / names[0], LABELS, model=model)  # warm-up: text embeddings, allocator
    latencies = []
    started = time.perf_counter()
    for i in range(args.requests):
        t = time.perf_counter()
        ovar.predict(folder / names[i % len(names)], LABELS, model=model)
        latencies.append(time.perf_counter() - t)
    return _summary(latencies, time.perf_counter() - started), first.to_dict()


def _serve(args, folder: Path, names: list[str], expected: dict) -> dict[int, tuple[float, float, float]]:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "ovar", "serve", "--model", args.model, "--pretrained", args.pretrained,
           "--root", str(folder), "--port", str(port), "--max-batch", str(args.max_batch),
           "--batch-wait-ms", str(args.batch_wait_ms), "--max-concurrency", str(args.max_concurrency),
           "--queue-size", "64", "--log-level", "warning"] + (["--device", args.device] if args.device else [])
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)

        client = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=max(args.clients)))

        def ask(i: int) -> float:  # one shared keep-alive client, as a real front end would use
            name = names[i % len(names)]
            t = time.perf_counter()
            if args.upload:
                with open(folder / name, "rb") as f:
                    r = client.post(f"{base}/v1/classify", data={"labels": ", ".join(LABELS)},
                                    files={"video": (name, f)})
            else:
                r = client.post(f"{base}/v1/classify", data={"path": name, "labels": ", ".join(LABELS)})
            r.raise_for_status()
            return time.perf_counter() - t

        first = httpx.post(f"{base}/v1/classify", data={"path": names[0], "labels": ", ".join(LABELS)},
                           timeout=300).json()[0]
        for got, want in zip(first["predictions"], expected["predictions"]):
            assert got["label"] == want["label"] and abs(got["score"] - want["score"]) < 1e-4, (got, want)
        results = {}
        for clients in args.clients:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(ask, range(args.requests)))
            results[clients] = _summary(latencies, time.perf_counter() - started)
        client.close()
        batching = httpx.get(f"{base}/v1/health", timeout=10).json()["batching"]
        print(f"server batching: {batching}")
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement")
    parser.add_argument("--clients", type=lambda s: [int(c) for c in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads on both sides (default: torch's; 1 is fairer on a loaded machine)")
    parser.add_argument("--upload", action="store_true", help="send the videos as uploads instead of paths")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="ovar-bench-serve-"))
    os.environ.setdefault("OVAR_CACHE_DIR", str(folder / "cache"))
    try:
        names = _clips(folder)
        base, expected = _baseline(args, folder, names)
        served = _serve(args, folder, names, expected)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nmodel {args.model}/{args.pretrained}, {len(names)} clips, {args.requests} requests each, "
          f"{'uploads' if args.upload else 'paths'}, torch threads {args.threads or 'default'}")
    print(f"| {'how':<28} | {'clients':>7} | {'req/s':>7} | {'p50 ms':>8} | {'p95 ms':>8} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    print(f"| {'ovar.predict loop (1 proc)':<28} | {1:>7} | {base[0]:>7.2f} | {base[1]:>8.1f} | {base[2]:>8.1f} |")
    for clients, (rps, p50, p95) in served.items():
        print(f"| {'ovar serve (HTTP)':<28} | {clients:>7} | {rps:>7.2f} | {p50:>8.1f} | {p95:>8.1f} |")


if __name__ == "__main__":
    main()
