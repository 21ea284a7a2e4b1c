"""Zero-shot inference throughput: ovar's model path vs. the bare open_clip image tower.

Both sides see the same preprocessed clips (B, T, 3, S, S). The baseline only runs
``open_clip`` ``encode_image`` on every frame; ovar runs its video encoder (per-frame
embeddings, normalised and averaged) and scores the clips against the class texts.
It shows that a second run with the same labels encodes no text.

End to end (videos/s over a folder of generated videos, decoding included, same run):
``ovar.predict`` (workers automatic) in fp32 and in bf16 (or fp16 on a GPU), against
bare open_clip (PyAV decodes each video in turn, the same 8 segment-middle frames,
``encode_image`` and mean pooling) and HF X-CLIP (a random-weight ``XCLIPModel`` of the
same vision size fed the same frames; skipped with a note without ``transformers``).

    python benchmarks/bench_predict.py                 # ViT-B-16, random weights
    python benchmarks/bench_predict.py --model tiny    # quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _time_pair(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of ``a`` and ``b``, run alternately so machine load drifts hit both alike."""
    a(), b()  # warm-up: allocator, kernels, lazy initialisation
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, samples[0]), (b, samples[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--clips", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--videos", type=int, default=8, help="end to end: generated videos in the folder")
    parser.add_argument("--batch-size", type=int, default=16, help="end to end: clips per forward pass")
    parser.add_argument("--compile", action="store_true", help="end to end: also time ovar with --compile")
    args = parser.parse_args()

    import os

    # A private cache: the first text encoding below is really a miss, the second a hit.
    cache_root = tempfile.mkdtemp(prefix="ovar-bench-")
    os.environ["OVAR_CACHE_DIR"] = cache_root

    import ovar
    from ovar.models import load_model
    from ovar.text import TextEmbeddingCache, build_classifier

    torch.manual_seed(0)
    model = load_model(args.model, args.pretrained, device=args.device)
    size = model.image_size
    clips = torch.randn(args.clips, args.frames, 3, size, size, device=args.device)
    labels = [f"action number {i}" for i in range(args.classes)]
    autocast = torch.autocast("cuda", dtype=torch.float16) if args.device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    start = time.perf_counter()
    classifier = build_classifier(model.backbone, labels, "open_vclip")
    first_text = time.perf_counter() - start
    start = time.perf_counter()
    # A fresh cache object has only the disk copy, as a second `ovar predict` process would.
    build_classifier(model.backbone, labels, "open_vclip", cache=TextEmbeddingCache())
    second_text = time.perf_counter() - start

    @torch.no_grad()
    def bare() -> None:
        with autocast:
            model.backbone.clip.encode_image(clips.flatten(0, 1))
        sync()

    @torch.no_grad()
    def ours() -> None:
        with autocast:
            model.logits(model.encode_video(clips), classifier).softmax(-1)
        sync()

    t_bare, t_ours = _time_pair(bare, ours, args.repeats)
    print(f"model {args.model} ({args.pretrained}), device {args.device}, {args.clips} clips x {args.frames} frames "
          f"at {size}px, {args.classes} classes, median of {args.repeats}")
    print(f"{'':34s}{'clips/s':>10s}")
    print(f"{'bare open_clip encode_image':34s}{args.clips / t_bare:10.2f}")
    print(f"{'ovar encode_video + scoring':34s}{args.clips / t_ours:10.2f}")
    print(f"overhead: {100 * (t_ours / t_bare - 1):+.1f} % (goal <= 10 %)")
    print(f"text classifier ({args.classes} classes x 28 templates): first run {first_text:.2f} s, "
          f"second run {second_text * 1000:.1f} ms (from the on-disk cache)")

    from end_to_end import run_end_to_end

    run_end_to_end(args, model, labels)


if __name__ == "__main__":
    main()
