"""``ovar train``: run a recipe through the training engine (``ovar eval`` is in eval_cmd).

Under ``torchrun --nproc_per_node N -m ovar train ...`` every process runs this command
and the engine trains with DistributedDataParallel; a plain ``ovar train`` is one process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ..errors import OvarError

_HELP_OVERRIDES = "configuration overrides, e.g. optim.lr=1e-5 data.frames=16"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a recipe (one process, or many under torchrun)",
                           description="Train a recipe. Any configuration key can be overridden: "
                                       "ovar train --config FILE optim.lr=1e-5 data.frames=16")
    _common(train)
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                       help="continue a run: the newest intact checkpoint in run.out_dir, or the file given")
    train.add_argument("--overwrite", action="store_true",
                       help="delete what run.out_dir holds (an earlier run) and start afresh")
    train.add_argument("--model", dest="backbone_name", default=None, metavar="NAME",
                       help="backbone architecture (model.backbone), e.g. ViT-B-16 or tiny")
    train.add_argument("--pretrained", dest="backbone_weights", default=None, metavar="TAG|FILE|none",
                       help="backbone weights (model.pretrained): an open_clip tag, a local file, or none")
    train.set_defaults(handler=run_train)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None, help="YAML file holding the differences from defaults")
    parser.add_argument("--recipe", default=None,
                        help="recipe name (default: recipe.name in the config); 'module:name' loads a user module")
    parser.add_argument("--out", metavar="DIR", default=None, help="run directory (run.out_dir)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first undecodable video instead of skipping and reporting it")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=_HELP_OVERRIDES)


def load_run(args: argparse.Namespace):
    """The config (file plus KEY=VALUE overrides) and recipe that ``args`` name."""
    from ..config import load_config
    from ..recipes import load_recipe

    overrides = list(args.overrides)
    for text in overrides:
        if isinstance(text, str) and "=" not in text:
            raise OvarError(f"'{text}': overrides are KEY=VALUE (e.g. optim.lr=1e-5)")
    # Options are typed already: they go in as (key, value), never through text again.
    if args.out is not None:
        overrides.append(("run.out_dir", args.out))
    if args.strict:
        overrides.append(("data.strict", True))
    if getattr(args, "backbone_name", None) is not None:  # train's --model/--pretrained
        overrides.append(("model.backbone", args.backbone_name))
    if getattr(args, "backbone_weights", None) is not None:
        overrides.append(("model.pretrained", args.backbone_weights))
    if getattr(args, "resume", None) is not None:
        overrides.append(("run.resume", args.resume))
    config = load_config(args.config, overrides)
    name = args.recipe or config.recipe.get("name")
    if not name:
        raise OvarError("no recipe: pass --recipe NAME or set recipe.name in the config")
    return config, load_recipe(name)(config)


def run_train(args: argparse.Namespace) -> int:
    from ..train import train

    config, recipe = load_run(args)
    result = train(config, recipe, overwrite=args.overwrite)
    if result.stopped:
        # Preempted or interrupted: the checkpoint is written; a non-zero status tells a job
        # script the run is not finished (128 + the signal's number, as a shell reports it).
        print(f"ovar: stopped by {result.stopped} at epoch {result.epochs_completed + 1}, step {result.step}; "
              f"checkpoint {result.checkpoint}; continue with --resume", file=sys.stderr)
        return 128 + int(getattr(signal, result.stopped))
    if os.environ.get("RANK", "0") == "0":  # the result, as every command prints it: JSON on stdout
        print(json.dumps({"run_dir": str(result.run_dir), "epochs": result.epochs_completed,
                          "model": _model_path(result.run_dir), **(result.metrics or {})}))
    return 0


def _model_path(run_dir) -> str | None:
    """The file `ovar predict --checkpoint` reads from the run (None if it wrote none)."""
    from ..hub import MODEL_FILE

    for name in (MODEL_FILE, "final.pt"):
        if (run_dir / name).is_file():
            return str(run_dir / name)
    return None

