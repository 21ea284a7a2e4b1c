"""Shared fixtures: an isolated cache directory and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$OVAR_SHARED_DIR`` or the ``shared`` folder beside the repository."""
    return Path(os.environ.get("OVAR_SHARED_DIR", REPO.parent / "shared"))


def reference_dir() -> Path:
    """``$OVAR_REFERENCE_DIR`` or ``<shared>/reference``."""
    return Path(os.environ.get("OVAR_REFERENCE_DIR", shared_dir() / "reference"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's ~/.cache/ovar from tests."""
    monkeypatch.setenv("OVAR_CACHE_DIR", str(tmp_path_factory.mktemp("ovar-cache")))


@pytest.fixture(scope="session")
def tiny_backbone():
    from ovar.models import load_backbone

    return load_backbone("tiny", "none")
