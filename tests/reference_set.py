"""Access to one folder of golden outputs under ``$OVAR_REFERENCE_DIR`` (see conftest)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import reference_dir


class ReferenceSet:
    """``reference/<name>/``: its files (loaded safely) and ``meta.json``."""

    def __init__(self, name: str) -> None:
        self.root: Path = reference_dir() / name

    @property
    def available(self) -> bool:
        return (self.root / "expected.pt").is_file()

    def skip_unless_available(self, label: str) -> pytest.MarkDecorator:
        return pytest.mark.skipif(not self.available, reason=f"no {label} reference set at {self.root}")

    def load(self, name: str) -> Any:
        return torch.load(self.root / name, map_location="cpu", weights_only=True)

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.root / "meta.json").read_text())
