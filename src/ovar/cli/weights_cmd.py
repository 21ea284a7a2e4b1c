"""``ovar weights average|interpolate``: average epoch checkpoints (SWA), mix weights with CLIP."""

from __future__ import annotations

import argparse

from ..errors import OvarError
from .argtypes import new_file, non_negative_int, unit_interval


def add_parser(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="average checkpoints (SWA) or interpolate weights towards CLIP")
    actions = weights.add_subparsers(dest="weights_command", metavar="ACTION")
    actions.required = True

    average = actions.add_parser(
        "average", help="uniform average of the epoch checkpoints with ids FROM..TO",
        description="Average the epoch checkpoints with ids FROM..TO (the CLIP counts as id 0). Accepts "
                    "Open-VCLIP/FROSTER checkpoints (checkpoint_epoch_NNNNN.pyth), ovar run checkpoints "
                    "(epoch_NNNN.pt) and ovar model files; the output has the inputs' layout.")
    average.add_argument("checkpoints", nargs="+", metavar="CKPT",
                         help="checkpoint files, or run directories (their checkpoints/ folder)")
    average.add_argument("--out", type=new_file, required=True, metavar="FILE", help="the averaged checkpoint to write")
    average.add_argument("--from-epoch", type=non_negative_int, default=2, metavar="N",
                         help="first checkpoint id averaged (default 2, as Open-VCLIP's swa_2_22)")
    average.add_argument("--to-epoch", type=non_negative_int, default=None, metavar="M",
                         help="last checkpoint id averaged (default: the last one)")
    average.add_argument("--clip", default=None, metavar="FILE",
                         help="the original CLIP weights: fixes the averaged key set and order of "
                              "Open-VCLIP/FROSTER checkpoints; it is id 0")
    average.add_argument("--include-clip", action="store_true",
                         help="also average the CLIP itself (id 0) into the CLIP weights")
    average.set_defaults(handler=run_average)

    interp = actions.add_parser(
        "interpolate", help="ratio * A + (1 - ratio) * B (e.g. patch a fine-tuned model towards CLIP)",
        description="Write ratio * A + (1 - ratio) * B. A and B may be CLIP weights files or checkpoints; "
                    "a CLIP side is mixed into the other side's CLIP weights only, whose layout is kept.")
    interp.add_argument("a", metavar="A", help="weights weighted by RATIO (e.g. the original CLIP)")
    interp.add_argument("b", metavar="B", help="weights weighted by 1 - RATIO (e.g. the fine-tuned checkpoint)")
    interp.add_argument("--ratio", type=unit_interval, required=True, metavar="R", help="weight of A, in [0, 1]")
    interp.add_argument("--out", type=new_file, required=True, metavar="FILE", help="the file to write")
    interp.set_defaults(handler=run_interpolate)


def run_average(args: argparse.Namespace) -> int:
    from ..train.checkpoint import save_atomic
    from ..train.weights import average_checkpoints, expand_checkpoint_paths

    if args.to_epoch is not None and args.to_epoch < args.from_epoch:
        raise OvarError(f"--to-epoch {args.to_epoch} is before --from-epoch {args.from_epoch}")
    paths = expand_checkpoint_paths(args.checkpoints)
    payload, info = average_checkpoints(paths, clip=args.clip, include_clip=args.include_clip,
                                        start=args.from_epoch, end=args.to_epoch)
    save_atomic(payload, args.out)
    ids = ", ".join("CLIP" if i == 0 and info.with_clip else str(i) for i in info.ids)
    print(f"averaged {len(info.ids)} {info.layout} checkpoint(s) (ids {ids}): {info.tensors} tensors -> {args.out}")
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    from ..train.checkpoint import save_atomic
    from ..train.interpolation import interpolate_files

    payload, info = interpolate_files(args.a, args.b, args.ratio)
    save_atomic(payload, args.out)
    print(f"interpolated {info.tensors} tensors ({args.ratio:g} x {args.a} + {1 - args.ratio:g} x {args.b}), "
          f"{info.layout} layout -> {args.out}")
    return 0
