"""Prompt templates of the five systems, and reading user templates and class names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import LabelError

ACTIONCLIP_TEMPLATES: tuple[str, ...] = (
    "a photo of action {}", "a picture of action {}", "Human action of {}", "{}, an action",
    "{} this is an action", "{}, a video of action", "Playing action of {}", "{}",
    "Playing a kind of action, {}", "Doing a kind of action, {}", "Look, the human is {}",
    "Can you recognize the action of {}?", "Video classification of {}", "A video of {}",
    "The man is {}", "The woman is {}",
)

# Open-VCLIP: four prefixes, each with seven endings (prefix-major order).
_OPEN_VCLIP_PREFIXES = ("a photo of", "a video of", "a example of", "a demonstration of")
_OPEN_VCLIP_ENDINGS = ("{}.", "a person {}.", "a person using {}.", "a person doing {}.",
                       "a person during {}.", "a person performing {}.", "a person practicing {}.")
OPEN_VCLIP_TEMPLATES: tuple[str, ...] = tuple(
    f"{prefix} {ending}" for prefix in _OPEN_VCLIP_PREFIXES for ending in _OPEN_VCLIP_ENDINGS)
FROSTER_TEMPLATES: tuple[str, ...] = OPEN_VCLIP_TEMPLATES + ("{}",)
TEXT4VIS_TEMPLATES: tuple[str, ...] = ("a video of a person {}.",)
PLAIN_TEMPLATES: tuple[str, ...] = ("{}",)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "actionclip": ACTIONCLIP_TEMPLATES,
    "open_vclip": OPEN_VCLIP_TEMPLATES,
    "froster": FROSTER_TEMPLATES,
    "text4vis": TEXT4VIS_TEMPLATES,
    "plain": PLAIN_TEMPLATES,
}
DEFAULT_TEMPLATES = "open_vclip"


def resolve_templates(spec: str | Sequence[str] | None = None) -> list[str]:
    """Templates from a built-in set name, a file (one per line or a JSON list) or a list."""
    if spec is None:
        spec = DEFAULT_TEMPLATES
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        if key in TEMPLATE_SETS:
            return list(TEMPLATE_SETS[key])
        path = Path(spec).expanduser()
        if path.is_file():
            return _read_templates_file(path)
        if "{}" in spec:
            return [spec]
        raise LabelError(f"unknown template set '{spec}' (built-in: {', '.join(TEMPLATE_SETS)}; "
                         f"or a file with one template per line)")
    templates = [str(t) for t in spec]
    _check_templates(templates, "templates")
    return templates


def _read_templates_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            templates = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from exc
        if not isinstance(templates, list):
            raise LabelError(f"{path}: expected a JSON list of templates")
        templates = [str(t) for t in templates]
    else:
        templates = [line.strip() for line in text.splitlines() if line.strip()]
    _check_templates(templates, str(path))
    return templates


def _check_templates(templates: list[str], where: str) -> None:
    if not templates:
        raise LabelError(f"{where}: no templates")
    for template in templates:
        if template.count("{}") != 1:
            raise LabelError(f"{where}: template '{template}' must contain '{{}}' exactly once")


def parse_labels(text: str) -> list[str]:
    """Class names from a comma-separated string (``"surfing, skiing"``)."""
    return check_labels([part.strip() for part in text.split(",")], "--labels")


def values_by_index(data: dict, path: Path) -> list:
    try:
        order = sorted(data, key=int)
    except ValueError as exc:
        raise LabelError(f"{path}: keys must be class indices 0..C-1") from exc
    if [int(k) for k in order] != list(range(len(order))):
        raise LabelError(f"{path}: class indices must be 0..{len(order) - 1} without gaps")
    return [data[k] for k in order]


def check_labels(names: Sequence[str], where: str) -> list[str]:
    """Reject an empty list, blank names and duplicates, naming the source."""
    names = [n.strip() for n in names]
    if not names or all(not n for n in names):
        raise LabelError(f"{where}: the label list is empty")
    if any(not n for n in names):
        raise LabelError(f"{where}: the label list has an empty name")
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise LabelError(f"{where}: duplicate label '{name}'")
        seen.add(name.lower())
    return list(names)
