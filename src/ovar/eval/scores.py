"""Per-video scores on disk, written as evaluation goes, so that an interrupted evaluation
resumes without redoing finished videos and a finished one can be re-reported without a model.

A folder holds ``scores_meta.json`` (class names and the list's videos, checked on resume),
``chunk_NNNNN.pt`` files appended while scoring and ``failures.jsonl`` (one undecodable video
a line).  :meth:`ScoreStore.finish` merges the chunks into ``scores.pt``: a dict of
``paths`` (list), ``labels`` (N,), ``scores`` (N, C) float32 and ``class_names``, readable
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import OvarError

META, FINAL, FAILURES = "scores_meta.json", "scores.pt", "failures.jsonl"


class ScoreStore:
    """Scores of one evaluated list (``paths`` and ``labels`` in list order) in ``folder``."""

    def __init__(self, folder: str | Path, paths: Sequence[str], labels: Sequence[int],
                 class_names: Sequence[str], *, resume: bool = True) -> None:
        self.folder = Path(folder)
        self.paths, self.labels, self.class_names = list(paths), [int(x) for x in labels], list(class_names)
        self.scores: dict[int, torch.Tensor] = {}
        self.failures: dict[int, str] = {}
        self._pending: dict[int, torch.Tensor] = {}
        self._chunks = 0
        meta = {"class_names": self.class_names, "paths": self.paths, "labels": self.labels}
        meta_file = self.folder / META
        if resume and meta_file.is_file():
            if json.loads(meta_file.read_text(encoding="utf-8")) != meta:
                raise OvarError(f"{self.folder}: holds scores of another list or class list; "
                                f"delete it or use another output folder")
            self._load()
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in (*self.folder.glob("chunk_*.pt"), self.folder / FINAL, self.folder / FAILURES):
                stale.unlink(missing_ok=True)
            _write_atomic(meta_file, json.dumps(meta).encode())

    # --- reading ----------------------------------------------------------------------

    def _load(self) -> None:
        final = self.folder / FINAL
        files = [final] if final.is_file() else sorted(self.folder.glob("chunk_*.pt"))
        for file in files:
            data = torch.load(file, map_location="cpu", weights_only=True)
            for index, row in zip(data["indices"].tolist(), data["scores"]):
                self.scores[index] = row
        self._chunks = len(list(self.folder.glob("chunk_*.pt")))
        failures = self.folder / FAILURES
        if failures.is_file():
            for line in failures.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.failures[int(entry["index"])] = entry["reason"]

    def done(self) -> set[int]:
        """Indices scored or failed (a resumed evaluation skips them)."""
        return set(self.scores) | set(self._pending) | set(self.failures)

    @property
    def complete(self) -> bool:
        return len(self.done()) >= len(self.paths)

    # --- writing ----------------------------------------------------------------------

    def add(self, indices: Sequence[int], scores: torch.Tensor) -> None:
        for index, row in zip(indices, scores.detach().float().cpu()):
            self._pending[int(index)] = row.clone()

    def add_failure(self, index: int, reason: str) -> None:
        if index in self.failures:
            return
        self.failures[index] = reason
        with open(self.folder / FAILURES, "a", encoding="utf-8") as out:
            out.write(json.dumps({"index": index, "path": self.paths[index], "reason": reason}) + "\n")

    def flush(self) -> None:
        """Write pending scores as a new chunk (atomic: a chunk is whole or absent)."""
        if not self._pending:
            return
        indices = sorted(self._pending)
        data = {"indices": torch.tensor(indices, dtype=torch.long),
                "scores": torch.stack([self._pending[i] for i in indices])}
        buffer = self.folder / f"chunk_{self._chunks:05d}.pt"
        tmp = buffer.with_suffix(".tmp")
        torch.save(data, tmp)
        os.replace(tmp, buffer)
        self._chunks += 1
        self.scores.update(self._pending)
        self._pending.clear()

    def finish(self) -> Path:
        """Merge everything into ``scores.pt`` (the chunks are then removed)."""
        self.flush()
        indices = sorted(self.scores)
        width = len(self.class_names)
        data = {"paths": [self.paths[i] for i in indices], "indices": torch.tensor(indices, dtype=torch.long),
                "labels": torch.tensor([self.labels[i] for i in indices], dtype=torch.long),
                "scores": torch.stack([self.scores[i] for i in indices]) if indices else torch.zeros(0, width),
                "class_names": self.class_names}
        final = self.folder / FINAL
        tmp = final.with_suffix(".tmp")
        torch.save(data, tmp)
        os.replace(tmp, final)
        for chunk in self.folder.glob("chunk_*.pt"):
            chunk.unlink()
        self._chunks = 0
        return final

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (N, C), labels (N,))`` of the scored videos in list order."""
        indices = sorted(self.scores)
        if not indices:
            return torch.zeros(0, len(self.class_names)), torch.zeros(0, dtype=torch.long)
        return torch.stack([self.scores[i] for i in indices]), torch.tensor([self.labels[i] for i in indices])

    def failure_list(self) -> list[tuple[str, str]]:
        return [(self.paths[i], self.failures[i]) for i in sorted(self.failures)]


def read_scores(path: str | Path) -> dict:
    """Scores of a folder (finished ``scores.pt``, or the chunks of an interrupted
    evaluation) or of a ``scores.pt`` file, in the layout of ``scores.pt``."""
    path = Path(path)
    if path.is_dir() and not (path / FINAL).is_file() and (path / META).is_file():
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        store = ScoreStore(path, meta["paths"], meta["labels"], meta["class_names"])
        scores, labels = store.arrays()
        indices = sorted(store.scores)
        return {"paths": [store.paths[i] for i in indices], "indices": torch.tensor(indices, dtype=torch.long),
                "labels": labels, "scores": scores, "class_names": store.class_names}
    if path.is_dir():
        path = path / FINAL
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise OvarError(f"{path}: cannot read scores ({str(exc).splitlines()[0]})") from None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
