"""``ovar models``: list backbone architectures and their pretrained tags."""

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
    return 0
