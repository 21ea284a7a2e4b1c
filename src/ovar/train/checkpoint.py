"""Training checkpoints: atomic writes, rotation (last N + best), RNG state as plain data.

Everything saved loads with ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists and dicts only; RNG states are converted to tensors and lists, never pickled objects.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``: a crash leaves
    either the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint, loaded safely (no arbitrary unpickling)."""
    return torch.load(path, map_location=map_location, weights_only=True)


# --- RNG state -----------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """python, numpy, torch (and CUDA) generator states as tensors and lists."""
    version, internal, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- rotation ------------------------------------------------------------------------------


class CheckpointDir:
    """``<run>/checkpoints/epoch_NNNN.pt`` files; keeps the last ``keep_last`` and the best."""

    def __init__(self, directory: str | Path, keep_last: int) -> None:
        self.dir = Path(directory)
        self.keep_last = keep_last

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch_{epoch:04d}.pt"

    def epochs(self) -> list[int]:
        """Epoch numbers of the checkpoints present, ascending."""
        if not self.dir.is_dir():
            return []
        found = (_EPOCH_FILE.match(p.name) for p in self.dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self) -> Path | None:
        epochs = self.epochs()
        return self.path(epochs[-1]) if epochs else None

    def save(self, state: dict[str, Any], epoch: int, best_epoch: int | None) -> Path:
        """Write epoch ``epoch`` atomically, then delete those neither recent nor best."""
        path = save_atomic(state, self.path(epoch))
        keep = set(self.epochs()[-self.keep_last:]) if self.keep_last > 0 else set()
        keep.add(epoch)  # the newest is needed to resume, whatever keep_last says
        if best_epoch is not None:
            keep.add(best_epoch)
        for old in self.epochs():
            if old not in keep:
                self.path(old).unlink(missing_ok=True)
        if best_epoch is not None:
            _link_or_copy(self.path(best_epoch), self.dir / "best.pt")
        return path


def _link_or_copy(src: Path, dst: Path) -> None:
    """Point ``dst`` at ``src`` (hard link, falling back to a copy), replacing atomically."""
    if dst.exists() and os.path.samefile(src, dst):
        return  # already linked (and rename() between links of one file does nothing)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)
