"""A protocol's report: the paper-like tables as Markdown and JSON, the failures, PNG plots.

Table cells are numbers, ``(mean, std)`` pairs (shown ``mean ± std``), text or None.
``report.json`` holds the same tables (a pair as ``{"mean", "std"}``), a ``summary`` keyed
by dataset/column, every evaluated part with its metrics, and the missing/failed videos.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..eval.plots import plot_bars, plot_grouped_bars

MAX_LISTED = 50  # videos per list named in report.md (report.json names them all)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


def _cell_md(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        return f"{value[0]:.2f} ± {value[1]:.2f}"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def _cell_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return {"mean": value[0], "std": value[1]}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def markdown_table(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _failure_lines(parts: list[dict[str, Any]], training_missing: dict[str, list[str]]) -> list[str]:
    missing = [(f"{p['key']} ({p['source']})", p["missing"]) for p in parts if p["missing"]]
    missing += list(training_missing.items())
    failed = [(f"{p['key']} ({p['source']})", p["failed"]) for p in parts if p["failed"]]
    total_missing = sum(len(v) for _, v in missing)
    total_failed = sum(len(v) for _, v in failed)
    lines = ["## Videos scored", ""]
    lines += [f"- {p['key']} ({p['source']}): {p['num_videos']} of {p['num_listed']} listed videos scored"
              + (f" ({len(p['missing'])} missing, {len(p['failed'])} failed)" if p["missing"] or p["failed"] else "")
              for p in parts]
    lines += ["", "## Missing and failed videos", ""]
    if not total_missing and not total_failed:
        return lines + ["None: every listed video was found and decoded.", ""]
    lines += [f"{total_missing} listed video(s) not found under the root (skipped), "
              f"{total_failed} video(s) that failed to decode (not scored).", ""]
    for title, paths in missing:
        lines.append(f"- missing in {title}: {len(paths)}")
        lines += [f"  - `{p}`" for p in paths[:MAX_LISTED]]
        if len(paths) > MAX_LISTED:
            lines.append(f"  - … {len(paths) - MAX_LISTED} more in report.json")
    for title, items in failed:
        lines.append(f"- failed in {title}: {len(items)}")
        lines += [f"  - `{path}`: {reason}" for path, reason in items[:MAX_LISTED]]
        if len(items) > MAX_LISTED:
            lines.append(f"  - … {len(items) - MAX_LISTED} more in report.json")
    return lines + [""]


def scored_counts(parts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per evaluated part: videos scored, listed, missing under the root and failed to decode."""
    return {p["key"]: {"scored": p["num_videos"], "listed": p["num_listed"], "missing": len(p["missing"]),
                       "failed": len(p["failed"])} for p in parts}


def write_report(out: Path, *, title: str, protocol: str, model: str, tables: list[Table],
                 summary: dict[str, Any], parts: list[dict[str, Any]], settings: dict[str, Any],
                 training_missing: dict[str, list[str]], grouped: tuple | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and ``plots/*.png`` into ``out``; return the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"protocol": protocol, "title": title, "model": model, "settings": settings, "summary": summary,
              "tables": [{"title": t.title, "columns": t.columns, "rows": [[_cell_json(c) for c in r] for r in t.rows]}
                         for t in tables],
              "parts": [{k: _cell_json(v) for k, v in p.items()} for p in parts],
              "failures": {"missing": {f"{p['key']} ({p['source']})": p["missing"] for p in parts if p["missing"]}
                           | training_missing,
                           "failed": {f"{p['key']} ({p['source']})": p["failed"] for p in parts if p["failed"]}},
              "scored": scored_counts(parts)}
    _write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    setting_line = ", ".join(f"{k} {v}" for k, v in settings.items() if k not in ("root",) and v is not None)
    md = [f"# {title}", "", f"- model: {model}", f"- protocol: `{protocol}`", f"- dataset root: `{settings.get('root')}`",
          f"- settings: {setting_line}", ""]
    md += [markdown_table(t) for t in tables]
    md += _failure_lines(parts, training_missing)
    plots = _plots(out, title, tables, parts)
    if grouped is not None:
        name, chart_title, groups, series = grouped
        plots.append(plot_grouped_bars(out / "plots" / name, chart_title, groups, series))
    plots += sorted(out.glob("**/per_class_accuracy.png")) + sorted(out.glob("**/confusion.png"))
    if plots:
        md += ["## Plots", ""] + [f"![{p.relative_to(out).parent.as_posix()} {p.stem}]({p.relative_to(out).as_posix()})"
                                  for p in plots] + [""]
    _write_text(out / "report.md", "\n".join(md))
    return report


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _plots(out: Path, title: str, tables: list[Table], parts: list[dict[str, Any]]) -> list[Path]:
    """A bar chart of top-1 per evaluated list, and one of the main table's numeric columns."""
    folder = out / "plots"
    written = []
    scored = [p for p in parts if p.get("top1") is not None and not math.isnan(p["top1"])]
    if scored:
        written.append(plot_bars(folder / "per_list_top1.png", f"{title}: per list", [p["key"] for p in scored],
                                 [p["top1"] for p in scored]))
    main = tables[0] if tables else None
    if main is not None:
        bars = [(f"{row[0]} {col}", cell) for row in main.rows for col, cell in zip(main.columns[1:], row[1:])
                if col != "videos" and isinstance(cell, (float, int, tuple)) and not isinstance(cell, bool)]
        if bars:
            values = [b[1][0] if isinstance(b[1], tuple) else float(b[1]) for b in bars]
            errors = [b[1][1] if isinstance(b[1], tuple) else 0.0 for b in bars]
            written.append(plot_bars(folder / "summary.png", main.title, [b[0] for b in bars], values, errors))
    return written
