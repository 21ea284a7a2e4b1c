"""On-disk cache of EVL's frozen-backbone features, so later epochs skip decoding and the ViT.

EVL trains only its decoder and head; the CLIP blocks are frozen, so the features the
decoder consumes (per kept block: ``out``, ``q``, ``k``) are a pure function of the
augmented clip.  With a fixed set of augmented views per video they can be computed once.

Layout of a cache directory (one per key, see :func:`cache_key`)::

    key.json                  what the features depend on (human-readable)
    v{view}-r{rank}.bin       records appended by one writer (one rank): raw fp16/fp32
    v{view}-r{rank}.jnl       its journal: int64 triples (video, record, label), appended
                              after the record's bytes are flushed
    index-v{view}.npz         the complete index of a view, written by atomic rename

A record is one video's features flattened by :class:`FeatureLayout`.  Readers trust only
``index-v*.npz``; it is created by :meth:`FeatureCache.finalize` once the journals cover
every video (journal entries pointing past the end of their shard are ignored, so a
crashed writer never leaves a bad index).  Each rank writes its own files, so processes
never share a file being written.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..content_hash import module_digest
from .backbone import BlockFeatures

_DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class FeatureLayout:
    """Shape of one video's features: ``blocks`` x (out, q, k) x (frames, tokens, width)."""

    blocks: int
    frames: int
    tokens: int
    width: int
    heads: int

    @property
    def elements(self) -> int:
        return self.blocks * 3 * self.frames * self.tokens * self.width

    def pack(self, features: Sequence[BlockFeatures]) -> torch.Tensor:
        """Per-block (B, T, L, ...) features -> (B, elements) flat records."""
        per_block = [torch.stack([f.out, f.q.flatten(-2), f.k.flatten(-2)], dim=1) for f in features]
        return torch.stack(per_block, dim=1).flatten(1)

    def unpack(self, flat: torch.Tensor) -> list[BlockFeatures]:
        """(B, elements) records (any float dtype) -> float32 per-block features."""
        x = flat.float().view(flat.shape[0], self.blocks, 3, self.frames, self.tokens, self.width)
        return [BlockFeatures(x[:, n, 0], x[:, n, 1].unflatten(-1, (self.heads, -1)),
                              x[:, n, 2].unflatten(-1, (self.heads, -1))) for n in range(self.blocks)]


def weights_fingerprint(module: nn.Module) -> str:
    """A digest of ``module``'s parameters and buffers (names, shapes, dtypes, values) and structure."""
    return module_digest(module)


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable digest of ``parts`` (JSON-serialisable): the cache directory's name."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def estimate_bytes(num_videos: int, views: int, layout: FeatureLayout, dtype: str = "float16") -> int:
    """Disk bytes a full cache takes."""
    return num_videos * views * layout.elements * np.dtype(_DTYPES[dtype]).itemsize


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the old file or the whole new one, never a part


class ShardWriter:
    """Appends records of one view to one rank's shard and journal."""

    def __init__(self, directory: Path, view: int, rank: int, layout: FeatureLayout, dtype: str) -> None:
        self.dtype = _DTYPES[dtype]
        self.record_bytes = layout.elements * np.dtype(self.dtype).itemsize
        self.data_path = directory / f"v{view}-r{rank}.bin"
        self.journal_path = directory / f"v{view}-r{rank}.jnl"
        self._data = open(self.data_path, "ab")
        # A crash may have left half a record: drop it so offsets stay record-aligned.
        size = self._data.tell()
        if size % self.record_bytes:
            self._data.truncate(size - size % self.record_bytes)
            self._data.seek(0, os.SEEK_END)
        self._journal = open(self.journal_path, "ab")
        self._next = self._data.tell() // self.record_bytes

    def write(self, videos: Sequence[int], labels: Sequence[int], records: torch.Tensor) -> None:
        """Store ``records`` (B, elements) of ``videos``."""
        array = records.detach().to("cpu", torch.float32).numpy().astype(self.dtype, copy=False)
        self._data.write(np.ascontiguousarray(array).tobytes())
        self._data.flush()  # data before journal: a journal entry never points at missing bytes
        entries = np.array([(int(v), self._next + i, int(l)) for i, (v, l) in enumerate(zip(videos, labels))],
                           dtype=np.int64)
        self._journal.write(entries.tobytes())
        self._journal.flush()
        self._next += len(entries)

    def close(self) -> None:
        self._data.close()
        self._journal.close()


