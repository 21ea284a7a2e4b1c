"""argparse value types shared by the sub-commands (their errors become usage errors, exit 2)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1] (ratios such as a patch ratio)."""
    return _number(text, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def positive_float(text: str) -> float:
    return _number(text, lambda v: v > 0, "a positive number")


def comma_words(text: str) -> list[str]:
    """``"red, green,,blue"`` -> ``["red", "green", "blue"]``."""
    return [w.strip() for w in text.split(",") if w.strip()]


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (waits, margins)."""
    return _number(text, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got '{text}'")
    return value


def _number(text: str, accept, expected: str) -> float:
    """``float(text)`` if ``accept`` takes it (NaN never passes a comparison), else argparse's error."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'")
    return value


def finite_positive_float(text: str) -> float:
    """A positive number that is not inf or nan (durations such as --segments)."""
    value = positive_float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got '{text}'")
    return value


def views(text: str) -> str:
    """``TxS`` temporal clips x spatial crops, checked now; the text is passed on as given."""
    from ..video.sampling import parse_views

    return _parsed_by(parse_views, text)


def sampling(text: str) -> str:
    """A frame sampling description (segment, dense, TxS, fps:TxS...), checked now."""
    from ..video.sampling import parse_sampling

    return _parsed_by(parse_sampling, text)


def _parsed_by(parse, text: str) -> str:
    """``text`` if ``parse`` accepts it; its ValueError becomes argparse's one-line error."""
    try:
        parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps (whether it exists is checked when the command starts)."""
    from ..devices import check_device_name
    from ..errors import OvarError

    try:
        return check_device_name(text)
    except OvarError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _first_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def _check_creatable(path: Path, text: str) -> None:
    """``path`` (a file or folder to create) can be made: its nearest existing ancestor is a writable folder."""
    anchor = _first_existing(path.parent if path.parent != path else path)
    if not anchor.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}': {anchor} is a file, not a folder")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"'{text}': folder {anchor} is not writable")


def output_file(text: str) -> str:
    """A file to write into an existing folder (not a folder itself)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}': folder {path.parent} does not exist")
    _check_creatable(path, text)
    return text


def new_file(text: str) -> str:
    """A file to write; missing parent folders are created (so only a folder, or a file on the way, is refused)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder; give a file name")
    _check_creatable(path, text)
    return text


def output_dir(text: str) -> str:
    """A folder to write into; created if missing, but never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"folder '{text}' is not writable")
    else:
        _check_creatable(path, text)
    return text


def checkpoint(text: str) -> str:
    """A checkpoint file or run folder; a file that is a cut-off zip archive is refused now, before any work.

    PyTorch's files are zip archives whose directory sits at the end, so a truncated copy
    is recognisable without reading it through. Missing paths pass: the command reports them.
    """
    path = Path(text)
    if not path.is_file():
        return text
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"'{text}': cannot read ({exc.strerror})") from None
    if magic == b"PK\x03\x04":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError):
            raise argparse.ArgumentTypeError(f"'{text}' is damaged or truncated (its zip archive has no "
                                             f"readable directory)") from None
    elif path.stat().st_size == 0:
        raise argparse.ArgumentTypeError(f"'{text}' is empty")
    return text
