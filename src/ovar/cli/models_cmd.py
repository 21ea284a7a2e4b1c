"""``ovar models``: list backbone architectures and their pretrained tags, then what the
hub (:mod:`ovar.hub`) builds: model-file kinds, recipes and checkpoint sources."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the backbone names and their pretrained tags")
    parser.add_argument("--filter", default="", help="only names containing this text (case-insensitive)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..models.backbone import list_models, list_pretrained

    for name in list_models():
        if args.filter.lower() in name.lower():
            tags = ", ".join(list_pretrained(name))
            print(f"{name:32s} {tags}" if tags else name)
    from ..hub import CHECKPOINT_SOURCES, MODEL_KINDS, RECIPES

    if not args.filter:
        print(f"\nmodel kinds: {', '.join(MODEL_KINDS)}\nrecipes: {', '.join(RECIPES)}"
              f"\ncheckpoint sources: {', '.join(CHECKPOINT_SOURCES)}")
    return 0
