"""``ovar data check``: open every video of a list and report what cannot be decoded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..errors import OvarError
from .argtypes import finite_positive_float, new_file, non_negative_int, positive_int

EXIT_OK, EXIT_FAILED = 0, 1


def add_check_parser(data_sub: argparse._SubParsersAction) -> None:
    """Add the ``check`` command to the sub-commands of ``ovar data``."""
    parser = data_sub.add_parser(
        "check", help="open every video of a list and report the ones that fail to decode",
        description="Open every video of a list, decode a few frames of each, and report videos per "
                    "class, duration/fps/resolution statistics and every failure (path: reason). "
                    "Exit status 1 if any video failed.")
    parser.add_argument("list", metavar="LIST", help="video list file (path label, path,label or dir frames label)")
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="dataset root the list's relative paths start from (default: as written)")
    parser.add_argument("--workers", type=non_negative_int, default=None,
                        help="worker processes (default: min(4, CPU cores); 0 = this process)")
    parser.add_argument("--format", choices=("auto", "space", "comma", "frames"), default="auto",
                        help="list format (default: detected from the first line)")
    parser.add_argument("--classes", metavar="FILE", default=None,
                        help="class names (txt, id,name csv or json): names in the report, labels range-checked")
    parser.add_argument("--write-clean", type=new_file, metavar="FILE", default=None,
                        help="write the list without the failed entries here (same format)")
    parser.add_argument("--frames", type=positive_int, default=8,
                        help="frames decoded per video, segment-sampled (default 8)")
    parser.add_argument("--fps", type=finite_positive_float, default=None,
                        help="frame rate to assume for every video (frame folders default to 30)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept list paths that lead outside --root (absolute, or climbing out with ..)")
    parser.set_defaults(handler=run)






def _list_format(path: Path, fmt: str) -> str:
    """The concrete format of the list ``path`` (what ``auto`` detected), for writing it back."""
    if fmt != "auto":
        return fmt
    from ..data.lists import detect_format

    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return detect_format(line)
    raise OvarError(f"{path}: the list has no records")  # read_list has already said so


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Check the list; print the report on ``out`` (stdout). Returns the exit status."""
    from ..data.check import check_videos
    from ..data.splits import read_classes
    from ..data.lists import read_list, write_list

    out = out or sys.stdout
    if args.root is not None and not Path(args.root).is_dir():
        raise OvarError(f"{args.root}: dataset root is not a directory")
    names = read_classes(args.classes) if args.classes else None
    records = read_list(args.list, fmt=args.format, num_classes=len(names) if names else None)
    report = check_videos(records, args.root, workers=args.workers, frames=args.frames, fps=args.fps,
                          class_names=names, progress=not args.no_progress,
                          allow_outside_root=args.allow_outside_root)
    print(report.format(), file=out)
    if args.write_clean:
        clean = report.clean_records
        if clean:
            written = write_list(clean, args.write_clean, _list_format(Path(args.list), args.format))
            print(f"wrote {len(clean)} of {len(records)} entries to {written}", file=sys.stderr)
        else:  # an empty list file is not a list any reader accepts
            print(f"{args.write_clean}: not written, no video of the list decodes", file=sys.stderr)
    if report.failures and all(f.reason == "file not found" for f in report.failures) \
            and len(report.failures) == len(records):
        print("hint: no listed file exists; is --root right?", file=sys.stderr)
    return EXIT_FAILED if report.failures else EXIT_OK
