"""Checks a training run makes before it writes anything: the configuration's values, and
what the run folder already holds.

A mistyped option must cost nothing: no half-created run folder, no overwritten config,
no checkpoint of a run that never started.  :func:`check_config` catches values no type
can (a zero frame count, a negative learning rate, an unknown sampling or device);
:func:`check_run_dir` refuses to start a new run on top of an earlier one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Config, ConfigError, check_ranges

# What a training run writes into its folder; any of them means the folder holds a run.
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "checkpoints", "final.pt", "tensorboard")

_POSITIVE_INT = ("data.frames",)
_NON_NEGATIVE_INT = ("train.save_every",)


def check_config(config: Config) -> None:
    """Raise :class:`ConfigError` naming the first training option whose value cannot work
    (single values with a range or a set of choices are checked when the config is read,
    see :func:`ovar.config.rule`; these need a parser or another module's table)."""
    check_ranges(config, _POSITIVE_INT, _NON_NEGATIVE_INT)
    _check_evaluation(config)
    check_device(config.run.device)


def _check_evaluation(config: Config) -> None:
    """The settings of the evaluations during training, read now rather than at the end of
    the first epoch."""
    from ..eval.views import FUSION_RULES
    from ..video.eval_scale import parse_eval_scale
    from ..video.sampling import parse_views

    try:
        parse_views(config.eval.views)
    except ValueError as exc:
        raise ConfigError(f"eval.views: {exc}") from None
    if config.eval.fusion is not None and config.eval.fusion not in FUSION_RULES:
        raise ConfigError(f"eval.fusion: expected one of {', '.join(FUSION_RULES)}, got {config.eval.fusion!r}")
    if config.data.test_scale is not None:
        try:
            parse_eval_scale(config.data.test_scale)
        except ValueError as exc:
            raise ConfigError(f"data.test_scale: {exc}") from None


def check_device(name: str) -> None:
    """``run.device`` must name a device this machine has (:func:`ovar.devices.resolve_device`);
    training runs on the CPU or CUDA."""
    from ..devices import DeviceError, resolve_device

    try:
        device = resolve_device(name)
    except DeviceError as exc:
        raise ConfigError(f"run.device: {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"run.device: unsupported device {name!r} for training (expected auto, cpu, cuda or cuda:N)")


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the outputs of an earlier training run."""
    return any((run_dir / name).exists() for name in RUN_OUTPUTS)


def check_run_dir(run_dir: Path, *, resuming: bool, overwrite: bool) -> None:
    """A new run needs a folder without an earlier run in it, unless ``overwrite``."""
    if resuming and overwrite:
        raise ConfigError("--resume continues the run in the folder and --overwrite deletes it: pass one")
    if not resuming and not overwrite and holds_run(run_dir):
        raise ConfigError(f"{run_dir} already holds a training run: continue it with --resume, "
                          f"or pass --overwrite to replace it (or choose another --out)")


def clear_run_dir(run_dir: Path) -> None:
    """Delete everything in ``run_dir`` (``--overwrite``): an earlier run's checkpoints, logs
    and recipe files must not leak into the new one (e.g. a running weight average)."""
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
