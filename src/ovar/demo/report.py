"""The demo's table and report (``OUT/report.md``, ``report.json``, ``plots/``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

LABELS = {"frozen": "CLIP tiny, frozen", "actionclip": "ActionCLIP", "text4vis": "Text4Vis", "evl": "EVL",
          "open_vclip": "Open-VCLIP", "froster": "FROSTER"}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table_rows(rows: Sequence[Any]) -> list[list[str]]:
    """Header and rows: Base / Novel / HM, then object and action-given-object accuracy."""
    out = [["system", "Base", "Novel", "HM", "object b/n", "action|object b/n"]]
    for r in rows:
        b, n = r.breakdown.get("base", {}), r.breakdown.get("novel", {})
        out.append([LABELS.get(r.system, r.system), _cell(r.base), _cell(r.novel), _cell(r.hm),
                    f"{_cell(b.get('object'))}/{_cell(n.get('object'))}",
                    f"{_cell(b.get('action_given_object'))}/{_cell(n.get('action_given_object'))}"])
    return out


def format_table(rows: Sequence[Any]) -> str:
    """The table as aligned plain text."""
    cells = table_rows(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def chance_line(rows: Sequence[Any]) -> str:
    """The chance levels of the breakdown columns (the same for every system)."""
    for r in rows:
        b, n = r.breakdown.get("base"), r.breakdown.get("novel")
        if b and n:
            return (f"chance: top-1 {100 / b['classes']:.1f} base / {100 / n['classes']:.1f} novel; "
                    f"object {b['object_chance']:.1f}/{n['object_chance']:.1f}; "
                    f"action given object {b['action_chance']:.1f}/{n['action_chance']:.1f}")
    return ""


def write_demo_report(out: Path, rows: Sequence[Any], plan: Any, best: str | None,
                      seconds: dict[str, float]) -> Path:
    """Write report.md, report.json and plots/base_novel.png; returns report.md."""
    from ..eval.plots import plot_grouped_bars

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    names = [LABELS.get(r.system, r.system) for r in rows]
    plot_grouped_bars(plots / "base_novel.png", "SynthActions base-to-novel top-1 (%)", names,
                      {"Base": [r.base for r in rows], "Novel": [r.novel or 0.0 for r in rows],
                       "HM": [r.hm or 0.0 for r in rows]})
    spec = plan.spec
    lines = [
        "# ovar demo: SynthActions base-to-novel",
        "",
        f"{len(spec.colours)} colours x {len(spec.shapes)} shapes x {len(spec.actions)} actions; "
        f"{spec.shots} training clips per base class, {spec.eval_per_class} test clips per class; seed {spec.seed}. "
        f"Tiny CLIP pretrained for {plan.pretrain.steps} steps on captioned single frames (no motion words); "
        f"recipes trained {plan.epochs} epochs on the base classes.",
        "",
        "Top-1 (%). `object`: the predicted class has the right colour and shape; `action|object`: of those, "
        "the right action too (b/n: base/novel).",
        "",
        "```",
        format_table(rows),
        "```",
        "",
        chance_line(rows),
        "",
        "EVL is a closed-set classifier (a linear head over its training classes): it has no score for a "
        "novel class, so only its base accuracy is measured.",
        "",
        f"Best open-vocabulary model (highest HM): {LABELS.get(best, best) if best else 'none'} -> `model.pt`.",
        "",
        "Time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
        "",
        "![base vs novel](plots/base_novel.png)",
        "",
        "Per-system protocol reports: `b2n/<system>/report.md`.",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    payload = {"rows": [asdict(r) for r in rows], "best": best, "seconds": seconds, "plan": plan.identity()}
    (out / "report.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path
