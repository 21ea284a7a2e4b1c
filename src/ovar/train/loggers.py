"""Training loggers chosen by ``train.loggers``: ``csv``, ``tensorboard`` and ``wandb``.

Whatever is chosen, ``metrics.jsonl`` is written (``ovar`` reads it back); each chosen
logger receives the same records at the same optimiser steps: learning rate, losses and
throughput (``train/*``), epoch timing (``epoch/*``) and evaluation metrics (``eval/*``).
TensorBoard and Weights & Biases are optional extras (``ovar[tensorboard]``,
``ovar[wandb]``); W&B honours ``WANDB_MODE`` (``offline`` writes under the run folder only).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Protocol

from ..config import Config, ConfigError, to_dict
from .logging import MetricsLogger

log = logging.getLogger(__name__)

LOGGERS = ("csv", "tensorboard", "wandb")


class Backend(Protocol):
    def log(self, kind: str, step: int, values: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class CsvBackend:
    """``metrics.csv``: one row per value (``step, kind, name, value``), so records of
    different kinds share one file."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        path = run_dir / "metrics.csv"
        if resume_step is not None and path.is_file():
            _drop_rows_after(path, resume_step)  # the resumed run logs those steps again
        new = not path.exists()
        self._file = path.open("a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if new:
            self._writer.writerow(["step", "kind", "name", "value"])

    def log(self, kind: str, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._writer.writerow([step, kind, name, repr(value)])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardBackend:
    """Scalars ``<kind>/<name>`` in ``<run_dir>/tensorboard``."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.loggers: tensorboard needs the tensorboard package "
                              "(pip install 'ovar[tensorboard]')") from None
        # purge_step hides the events a resumed run writes again.
        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, kind: str, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._writer.add_scalar(f"{kind}/{name}", value, step)

    def close(self) -> None:
        self._writer.close()


class WandbBackend:
    """One W&B run per training run, named after its folder, with the resolved config."""

    def __init__(self, run_dir: Path, config: Config) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError("train.loggers: wandb needs the wandb package (pip install 'ovar[wandb]')") from None
        self._run = wandb.init(project=config.train.wandb_project, name=run_dir.name, dir=str(run_dir),
                               config=to_dict(config), reinit="create_new")

    def log(self, kind: str, step: int, values: dict[str, float]) -> None:
        self._run.log({f"{kind}/{name}": value for name, value in values.items()}, step=step)

    def close(self) -> None:
        self._run.finish()


class RunLoggers(MetricsLogger):
    """``metrics.jsonl`` plus the chosen backends; the engine calls ``log``/``close``."""

    def __init__(self, run_dir: str | Path, backends: list[Backend], *, enabled: bool = True,
                 resume_step: int | None = None) -> None:
        super().__init__(run_dir, enabled=enabled, tensorboard=False, resume_step=resume_step)
        self.backends = backends if enabled else []

    def log(self, kind: str, step: int, **values: Any) -> None:
        super().log(kind, step, **values)
        scalars = {k: float(_scalar(v)) for k, v in values.items() if _is_number(_scalar(v))}
        for backend in self.backends:
            backend.log(kind, step, scalars)

    def close(self) -> None:
        super().close()
        for backend in self.backends:
            backend.close()
        self.backends = []


def build_loggers(config: Config, run_dir: str | Path, *, enabled: bool = True,
                  resume_step: int | None = None) -> RunLoggers:
    """The loggers ``config.train.loggers`` names (only on the main process: ``enabled``).

    ``resume_step``: the run resumes from that step's checkpoint, so records of later steps
    are dropped (they are logged again)."""
    run_dir = Path(run_dir)
    backends: list[Backend] = []
    if enabled:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in dict.fromkeys(config.train.loggers):
            if name == "csv":
                backends.append(CsvBackend(run_dir, resume_step))
            elif name == "tensorboard":
                backends.append(TensorBoardBackend(run_dir, resume_step))
            elif name == "wandb":
                backends.append(WandbBackend(run_dir, config))
            log.debug("logging training metrics to %s", name)
    return RunLoggers(run_dir, backends, enabled=enabled, resume_step=resume_step)


def _drop_rows_after(path: Path, step: int) -> None:
    """Keep the header and the rows of steps up to ``step`` (a torn last row goes too)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if len(r) == 4 and r[0].isdigit() and int(r[0]) <= step]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)
    tmp.replace(path)


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
