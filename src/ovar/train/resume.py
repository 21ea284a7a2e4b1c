"""Finding the state a resumed run continues from.

``run.resume=auto`` (``--resume``) takes the newest checkpoint in ``<run>/checkpoints``
that loads; a damaged one (a crash during a copy, a full disk) is skipped with a warning
and the one before it used.  A folder without any checkpoint is an error: silently
starting afresh would throw away the run the user meant to continue.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError, to_dict
from .checkpoint import CheckpointDir, load

logger = logging.getLogger(__name__)

_REQUIRED = ("model", "optimizer", "epoch", "step")
# Options that say how or where to run, not what is trained: a resume may change them.
BOOKKEEPING = ("run.resume", "run.out_dir", "run.keep_last", "run.log_every", "run.device", "train.save_every",
               "data.workers")


def _read(path: Path) -> dict[str, Any]:
    """A checkpoint with the keys a resume needs, or ValueError/OSError/RuntimeError."""
    state = load(path)
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        raise ValueError("not a training checkpoint (no model/optimizer state)")
    return state


def resume_state(config: Config, ckpts: CheckpointDir) -> tuple[Path, dict[str, Any]] | None:
    """``(path, state)`` to continue from, None when not resuming; ConfigError when there is
    nothing usable to resume from."""
    resume = config.run.resume
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise ConfigError(f"run.resume: no checkpoint at {path}")
        try:
            return path, _read(path)
        except Exception as exc:  # any unreadable file is the user's to fix
            raise ConfigError(f"run.resume: {path} is not a readable checkpoint ({_why(exc)})") from None
    candidates = ckpts.candidates()
    if not candidates:
        raise ConfigError(f"run.resume: no checkpoint in {ckpts.dir} to continue from "
                          f"(start a new run without --resume)")
    for path in candidates:
        try:
            return path, _read(path)
        except Exception as exc:
            logger.warning("checkpoint %s is damaged (%s); trying an older one", path, _why(exc))
    raise ConfigError(f"run.resume: every checkpoint in {ckpts.dir} is damaged; cannot continue the run")


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changed_settings(before: dict[str, Any], now: dict[str, Any],
                     ignore: tuple[str, ...] = BOOKKEEPING) -> list[str]:
    """Dotted keys whose values differ between two resolved configurations (as dicts)."""
    a, b = _flatten(before), _flatten(now)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in ignore)


def warn_if_changed(state: dict[str, Any], config: Config, path: Path) -> None:
    """A resume with other training settings continues a different run: say so."""
    saved = state.get("config")
    if not isinstance(saved, str):
        return
    try:
        before = yaml.safe_load(saved)
    except yaml.YAMLError:
        return
    differs = changed_settings(before, to_dict(config))
    if differs:
        logger.warning("resuming %s with settings that differ from the checkpoint's: %s", path, ", ".join(differs))
