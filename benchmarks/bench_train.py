"""Training throughput and peak memory of each recipe (model step only, batches pre-loaded).

    python benchmarks/bench_train.py                          # tiny backbone on CPU
    python benchmarks/bench_train.py --backbone ViT-B-16 --device cuda --precision bf16

Each recipe trains on generated videos: the clips are decoded and augmented once, then
``--steps`` optimiser steps run on them, so the figure is the model's forward + backward +
AdamW step, not decoding. Peak memory is the CUDA allocator's peak on a GPU and the
process's peak resident size on CPU.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _dataset(root: Path, classes: int, per_class: int) -> None:
    from videogen import make_video

    lines = []
    for label in range(classes):
        for i in range(per_class):
            make_video(root / f"{label}_{i}.mp4", num_frames=32, fps=16, size=(128, 96))
            lines.append(f"{label}_{i}.mp4 {label}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(f"action {i}" for i in range(classes)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # one recipe, in this process
    args = parser.parse_args()
    if args.only is None:
        # One process per recipe, so that the peak resident size is that recipe's own.
        import subprocess

        print(f"backbone {args.backbone}, device {args.device}, {args.precision}, batch {args.batch} x "
              f"{args.frames} frames, {args.steps} steps")
        print(f"{'recipe':12s}{'clips/s':>10s}{'peak memory':>16s}", flush=True)
        for name in ("actionclip", "text4vis"):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", name], check=True)
        return

    from ovar.config import load_config
    from ovar.recipes import get_recipe

    device = torch.device(args.device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if args.precision == "bf16" else torch.float16)
                if args.precision != "fp32" else nullcontext())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _dataset(root, classes=4, per_class=max(1, args.batch // 4))
        for name in (args.only,):
            config = load_config(None, [f"recipe.name={name}", f"model.backbone={args.backbone}",
                                        "model.pretrained=none", f"data.root={root}",
                                        f"data.train_list={root / 'train.txt'}", f"data.classes={root / 'classes.txt'}",
                                        f"data.frames={args.frames}"])
            recipe = get_recipe(name)(config)
            model = recipe.build_model().to(device)
            data = recipe.train_dataset(model)
            items = [data[i % 4 * max(1, args.batch // 4)] for i in range(args.batch)]
            batch = {"video": torch.stack([it["video"] for it in items]).to(device),
                     "label": torch.tensor([it["label"] for it in items], device=device)}
            params = [p for g in recipe.param_groups(model) for _, p in g.params]
            optimizer = torch.optim.AdamW(params, lr=1e-5)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()

            def step() -> None:
                with autocast:
                    loss = recipe.training_step(model, batch)["loss"]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            step()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (GPU)"
            else:
                peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (RSS)"
            rate = args.steps * args.batch / (time.perf_counter() - start)
            print(f"{name:12s}{rate:10.1f}{peak:>16s}")


if __name__ == "__main__":
    main()
