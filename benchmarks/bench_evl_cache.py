"""Epoch time of EVL training with and without the frozen-feature cache, side by side.

    python benchmarks/bench_evl_cache.py                          # tiny backbone, CPU
    python benchmarks/bench_evl_cache.py --backbone ViT-B-16 --videos 8 --frames 8

Each mode is one training run; epoch times come from the run's ``metrics.jsonl`` (the
training loop only: no model building or checkpoint writing). With the cache, epoch 1
decodes the videos, runs the frozen backbone and stores its features; later epochs read
the features from disk and run only the decoder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _epoch_seconds(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in records if r["kind"] == "epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=2, help="decoder layers")
    args = parser.parse_args()

    from ovar.config import load_config
    from ovar.recipes import get_recipe
    from ovar.train import train
    from videogen import make_video

    root = Path(tempfile.mkdtemp(prefix="bench_evl_"))
    lines = []
    for i in range(args.videos):
        make_video(root / f"v{i}.mp4", num_frames=48, fps=24, size=(128, 96))
        lines.append(f"v{i}.mp4 {i % 3}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("id,name\n0,a\n1,b\n2,c\n")
    results = {}
    for name, extra in (("no_cache", ["recipe.fixed_views=1"]),
                        ("cache", ["recipe.cache.enabled=true", "recipe.cache.views=1",
                                   f"recipe.cache.dir={root / 'cache'}"])):
        config = load_config(None, [
            "recipe.name=evl", f"recipe.num_layers={args.layers}", f"model.backbone={args.backbone}",
            "model.pretrained=none", f"data.root={root}", f"data.train_list={root / 'train.txt'}",
            f"data.classes={root / 'classes.csv'}", f"data.frames={args.frames}", f"data.sampling={args.frames}x4",
            "data.batch_size=4", "data.workers=0", f"schedule.epochs={args.epochs}", "schedule.warmup_epochs=0",
            "eval.every_n_epochs=0", f"run.out_dir={root / name}", "run.device=cpu", *extra])
        train(config, get_recipe("evl")(config))
        results[name] = _epoch_seconds(root / name)
    print(f"EVL, backbone {args.backbone}, {args.videos} videos x {args.frames} frames, "
          f"{args.layers} decoder layers, CPU")
    print(f"{'epoch':>5} {'no cache s':>11} {'cache s':>9} {'speed-up':>9}")
    for epoch, (plain, cached) in enumerate(zip(results["no_cache"], results["cache"]), 1):
        print(f"{epoch:>5} {plain:>11.2f} {cached:>9.2f} {plain / cached:>8.1f}x")


if __name__ == "__main__":
    main()
