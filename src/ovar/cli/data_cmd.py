"""``ovar data``: inspect datasets (``check``) and the bundled protocol splits (``splits``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .data_check import add_check_parser
    from .data_splits import add_splits_parser
    from .data_synth import add_synth_parser

    parser = sub.add_parser("data", help="check a dataset list, list the bundled splits",
                            description="Dataset tools.")
    data_sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", parser_class=type(parser))
    data_sub.required = True
    add_check_parser(data_sub)
    add_splits_parser(data_sub)
    add_synth_parser(data_sub)