class FeatureCache:
    """Cached features of ``num_videos`` videos x ``views`` views under ``root/<key digest>``."""

    def __init__(self, root: str | Path, key: dict[str, Any], layout: FeatureLayout, num_videos: int,
                 views: int, dtype: str = "float16") -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"cache dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.key = {**key, "layout": layout.__dict__, "num_videos": num_videos, "views": views, "dtype": dtype}
        self.directory = Path(root) / cache_key(self.key)
        self.layout, self.num_videos, self.views, self.dtype = layout, num_videos, views, dtype
        self.directory.mkdir(parents=True, exist_ok=True)
        key_file = self.directory / "key.json"
        if not key_file.exists():
            _atomic_write(key_file, lambda f: f.write(json.dumps(self.key, indent=1, default=str).encode()))
        self._indexes: dict[int, tuple[list[str], np.ndarray]] = {}
        self._maps: dict[str, np.memmap] = {}
        self._writers: dict[tuple[int, int], ShardWriter] = {}

    def index_path(self, view: int) -> Path:
        return self.directory / f"index-v{view}.npz"

    def complete(self, view: int) -> bool:
        """Whether view ``view`` has a complete index (then :meth:`read` works for every video)."""
        if view in self._indexes:
            return True
        path = self.index_path(view)
        if not path.exists():
            return False
        with np.load(path, allow_pickle=False) as data:
            self._indexes[view] = ([str(s) for s in data["shards"]], data["entries"])
        return True

    def read(self, view: int, video: int) -> tuple[torch.Tensor, int]:
        """(elements,) record of ``video`` in ``view`` (stored dtype) and its label."""
        shards, entries = self._indexes[view] if view in self._indexes else (None, None)
        if shards is None:
            raise KeyError(f"view {view} of the feature cache is not complete")
        shard, record, label = (int(x) for x in entries[video])
        array = self._map(shards[shard])
        return torch.from_numpy(np.array(array[record])), label

    def _map(self, name: str) -> np.memmap:
        if name not in self._maps:
            path = self.directory / name
            count = path.stat().st_size // (self.layout.elements * np.dtype(_DTYPES[self.dtype]).itemsize)
            self._maps[name] = np.memmap(path, dtype=_DTYPES[self.dtype], mode="r",
                                         shape=(count, self.layout.elements))
        return self._maps[name]

    def writer(self, view: int, rank: int = 0) -> ShardWriter:
        """This process's writer for ``view`` (one per rank, kept open)."""
        if (view, rank) not in self._writers:
            self._writers[(view, rank)] = ShardWriter(self.directory, view, rank, self.layout, self.dtype)
        return self._writers[(view, rank)]

    def finalize(self, view: int) -> bool:
        """Write ``index-v{view}.npz`` if the journals cover every video; True when complete."""
        if self.complete(view):
            return True
        for writer in self._writers.values():
            writer._data.flush()
            writer._journal.flush()
        record_bytes = self.layout.elements * np.dtype(_DTYPES[self.dtype]).itemsize
        shards: list[str] = []
        entries = np.full((self.num_videos, 3), -1, dtype=np.int64)
        for journal in sorted(self.directory.glob(f"v{view}-r*.jnl")):
            data = journal.with_suffix(".bin")
            if not data.exists():
                continue
            available = data.stat().st_size // record_bytes
            raw = journal.read_bytes()
            rows = np.frombuffer(raw[: len(raw) // 24 * 24], dtype=np.int64).reshape(-1, 3)
            rows = rows[(rows[:, 1] < available) & (rows[:, 0] >= 0) & (rows[:, 0] < self.num_videos)]
            if len(rows):
                shards.append(data.name)
                entries[rows[:, 0]] = np.stack([np.full(len(rows), len(shards) - 1), rows[:, 1], rows[:, 2]], 1)
        if (entries[:, 0] < 0).any():
            return False
        _atomic_write(self.index_path(view),
                      lambda f: np.savez(f, shards=np.array(shards), entries=entries))
        return self.complete(view)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Loader workers get a copy: open files and maps are re-created there on demand.
        state = dict(self.__dict__)
        state.update(_maps={}, _writers={})
        return state
