"""``ovar data synth OUT``: generate the SynthActions dataset (videos, lists, class files)."""

from __future__ import annotations

import argparse
import json
import sys

from .argtypes import comma_words, non_negative_int, output_dir, positive_int


def add_synth_parser(data_sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` command to the sub-commands of ``ovar data``."""
    p = data_sub.add_parser(
        "synth", help="generate SynthActions: simple objects doing actions, as a base-to-novel dataset",
        description="Generate SynthActions into OUT: encoded clips of coloured shapes doing actions, class names "
                    "such as 'a red circle moving left', and base2novel lists "
                    "(ovar eval --protocol base2novel --root OUT --lists OUT/lists --datasets synth).")
    p.add_argument("out", metavar="OUT", type=output_dir, help="output folder (clips already there are kept)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of every clip (default 0)")
    p.add_argument("--colours", type=comma_words, default=["red", "green", "blue", "yellow"],
                   help="comma-separated colours (of: red, green, blue, yellow, purple, orange)")
    p.add_argument("--shapes", type=comma_words, default=["circle", "square", "triangle"],
                   help="comma-separated shapes (of: circle, square, triangle, diamond)")
    p.add_argument("--actions", type=comma_words, default=None,
                   help="comma-separated actions (default all: moving left/right/up/down, rotating "
                        "clockwise/anticlockwise, growing, shrinking, bouncing, blinking, staying still)")
    p.add_argument("--shots", type=positive_int, default=8, help="training clips per base class (default 8)")
    p.add_argument("--per-class", type=positive_int, default=4,
                   help="evaluation clips per class, base (val) and novel (test) (default 4)")
    p.add_argument("--size", type=positive_int, default=64, help="frame side in pixels (default 64)")
    p.add_argument("--frames", default="12-16", help="frames per clip, N or MIN-MAX (default 12-16)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.synth import SynthSpec, generate
    from ..errors import OvarError

    try:
        lo, _, hi = args.frames.partition("-")
        frames = (int(lo), int(hi or lo))
    except ValueError:
        raise OvarError(f"--frames: expected N or MIN-MAX, got '{args.frames}'") from None
    from ..data.synth_draw import ACTIONS

    spec = SynthSpec(colours=args.colours, shapes=args.shapes, actions=args.actions or list(ACTIONS), shots=args.shots,
                     eval_per_class=args.per_class, size=args.size, min_frames=frames[0], max_frames=frames[1],
                     seed=args.seed)

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            print(f"ovar data synth: {done}/{total} clips", file=sys.stderr, flush=True)

    data = generate(args.out, spec, progress)
    print(json.dumps({"root": str(data.root), "lists": str(data.lists), "base_classes": len(data.base),
                      "novel_classes": len(data.novel), "classes": str(data.root / "classes.json")}))
    return 0
