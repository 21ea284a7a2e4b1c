"""``ovar convert``: another system's released checkpoint -> an ovar model file."""

from __future__ import annotations

import argparse

from ..hub import CHECKPOINT_SOURCES, FUSION_TYPES, TEMPORAL_TYPES
from .argtypes import checkpoint, new_file, positive_int, unit_interval

SOURCES = tuple(CHECKPOINT_SOURCES)  # the hub's table imports no torch (`ovar --help` stays fast)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="convert an ActionCLIP/Text4Vis/EVL/Open-VCLIP/FROSTER checkpoint "
                                            "to an ovar model file")
    parser.add_argument("checkpoint", type=checkpoint, help="the checkpoint file written by the original code")
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="which code wrote it")
    parser.add_argument("--clip", default=None,
                        help="original CLIP weights (required for text4vis: its text tower; evl: its image tower; "
                             "open_vclip: its text tower builds the classifier, and --patch-ratio needs it)")
    parser.add_argument("--fusion", default=None, choices=FUSION_TYPES,
                        help="temporal fusion type (default: inferred from the checkpoint's keys)")
    parser.add_argument("--fusion-weights", default=None,
                        help="actionclip: take fusion_model_state_dict from this file instead")
    parser.add_argument("--frames", type=positive_int, default=None, help="frames per clip the model expects")
    parser.add_argument("--heads", type=positive_int, default=None,
                        help="evl: decoder attention heads (no shape records them; known for EVL's released "
                             "ViT-B/16 and ViT-L/14 decoders, required otherwise)")
    parser.add_argument("--labels", default=None, help="evl: class-name file labelling the head's outputs, in order")
    parser.add_argument("--temporal", default=None, choices=TEMPORAL_TYPES,
                        help="open_vclip/froster: temporal attention of the image tower (default expand_temporal_view)")
    parser.add_argument("--patch-ratio", type=unit_interval, default=None, metavar="R",
                        help="open_vclip/froster: store R*CLIP + (1-R)*checkpoint weights (the released "
                             "Open-VCLIP evaluation uses 0.5; needs --clip)")
    parser.add_argument("--out", type=new_file, required=True, help="the ovar model file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..models.convert import convert_checkpoint
    from ..models.model_file import save_model_file

    if args.frames is not None and args.frames < 1:
        from ..errors import OvarError

        raise OvarError(f"--frames must be positive, got {args.frames}")
    options = {"fusion": args.fusion, "frames": args.frames, "temporal": args.temporal,
               "patch_ratio": args.patch_ratio}
    if args.fusion_weights is not None:
        options["fusion_weights"] = args.fusion_weights
    if args.source == "evl":
        from ..data.splits import read_classes

        options["num_heads"] = args.heads
        options["class_names"] = read_classes(args.labels) if args.labels else None
    model = convert_checkpoint(args.source, args.checkpoint, clip=args.clip, **options)
    path = save_model_file(args.out, model)
    fusion = getattr(model, "fusion_type", None)  # EVL has a decoder, not a fusion module
    print(f"wrote {path} ({model.kind}, {f'fusion {fusion}, ' if fusion else ''}{model.frames} frames)")
    return 0
