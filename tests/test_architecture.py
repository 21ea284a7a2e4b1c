"""The package graph of docs/architecture.md, checked against the code.

Every module under src/ovar is parsed with ``ast`` (imports inside functions count too) and
mapped to its package's layer, read from the layer table of docs/architecture.md.  The test
fails on an import from a lower layer to a higher one (or between two packages of one layer),
on any cycle between packages, and on an import of a ``_private`` name from another module.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "ovar"
DOC = ROOT / "docs" / "architecture.md"

# (importing module, imported module) pairs allowed against the rules, each with its reason.
# Empty: every import follows the layers.
ALLOWED: dict[tuple[str, str], str] = {}


def read_layers(text: str) -> dict[str, int]:
    """``{package: layer}`` from the Markdown table whose rows read ``| N | `pkg`, `pkg` | ... |``."""
    layers: dict[str, int] = {}
    for match in re.finditer(r"^\|\s*(\d+)\s*\|([^|]*)\|", text, re.M):
        for name in re.findall(r"`([\w.]+)`", match.group(2)):
            assert name not in layers, f"docs/architecture.md lists `{name}` in two layers"
            layers[name] = int(match.group(1))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str:
    """``ovar.models.evl.model`` -> ``models``; ``ovar.errors`` -> ``errors``; ``ovar`` -> ``ovar``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` for every ovar import in ``path``."""
    module = module_name(path)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ovar" or target.startswith("ovar."):
                found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ovar" or alias.name.startswith("ovar."):
                    found.append((alias.name, [], node.lineno))
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def all_imports() -> list[tuple[str, str, list[str], int]]:
    return [(module_name(path), target, names, line)
            for path in sorted(PACKAGE.rglob("*.py")) for target, names, line in imports(path)]


def packages_on_disk() -> set[str]:
    return {package_of(module_name(path)) for path in PACKAGE.rglob("*.py")}


@pytest.fixture(scope="module")
def layers() -> dict[str, int]:
    return read_layers(DOC.read_text(encoding="utf-8"))


def test_the_doc_lists_every_package_once_and_nothing_else(layers):
    assert set(layers) == packages_on_disk()


def test_imports_go_down_the_layers(layers):
    bad = []
    for module, target, _, line in all_imports():
        src, dst = package_of(module), package_of(target)
        if src != dst and layers[dst] >= layers[src] and (module, target) not in ALLOWED:
            bad.append(f"{module}:{line} imports {target} ({src} layer {layers[src]} -> {dst} layer {layers[dst]})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_no_cycle_between_packages():
    edges: dict[str, set[str]] = defaultdict(set)
    for module, target, _, _ in all_imports():
        if package_of(module) != package_of(target):
            edges[package_of(module)].add(package_of(target))
    assert find_cycle(edges) is None


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{module}:{line} imports {name} from {target}"
           for module, target, names, line in all_imports() if target != module
           for name in [*target.split(".")[1:], *names] if is_private(name)]
    assert not bad, "\n".join(bad)


def test_the_checks_catch_a_violation(tmp_path):
    # The rules themselves must be able to fail: an upward import, a private name.
    layers = read_layers("| 2 | `recipes` | x |\n| 1 | `models` | y |\n")
    assert layers == {"recipes": 2, "models": 1}
    (tmp_path / "ovar" / "models").mkdir(parents=True)
    probe = tmp_path / "ovar" / "models" / "probe.py"
    probe.write_text("def f():\n    from ..recipes.base import _hidden\n")
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        [(target, names, line)] = imports(probe)
    finally:
        SRC = saved
    assert (target, names, line) == ("ovar.recipes.base", ["_hidden"], 2)
    assert layers[package_of(target)] > layers["models"] and is_private(names[0])


def test_library_code_does_not_print():
    # Only the command line writes to the terminal; the library logs.
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


# Where a model runs under a precision's autocast: the one scoring loop (predict, serve, eval
# and the engine's evaluation all go through it), the training step, and the batch-size probe.
AUTOCAST_OWNERS = {"src/ovar/eval/scoring.py", "src/ovar/train/loop.py", "src/ovar/inference/batch_size.py"}


def autocast_callers() -> set[str]:
    """Files that enter an enabled autocast (``autocast(...)``, ``torch.autocast(...)`` without
    ``enabled=False``), outside the module that defines the precisions."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            disabled = any(k.arg == "enabled" and isinstance(k.value, ast.Constant) and k.value.value is False
                           for k in node.keywords)
            if name == "autocast" and not disabled:
                found.add(path.relative_to(ROOT).as_posix())
    return found - {"src/ovar/devices.py"}


def test_models_are_scored_under_autocast_in_one_loop():
    assert autocast_callers() == AUTOCAST_OWNERS


def defined_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def concept_owners(text: str) -> list[tuple[str, list[str]]]:
    """``(file, names)`` pairs of the concept table: cells reading ``"`ovar/x.py`: `a`, `b`"``."""
    section = text.split("## Where each concept lives", 1)[1].split("\n## ", 1)[0]
    pairs = []
    for row in section.splitlines():
        if not row.startswith("| ") or row.startswith("| Concept"):
            continue
        owner = row.rstrip(" |").rsplit(" | ", 1)[1]
        for part in owner.split("; "):
            match = re.fullmatch(r"`(ovar/[\w/]+\.py)`: (.+)", part.strip())
            assert match, f"unreadable owner cell: {part!r}"
            pairs.append((match.group(1), re.findall(r"`(\w+)`", match.group(2))))
    return pairs


def test_every_concept_owner_in_the_doc_exists():
    pairs = concept_owners(DOC.read_text(encoding="utf-8"))
    assert len(pairs) >= 25
    missing = [f"{file}: {name}" for file, names in pairs
               for name in (names if (SRC / file).is_file() else ["<file missing>"])
               if not (SRC / file).is_file() or name not in defined_names(SRC / file)]
    assert not missing, "docs/architecture.md names owners the code lacks:\n" + "\n".join(missing)


def test_the_owner_check_catches_a_wrong_name():
    doc = "## Where each concept lives\n\n| Concept | Owner |\n|---|---|\n| x | `ovar/hub.py`: `NO_SUCH_TABLE` |\n"
    (file, names), = concept_owners(doc)
    assert names[0] not in defined_names(SRC / file)
