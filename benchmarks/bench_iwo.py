"""Step time of Open-VCLIP with and without interpolated weight optimisation (IWO), and of
FROSTER, side by side.

    python benchmarks/bench_iwo.py                                   # tiny backbone on CPU
    python benchmarks/bench_iwo.py --backbone ViT-B-16 --device cuda --precision fp16

One optimiser step = the recipe's training_step (forward + loss), backward through the
GradScaler, gradient clipping and AdamW, on a fixed pre-made batch (no decoding), exactly
as the training engine runs it. The baseline is a plain Open-VCLIP step (IWO off); IWO adds
a second forward/backward at the interpolated weights (goal: at most 2.2x the baseline).
FROSTER adds the trainable text tower (2 templates x C classes per step), the frozen teacher
and the projectors. The three variants are timed in turns and the median is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _config(tmp: Path, recipe: str, args: argparse.Namespace, *extra: str):
    from ovar.config import load_config

    return load_config(None, [
        f"recipe.name={recipe}", f"model.backbone={args.backbone}", f"model.pretrained={args.pretrained}",
        f"data.classes={tmp / 'classes.txt'}", f"data.frames={args.frames}", f"run.out_dir={tmp / 'run'}",
        *([f"recipe.descriptions={tmp / 'descriptions.json'}"] if recipe == "froster" else []), *extra])


class Variant:
    """A recipe's model, optimiser and scaler, stepping on one fixed batch."""

    def __init__(self, label: str, config, batch: dict, device: torch.device, precision: str) -> None:
        from ovar.recipes import get_recipe
        from ovar.train.optim import build_optimizer

        self.label = label
        self.recipe = get_recipe(config.recipe["name"])(config)
        torch.manual_seed(0)
        self.model = self.recipe.build_model().to(device).train()
        self.optimizer = build_optimizer(self.model, self.recipe.param_groups(self.model), config.optim)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.autocast = (contextlib.nullcontext() if precision == "fp32" else
                         torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16))
        self.batch, self.device = batch, device
        self.times: list[float] = []

    def step(self) -> float:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        with self.autocast:
            loss = self.recipe.training_step(self.model, self.batch)["loss"]
        self.scaler.scale(loss.float()).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--pretrained", default="none", help="weights (random by default: timing only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()


    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "classes.txt").write_text("".join(f"action {i}\n" for i in range(args.classes)))
        (tmp / "descriptions.json").write_text(json.dumps(
            {str(i): f"Action {i}: a person performs the action numbered {i} in front of the camera."
             for i in range(args.classes)}))
        from ovar.models.backbone import load_backbone

        size = load_backbone(args.backbone, "none").image_size
        generator = torch.Generator().manual_seed(0)
        batch = {"video": torch.randn(args.batch, args.frames, 3, size, size, generator=generator).to(device),
                 "label": torch.randint(args.classes, (args.batch,), generator=generator).to(device)}
        variants = [Variant("open_vclip (plain)", _config(tmp, "open_vclip", args, "recipe.iwo=false"), batch, device,
                            args.precision),
                    Variant("open_vclip + IWO", _config(tmp, "open_vclip", args), batch, device, args.precision),
                    Variant("froster", _config(tmp, "froster", args), batch, device, args.precision)]
        for v in variants:  # warm-up: allocator, kernels, FROSTER's teacher text cache
            v.step(), v.step()
        for _ in range(args.steps):
            for v in variants:
                v.times.append(v.step())

    base = statistics.median(variants[0].times)
    print(f"backbone {args.backbone}, {args.device}, {args.precision}, batch {args.batch} x {args.frames} frames, "
          f"{args.classes} classes, median of {args.steps} steps")
    print(f"{'variant':22s}{'s/step':>10s}{'vs plain':>10s}")
    figures = {}
    for v in variants:
        median = statistics.median(v.times)
        figures[v.label] = median
        print(f"{v.label:22s}{median:10.4f}{median / base:9.2f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
