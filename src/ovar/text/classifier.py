"""Text classifiers: class names x templates -> (C, E) unit embeddings, cached."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .descriptions import fill_prompts
from .templates import resolve_templates


def default_cache_dir() -> Path:
    """``$OVAR_CACHE_DIR``, else ``$XDG_CACHE_HOME/ovar``, else ``~/.cache/ovar``."""
    if os.environ.get("OVAR_CACHE_DIR"):
        return Path(os.environ["OVAR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ovar"


class TextEmbeddingCache:
    """Classifier matrices keyed by (weights fingerprint, class texts, templates, descriptions).

    The fingerprint is :attr:`ClipBackbone.fingerprint`, a digest of the text tower's
    current weights, so two models share an entry only when they encode text identically.
    Kept in memory for the process and on disk (``<cache_dir>/text/<key>.pt``) so a
    repeated run with the same labels encodes no text. ``hits``/``misses`` count lookups.
    """

    def __init__(self, directory: str | Path | None = None, *, disk: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "text"
        self.disk = disk
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(fingerprint: str, names: Sequence[str], templates: Sequence[str],
            descriptions: Sequence[str] | None) -> str:
        payload = json.dumps([fingerprint, list(names), list(templates), descriptions], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get(self, key: str) -> torch.Tensor | None:
        found = self._memory.get(key)
        path = self.directory / f"{key}.pt"
        if found is None and self.disk and path.is_file():
            try:
                found = torch.load(path, map_location="cpu", weights_only=True)
            except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):  # a damaged entry is recomputed
                found = None
            if found is not None:
                self._memory[key] = found
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        return found.clone()  # a caller editing its result must not edit the entry

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().cpu().clone()
        self._memory[key] = value
        if not self.disk:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.{os.getpid()}.tmp"
            torch.save(value, tmp)
            os.replace(tmp, self.directory / f"{key}.pt")  # atomic: readers never see half a file
        except OSError:
            pass  # a read-only cache location only costs speed


_DEFAULT_CACHE: TextEmbeddingCache | None = None


def default_cache() -> TextEmbeddingCache:
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None or _DEFAULT_CACHE.directory != default_cache_dir() / "text":
        _DEFAULT_CACHE = TextEmbeddingCache()
    return _DEFAULT_CACHE


@torch.no_grad()
def encode_prompts(backbone, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Unit text embeddings (N, E) of ``prompts``, encoded in batches."""
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = backbone.tokenize(list(prompts[start:start + batch_size])).to(backbone.device)
        chunks.append(F.normalize(backbone.encode_text(tokens).float(), dim=-1))
    return torch.cat(chunks)


def build_classifier(backbone, names: Sequence[str], templates: str | Sequence[str] | None = None, *,
                     descriptions: Sequence[str] | None = None, batch_size: int = 256,
                     cache: TextEmbeddingCache | None | bool = True) -> torch.Tensor:
    """Class embeddings (C, E): per template, encode and normalise; average; renormalise.

    ``cache=True`` uses the shared memory+disk cache, ``False`` none, or pass a cache.
    The result lives on the backbone's device.
    """
    templates = resolve_templates(templates)
    store = default_cache() if cache is True else (cache or None)
    key = store.key(backbone.fingerprint, names, templates, descriptions) if store else ""
    cached = store.get(key) if store else None
    if cached is not None:
        return cached.to(backbone.device)
    prompts = [p for template in templates for p in fill_prompts(names, template, descriptions)]
    embeddings = encode_prompts(backbone, prompts, batch_size).view(len(templates), len(names), -1)
    classifier = F.normalize(embeddings.mean(dim=0), dim=-1)
    if store:
        store.put(key, classifier)
    return classifier
