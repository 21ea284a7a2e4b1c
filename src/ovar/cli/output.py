"""Writing predictions as text, JSON or CSV."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from ..inference.results import VideoPrediction


def write_text(results: list[VideoPrediction], out: TextIO) -> None:
    for result in results:
        if result.error is not None:
            continue
        print(result.video, file=out)
        width = max(len(p.label) for p in result.predictions)
        for position, p in enumerate(result.predictions, 1):
            print(f"  {position:>2}. {p.label:<{width}}  {p.score:.4f}", file=out)
        for segment in result.segments or []:
            ranked = ", ".join(f"{p.label} ({p.score:.2f})" for p in segment.predictions[:3])
            print(f"  {segment.start:7.2f}-{segment.end:7.2f} s  {ranked}", file=out)


def write_json(results: list[VideoPrediction], out: TextIO) -> None:
    json.dump([r.to_dict() for r in results if r.error is None], out, indent=2, ensure_ascii=False)
    out.write("\n")


def write_csv(results: list[VideoPrediction], out: TextIO) -> None:
    """One row per (video, rank); segment rows carry their window, whole-video rows leave it empty."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["video", "start", "end", "rank", "label", "score"])
    for result in results:
        if result.error is not None:
            continue
        for position, p in enumerate(result.predictions, 1):
            writer.writerow([result.video, "", "", position, p.label, f"{p.score:.6f}"])
        for segment in result.segments or []:
            for position, p in enumerate(segment.predictions, 1):
                writer.writerow([result.video, f"{segment.start:.3f}", f"{segment.end:.3f}", position,
                                 p.label, f"{p.score:.6f}"])


WRITERS = {"text": write_text, "json": write_json, "csv": write_csv}
