"""Mutation check: apply one-line bugs to a copy of ``src/`` and run the tests meant to catch each.

Usage (from the repository root, with the development environment active)::

    python tests/mutation/run.py                 # every mutant of mutants.toml
    python tests/mutation/run.py --only metrics  # mutants whose id contains "metrics"
    python tests/mutation/run.py --check-clean   # first: the selected tests pass unmutated

Each mutant is reported ``killed`` (a listed test failed or timed out), ``survived`` (they
all passed: a blind spot), ``stale`` (its snippet is not found exactly once: the code moved)
or ``untested`` (none of its listed tests exists).  Exit status: 1 when any mutant survived
or was untested, else 0.  The repository's own ``src/`` is never modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    tests: list[str]


def read_mutants(path: Path) -> list[Mutant]:
    """The ``[[mutant]]`` entries of ``path``; duplicate ids are an error."""
    entries = tomllib.loads(path.read_text(encoding="utf-8"))["mutant"]
    mutants = [Mutant(e["id"], e["file"], e["original"], e["replacement"], list(e["tests"])) for e in entries]
    ids = [m.id for m in mutants]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"{path}: duplicate mutant ids: {', '.join(duplicates)}")
    return mutants


def existing_tests(tests: list[str], root: Path) -> list[str]:
    """The node ids whose test file exists under ``root`` (a snapshot may predate some)."""
    return [t for t in tests if (root / t.split("::")[0]).is_file()]


def run_tests(tests: list[str], src: Path, root: Path, timeout: float) -> tuple[str, float, str]:
    """``("passed" | "failed" | "timeout", seconds, last output line)`` of pytest on ``tests``."""
    env = dict(os.environ, PYTHONPATH=str(src) + os.pathsep + str(root / "tests"), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, f"over {timeout:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    status = "passed" if done.returncode == 0 else "failed"
    return status, time.monotonic() - start, lines[-1] if lines else done.stderr.strip()[-200:]


def apply(mutant: Mutant, src: Path) -> str | None:
    """The mutated text of the mutant's file, or None when its snippet is not found exactly once."""
    text = (src / "ovar" / mutant.file).read_text(encoding="utf-8")
    if text.count(mutant.original) != 1:
        return None
    return text.replace(mutant.original, mutant.replacement)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=HERE / "mutants.toml")
    parser.add_argument("--root", type=Path, default=REPO,
                        help="repository whose src/ is mutated and whose tests run (default: this one)")
    parser.add_argument("--only", default="", help="run the mutants whose id contains this text")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's tests")
    parser.add_argument("--check-clean", action="store_true", help="first run every selected test unmutated")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    mutants = [m for m in read_mutants(args.mutants) if args.only in m.id]
    counts = {"killed": 0, "survived": 0, "stale": 0, "untested": 0}
    with tempfile.TemporaryDirectory(prefix="ovar-mutants-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        if args.check_clean:
            tests = sorted({t for m in mutants for t in existing_tests(m.tests, root)})
            status, seconds, last = run_tests(tests, src, root, args.timeout * 4)
            print(f"unmutated: {status} in {seconds:.0f} s ({last})", flush=True)
            if status != "passed":
                print("the selected tests fail without any mutant: fix them first", file=sys.stderr)
                return 2
        for mutant in mutants:
            target = src / "ovar" / mutant.file
            original = target.read_text(encoding="utf-8") if target.is_file() else None
            mutated = apply(mutant, src) if original is not None else None
            tests = existing_tests(mutant.tests, root)
            if mutated is None:
                outcome, detail = "stale", f"snippet not found once in {mutant.file}"
            elif not tests:
                outcome, detail = "untested", "none of its tests exists"
            else:
                target.write_text(mutated, encoding="utf-8")
                try:
                    status, seconds, last = run_tests(tests, src, root, args.timeout)
                finally:
                    target.write_text(original, encoding="utf-8")
                outcome = "survived" if status == "passed" else "killed"
                detail = f"{status} in {seconds:.0f} s: {last}"
            counts[outcome] += 1
            print(f"{outcome:8s} {mutant.id}  ({detail})", flush=True)
    total = sum(counts.values())
    print(f"\n{total} mutants: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if counts["survived"] or counts["untested"] else 0


if __name__ == "__main__":
    sys.exit(main())
