"""``ovar demo``: SynthActions -> tiny CLIP pretraining -> base2novel with every recipe, offline."""

from __future__ import annotations

import argparse
import sys

from .argtypes import non_negative_int, output_dir, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="offline benchmark: every recipe on generated data, in minutes on a CPU",
                       description="Generate SynthActions, pretrain a tiny CLIP on its frames, run the "
                                   "base-to-novel protocol with the frozen CLIP and the five recipes, print the "
                                   "table, write OUT/report.md and save the best model as OUT/model.pt. "
                                   "Running it again reuses what OUT already holds.")
    p.add_argument("--out", metavar="DIR", type=output_dir, default="ovar-demo", help="output folder (default ./ovar-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller run (about 2 minutes on 2 CPU cores)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the data and every training (default 0)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ..demo import default_plan, run_demo
    from ..demo.report import chance_line, format_table

    plan = default_plan(seed=args.seed, quick=args.quick)
    plan.threads = args.threads
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"ovar demo [{time.monotonic() - start:5.0f} s] {message}", file=sys.stderr, flush=True)

    result = run_demo(args.out, plan, progress)
    print()
    print(format_table(result.rows))
    print(chance_line(result.rows))
    print()
    print(f"report: {result.report}")
    if result.model is not None:
        print(f"model:  {result.model}  (best HM: {result.best})")
        print(f"try:    ovar predict {result.out / 'data' / 'videos' / 'test'} --checkpoint {result.model} "
              f"--labels-file {result.labels} --top-k 3")
    return 0
