"""Writing predictions as text, JSON, JSON lines or CSV.

Every video given appears in the output: one that failed carries its ``error`` (and no
ranking), one scored despite damage (e.g. a truncated file) carries a ``warning``.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from ..inference.results import VideoPrediction

CSV_FIELDS = ["video", "start", "end", "rank", "label", "score", "error", "warning"]


def write_text(results: list[VideoPrediction], out: TextIO) -> None:
    for result in results:
        print(result.video, file=out)
        if result.error is not None:
            print(f"  error: {result.error}", file=out)
            continue
        if result.warning is not None:
            print(f"  warning: {result.warning}", file=out)
        width = max(len(p.label) for p in result.predictions)
        for position, p in enumerate(result.predictions, 1):
            print(f"  {position:>2}. {p.label:<{width}}  {p.score:.4f}", file=out)
        for segment in result.segments or []:
            ranked = ", ".join(f"{p.label} ({p.score:.2f})" for p in segment.predictions[:3])
            print(f"  {segment.start:7.2f}-{segment.end:7.2f} s  {ranked}", file=out)


def write_json(results: list[VideoPrediction], out: TextIO) -> None:
    json.dump([r.to_dict() for r in results], out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_jsonl_line(result: VideoPrediction, out: TextIO) -> None:
    """One result as one JSON line, flushed at once (a killed run keeps every finished line)."""
    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    out.flush()


def write_jsonl(results: list[VideoPrediction], out: TextIO) -> None:
    for result in results:
        write_jsonl_line(result, out)


def write_csv(results: list[VideoPrediction], out: TextIO) -> None:
    """One row per (video, rank); segment rows carry their window, whole-video rows leave it empty.

    A failed video is one row with its ``error`` and empty rank/label/score; a damaged one
    repeats its ``warning`` on each of its rows.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for result in results:
        if result.error is not None:
            writer.writerow([result.video, "", "", "", "", "", result.error, ""])
            continue
        warning = result.warning or ""
        for position, p in enumerate(result.predictions, 1):
            writer.writerow([result.video, "", "", position, p.label, f"{p.score:.6f}", "", warning])
        for segment in result.segments or []:
            for position, p in enumerate(segment.predictions, 1):
                writer.writerow([result.video, f"{segment.start:.3f}", f"{segment.end:.3f}", position,
                                 p.label, f"{p.score:.6f}", "", warning])


WRITERS = {"text": write_text, "json": write_json, "jsonl": write_jsonl, "csv": write_csv}
