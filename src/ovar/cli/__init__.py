"""The ``ovar`` command line.

User errors (bad paths, labels, model names) print one line on stderr and exit with
status 2; a batch in which some videos failed exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import OvarError
from . import cache_cmd, convert_cmd, data_cmd, eval_cmd, models_cmd, predict_cmd, train_cmd
from . import demo_cmd, export_cmd, pretrain_cmd, serve_cmd, weights_cmd

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        print(f"ovar: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="ovar", description="Open-vocabulary action recognition with CLIP.")
    parser.add_argument("--version", action="version", version=f"ovar {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    predict_cmd.add_parser(sub)
    models_cmd.add_parser(sub)
    data_cmd.add_parser(sub)
    train_cmd.add_parsers(sub)
    eval_cmd.add_parser(sub)
    convert_cmd.add_parser(sub)
    cache_cmd.add_parser(sub)
    weights_cmd.add_parser(sub)
    export_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    demo_cmd.add_parser(sub)
    pretrain_cmd.add_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced after start-up)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _show_library_logs() -> None:
    """ovar's own INFO messages on stderr as ``ovar: ...`` lines (other libraries' untouched)."""
    logger = logging.getLogger("ovar")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ovar: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _show_library_logs()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except OvarError as exc:
        print(f"ovar: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ovar: interrupted", file=sys.stderr)
        return 130
