"""``ovar data splits``: list the bundled protocol splits and class lists."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

from ..errors import OvarError

if TYPE_CHECKING:
    from ..data.splits import SplitInfo


def add_splits_parser(data_sub: argparse._SubParsersAction) -> None:
    """Add the ``splits`` command to the sub-commands of ``ovar data``."""
    parser = data_sub.add_parser(
        "splits", help="list the bundled protocol splits with class and video counts",
        description="List the bundled splits (base-to-novel, cross-dataset, half-class) with "
                    "the classes and videos of each part, and the bundled class lists.")
    parser.add_argument("filter", nargs="?", default="",
                        help="only names containing this text (case-insensitive), e.g. 'b2n' or 'hmdb'")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the table (or JSON) of bundled splits matching ``args.filter``."""
    from ..data.splits import class_names, list_class_lists, list_splits

    out = out or sys.stdout
    wanted = args.filter.lower()
    splits = [info for info in list_splits() if wanted in info.name.lower()]
    lists = [(name, len(class_names(name))) for name in list_class_lists()
             if wanted in f"classes/{name}".lower()]
    if not splits and not lists:
        raise OvarError(f"no bundled split or class list matches '{args.filter}'")
    if args.format == "json":
        payload = {
            "splits": [{"name": info.name,
                        "parts": [{"part": p.name, "num_classes": p.num_classes, "num_videos": p.num_videos}
                                  for p in info.parts]} for info in splits],
            "class_lists": [{"name": f"classes/{name}", "num_classes": count} for name, count in lists],
        }
        json.dump(payload, out, indent=2)
        out.write("\n")
        return 0
    _write_table(splits, lists, out)
    return 0


def _write_table(splits: list[SplitInfo], lists: list[tuple[str, int]], out: TextIO) -> None:
    rows = [(info.name if i == 0 else "", p.name, str(p.num_classes), str(p.num_videos))
            for info in splits for i, p in enumerate(info.parts)]
    rows += [(f"classes/{name}", "-", str(count), "-") for name, count in lists]
    header = ("split", "part", "classes", "videos")
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(4)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}",
              file=out)
