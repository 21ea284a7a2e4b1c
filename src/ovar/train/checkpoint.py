"""Training checkpoints: atomic writes, rotation (last N + best), RNG state as plain data.

Epoch checkpoints are ``epoch_NNNN.pt``; a checkpoint taken inside an epoch (every
``train.save_every`` steps, or on SIGTERM/SIGINT) is ``epoch_NNNN_step_SSSSSSSS.pt`` where
``NNNN`` counts the epochs completed before it.  Only the newest mid-epoch file is kept,
and none once a later epoch checkpoint exists.

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

from ..models.weights_io import read_saved

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
_STEP_FILE = re.compile(r"^epoch_(\d+)_step_(\d+)\.pt$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        # mkstemp makes the file private (0600); a checkpoint gets a plain file's mode.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint, loaded safely (no arbitrary unpickling) by the one reader of saved
    files, :func:`ovar.models.weights_io.read_saved`."""
    return read_saved(path, map_location)


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

    def step_path(self, epoch: int, step: int) -> Path:
        return self.dir / f"epoch_{epoch:04d}_step_{step:08d}.pt"

    def mid_epoch(self) -> list[tuple[int, int]]:
        """``(epochs completed, step)`` of the mid-epoch checkpoints present, ascending."""
        if not self.dir.is_dir():
            return []
        found = (_STEP_FILE.match(p.name) for p in self.dir.iterdir())
        return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)

    def candidates(self) -> list[Path]:
        """Every checkpoint present, newest first (a mid-epoch one is newer than the epoch
        checkpoint it follows)."""
        keyed = [((e, -1), self.path(e)) for e in self.epochs()]
        keyed += [((e, s), self.step_path(e, s)) for e, s in self.mid_epoch()]
        return [p for _, p in sorted(keyed, reverse=True)]

    def latest(self) -> Path | None:
        found = self.candidates()
        return found[0] if found else None

    def save_mid_epoch(self, state: dict[str, Any], epoch: int, step: int) -> Path:
        """Write a mid-epoch checkpoint atomically, then delete older mid-epoch ones."""
        path = save_atomic(state, self.step_path(epoch, step))
        for e, s in self.mid_epoch():
            if (e, s) != (epoch, step):
                self.step_path(e, s).unlink(missing_ok=True)
        return path

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete ``.*.tmp`` files left by writes that a crash interrupted; returns them."""
        return remove_stale_temporaries(self.dir)

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
        for e, s in self.mid_epoch():  # superseded by this epoch checkpoint
            if e < epoch:
                self.step_path(e, s).unlink(missing_ok=True)
        if best_epoch is not None:
            _link_or_copy(self.path(best_epoch), self.dir / "best.pt")
        return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes (``.NAME.*.tmp``, ``NAME.tmp``)
    directly in ``directory``; returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.is_file() and p.name.endswith(".tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
