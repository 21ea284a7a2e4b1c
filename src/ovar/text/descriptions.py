"""Class descriptions (``{"0": "Name: one-sentence description"}``) and prompt filling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import LabelError
from .templates import values_by_index, check_labels


def read_descriptions(path: str | Path) -> list[str]:
    """Read a descriptions file: a JSON object from class index to ``"Name: description"``."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: descriptions file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a JSON object {{\"0\": \"Name: description\", ...}}")
    texts = [str(v).strip() for v in values_by_index(data, path)]
    check_labels([short_name(t) for t in texts], str(path))
    return texts


def short_name(description: str) -> str:
    """The class name of a ``"Name: description"`` text (the whole text if it has no colon)."""
    return description.split(":", 1)[0].strip()


def fill_prompts(names: Sequence[str], template: str, descriptions: Sequence[str] | None = None) -> list[str]:
    """One prompt per class for ``template``.

    Without descriptions the template is filled with the class name. With descriptions
    (FROSTER's rule) the template is filled with the short name and followed by the full
    description; the bare ``"{}"`` template gives the description alone.
    """
    if descriptions is None:
        return [template.format(name) for name in names]
    if len(descriptions) != len(names):
        raise LabelError(f"{len(descriptions)} descriptions for {len(names)} classes")
    if template == "{}":
        return list(descriptions)
    return [f"{template.format(short_name(text))} {text}" for text in descriptions]
