"""``ovar export``: a trained model -> a folder of safetensors weights, config.json and a model card."""

from __future__ import annotations

import argparse
import sys

from .argtypes import output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained model as model.safetensors + config.json + model card",
                       description="Export an `ovar train` run (or an ovar model file) to a folder that "
                                   "`--pretrained FOLDER` loads and that can be uploaded to the Hugging Face Hub "
                                   "(then loaded as --pretrained hf-hub:ORG/NAME).")
    p.add_argument("source", metavar="RUN_OR_CKPT",
                   help="an `ovar train` run folder, any model or checkpoint file it writes, or an ovar model file")
    p.add_argument("out", metavar="OUT", type=output_dir, help="the folder to write")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..models.export import export_model

    out = export_model(args.source, args.out)
    print(f"ovar: exported {args.source} to {out}", file=sys.stderr)
    return 0
