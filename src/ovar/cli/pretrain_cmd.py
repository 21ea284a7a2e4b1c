"""``ovar pretrain-tiny OUT.pt``: contrastive pretraining of the tiny CLIP on SynthActions frames."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .argtypes import comma_words, finite_positive_float, new_file, non_negative_int, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain-tiny", help="pretrain the tiny CLIP on captioned synthetic frames (offline)",
                       description="Train the `tiny` CLIP from random weights on single SynthActions frames with "
                                   "captions naming colour, shape, size and place (never motion), and save an "
                                   "open_clip checkpoint that --pretrained FILE loads.")
    p.add_argument("out", metavar="OUT.pt", type=new_file, help="checkpoint to write")
    p.add_argument("--steps", type=positive_int, default=500, help="optimiser steps (default 500)")
    p.add_argument("--batch-size", type=positive_int, default=96, help="image-caption pairs per step (default 96)")
    p.add_argument("--lr", type=finite_positive_float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--colours", type=comma_words, default=None, help="comma-separated colours (default: all)")
    p.add_argument("--shapes", type=comma_words, default=None, help="comma-separated shapes (default: all)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import OvarError
    from ..train.pretrain_tiny import PretrainOptions, pretrain

    opts = PretrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           threads=args.threads)
    from ..data import synth_draw as D

    for name, words, known in (("--colours", args.colours, D.COLOURS), ("--shapes", args.shapes, D.SHAPES)):
        for w in words or []:
            if w not in known:
                raise OvarError(f"{name}: unknown '{w}' (known: {', '.join(known)})")
    if args.colours:
        opts.colours = args.colours
    if args.shapes:
        opts.shapes = args.shapes
    start = time.monotonic()

    def progress(step: int, total: int, loss: float) -> None:
        if step == total or step % 25 == 0:
            print(f"ovar pretrain-tiny: step {step}/{total}, loss {loss:.3f}, {time.monotonic() - start:.0f} s",
                  file=sys.stderr, flush=True)

    path = pretrain(opts, args.out, progress)
    print(json.dumps({"checkpoint": str(path), "steps": args.steps, "seconds": round(time.monotonic() - start, 1)}))
    return 0
