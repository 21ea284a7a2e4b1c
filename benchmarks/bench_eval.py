"""Protocol evaluation throughput: ovar's list scoring against the per-batch text encoding
of the original FROSTER/Open-VCLIP test loops, side by side.

    python benchmarks/bench_eval.py                                  # tiny backbone, CPU
    python benchmarks/bench_eval.py --backbone ViT-B-16 --classes 101 --device cuda

Both score the same generated videos against the same classes with the same model (29
FROSTER templates); both decode with the same loader and workers. The baseline
re-encodes every class text for every batch, as the originals' test loops do; ovar
encodes them once per class list (:func:`ovar.eval.evaluate_set`), and also writes the
per-video scores to disk as it goes. The script checks that both give the same scores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def baseline(model, dataset, names, batch_size: int, workers: int, device) -> torch.Tensor:
    from ovar.data.loader import build_loader
    from ovar.eval import score_views

    loader = build_loader(dataset, batch_size, workers=workers, shuffle=False, seed=0, distributed=False)
    rows = []
    with torch.no_grad():
        for batch in loader:
            classifier = model.classifier(names, cache=False)  # the originals: once per batch
            rows.append(score_views(model, batch["video"].to(device), classifier, "sum_logits").cpu())
    return torch.cat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--classes", type=int, default=101, help="class names (UCF101 has 101)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--views", default="1x1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from ovar.data.records import VideoRecord
    from ovar.eval import ModelScorer, evaluate_set
    from ovar.protocols.sources import EvalSettings, eval_dataset
    from ovar.models.open_vclip import FrosterModel
    from ovar.models import load_backbone
    from videogen import make_video

    root = Path(tempfile.mkdtemp(prefix="bench_eval_"))
    for i in range(args.videos):
        make_video(root / f"v{i}.mp4", num_frames=48, fps=24, size=(128, 96))
    names = [f"action number {c}" for c in range(args.classes)]
    records = [VideoRecord(f"v{i}.mp4", i % args.classes) for i in range(args.videos)]
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = FrosterModel(load_backbone(args.backbone, "none"), frames=args.frames).to(device).eval()
    settings = EvalSettings(root=root, views=args.views, frames=args.frames, workers=args.workers)
    dataset = eval_dataset(records, model.backbone, args.frames, settings)
    baseline(model, dataset, names[:2], args.batch_size, 0, device)  # warm-up (threads, allocator)

    start = time.perf_counter()
    reference = baseline(model, dataset, names, args.batch_size, args.workers, device)
    base_s = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate_set(ModelScorer(model, fusion="sum_logits"), dataset, names, root / "scores",
                          batch_size=args.batch_size, workers=args.workers, progress=False, plots=False)
    ovar_s = time.perf_counter() - start
    scores = torch.load(root / "scores" / "scores.pt", weights_only=True)["scores"]
    torch.testing.assert_close(scores, reference, atol=1e-4, rtol=1e-4)
    assert result.num_videos == args.videos

    print(f"{args.videos} videos x {args.views} views, {args.classes} classes x 29 templates, "
          f"{args.backbone}, {device}, batch {args.batch_size}, {args.workers} workers")
    print(f"{'':32}{'seconds':>10}{'videos/s':>10}")
    print(f"{'baseline (texts per batch)':32}{base_s:10.2f}{args.videos / base_s:10.1f}")
    print(f"{'ovar (texts once per list)':32}{ovar_s:10.2f}{args.videos / ovar_s:10.1f}")
    print(f"speed-up: {base_s / ovar_s:.2f}x")


if __name__ == "__main__":
    main()
