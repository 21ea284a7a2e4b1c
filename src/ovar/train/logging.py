"""Run logs: ``metrics.jsonl`` lines, a tqdm progress bar, TensorBoard when installed.

Only rank 0 writes; other ranks get a logger whose methods do nothing.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (tensors -> floats; NaN/inf -> None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Appends one JSON object per event to ``<run_dir>/metrics.jsonl`` (and TensorBoard)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        """``resume_step``: a run resumed from the checkpoint of that step replays what came
        after it, so the records of later steps are dropped first (no duplicates)."""
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb: Any = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None:
                self._drop_after(resume_step)
            if tensorboard:
                purge = None if resume_step is None else resume_step + 1
                self._tb = _tensorboard_writer(Path(run_dir) / "tensorboard", purge)

    def _drop_after(self, step: int) -> None:
        """Keep the records up to ``step`` (a torn last line from a killed run goes too)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(self.path)

    def log(self, kind: str, step: int, **values: Any) -> None:
        """One line ``{"kind": kind, "step": step, "time": ..., **values}``."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in values.items()})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("kind", "step", "time") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _tensorboard_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    """A SummaryWriter, or None when TensorBoard is not installed (it is optional);
    ``purge_step`` hides the events of that step on that a resumed run writes again."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (optionally only one ``kind``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in records if kind is None or r["kind"] == kind]


def progress(iterable: Iterable[T], *, total: int | None, desc: str, enabled: bool) -> Iterator[T] | tqdm:
    """A tqdm bar on stderr when ``enabled`` (rank 0), else the iterable itself."""
    if not enabled:
        return iter(iterable)
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)


def set_postfix(bar: Any, **values: Any) -> None:
    """Show ``values`` on a progress bar (no-op when there is no bar)."""
    if isinstance(bar, tqdm):
        bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()},
                        refresh=False)
