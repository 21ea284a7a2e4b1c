"""Video list files of the five systems, parsed into :class:`VideoRecord` lists.

Formats (``fmt``):

- ``"space"`` (alias ``"video"``): EVL / MMAction2 / Text4Vis video lists, ``path label``.
  The label is the last whitespace-separated field, so a path holding spaces still reads.
- ``"comma"``: Open-VCLIP / FROSTER lists, ``path,label`` or ``path,ignored,label``. A line
  with no comma is read as label 0, as the original loader does, but only when ``"comma"``
  is asked for explicitly; auto-detection reports such a line as malformed.
- ``"frames"``: Text4Vis / ActionCLIP frame-folder lists, ``dir num_frames label``.
- ``"auto"``: decided by the first record line: a comma (with an integer after the last
  one) means comma; two trailing integer fields after a path mean frames; else space.
  A detected list's lines must then have its number of fields: a path whose last word is
  a number (``a 1 2 3``) is an error naming the line, not a path with spaces.

Blank lines and lines starting with ``#`` are skipped everywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Literal

from ..errors import OvarError
from .records import VideoRecord

ListFormat = Literal["auto", "space", "video", "comma", "frames"]
FORMATS: tuple[str, ...] = ("auto", "space", "video", "comma", "frames")

_INT = re.compile(r"[+-]?[0-9]+")


class ListFormatError(OvarError):
    """A list file that cannot be read: missing, malformed line, bad label, or no records."""


def read_list(path: str | Path, *, fmt: ListFormat = "auto",
              num_classes: int | None = None) -> list[VideoRecord]:
    """Read a list file; errors name the file and line (``lists/train.txt:17: ...``)."""
    path = Path(path)
    if not path.is_file():
        raise ListFormatError(f"{path}: list file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from spreadsheet exports
    except UnicodeDecodeError as exc:
        raise ListFormatError(f"{path}: not a UTF-8 text file (byte {exc.start})") from exc
    return parse_list(text, source=str(path), fmt=fmt, num_classes=num_classes)


def parse_list(text: str, *, source: str = "<list>", fmt: ListFormat = "auto",
               num_classes: int | None = None) -> list[VideoRecord]:
    """Parse the text of a list file; ``source`` names it in error messages."""
    if fmt not in FORMATS:
        raise ListFormatError(f"{source}: unknown list format '{fmt}' (choose from {', '.join(FORMATS)})")
    if num_classes is not None and num_classes < 1:
        raise ListFormatError(f"{source}: num_classes must be positive, got {num_classes}")
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ListFormatError(f"{source}: the list has no records")
    explicit = fmt != "auto"
    if not explicit:
        fmt = detect_format(lines[0][1])
    records = []
    for number, line in lines:
        where = f"{source}:{number}"
        if fmt == "comma":
            path, label, frames = _split_comma(line, where, allow_bare=explicit)
        elif fmt == "frames":
            path, label, frames = _split_frames(line, where, strict=not explicit)
        else:
            path, label, frames = _split_space(line, where, strict=not explicit)
        records.append(VideoRecord(path, _label(label, where, num_classes),
                                   None if frames is None else _num_frames(frames, where)))
    return records


def detect_format(line: str) -> str:
    """The format of a list whose first record line is ``line``: comma, frames or space."""
    fields = line.split()
    if "," in line:
        after_comma = line.rsplit(",", 1)[1].strip()
        # A space list whose path holds a comma ("a, b.mp4 3") still ends in " <int>".
        if _INT.fullmatch(after_comma) or not _INT.fullmatch(fields[-1]):
            return "comma"
    if len(fields) >= 3 and _INT.fullmatch(fields[-1]) and _INT.fullmatch(fields[-2]):
        return "frames"
    return "space"


def _split_comma(line: str, where: str, *, allow_bare: bool) -> tuple[str, str, None]:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) == 1 and allow_bare:
        words = line.split()
        if len(words) > 1 and _INT.fullmatch(words[-1]):
            # "name.avi 0" read with "," would silently become label 0 of a missing file.
            raise ListFormatError(f"{where}: {_show(line)} looks space-separated; read it with fmt='space'")
        return fields[0], "0", None
    if len(fields) not in (2, 3) or not fields[0]:
        hint = " (a line without a label is read as label 0 only with fmt='comma')" \
            if len(fields) == 1 else ""
        raise ListFormatError(f"{where}: expected 'path,label' or 'path,ignored,label', "
                              f"got {_show(line)}{hint}")
    return fields[0], fields[-1], None


def _split_space(line: str, where: str, *, strict: bool = True) -> tuple[str, str, None]:
    fields = line.rsplit(None, 1)
    if len(fields) != 2:
        raise ListFormatError(f"{where}: expected 'path label', got {_show(line)}")
    if strict:
        _check_path_field(fields[0], line, where, "'path label' (2 fields)")
    return fields[0], fields[1], None


def _split_frames(line: str, where: str, *, strict: bool = True) -> tuple[str, str, str]:
    fields = line.rsplit(None, 2)
    if len(fields) != 3:
        raise ListFormatError(f"{where}: expected 'dir num_frames label', got {_show(line)}")
    if strict:
        _check_path_field(fields[0], line, where, "'dir num_frames label' (3 fields)")
    return fields[0], fields[2], fields[1]


def _check_path_field(path: str, line: str, where: str, expected: str) -> None:
    """A path may hold spaces, but one whose last word is a number is an extra field
    (``a 1 2 3`` is a line with too many fields, not the video ``a 1``). Checked when the
    format was detected; a format given explicitly is taken at its word."""
    words = path.split()
    if len(words) > 1 and _INT.fullmatch(words[-1]):
        raise ListFormatError(f"{where}: expected {expected}, got {len(line.split())} fields in {_show(line)}")


def _label(text: str, where: str, num_classes: int | None) -> int:
    if not _INT.fullmatch(text):
        raise ListFormatError(f"{where}: label {_show(text)} is not an integer")
    label = int(text)
    if label < 0:
        raise ListFormatError(f"{where}: label {label} is negative")
    if num_classes is not None and label >= num_classes:
        raise ListFormatError(f"{where}: label {label} is out of range for {num_classes} classes "
                              f"(0..{num_classes - 1})")
    return label


def _num_frames(text: str, where: str) -> int:
    if not _INT.fullmatch(text):
        raise ListFormatError(f"{where}: num_frames {_show(text)} is not an integer")
    frames = int(text)
    if frames < 0:
        raise ListFormatError(f"{where}: num_frames {frames} is negative")
    return frames


def _show(text: str, limit: int = 80) -> str:
    """Quote a piece of a line for a one-line error message, shortened if long."""
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def resolve(record: VideoRecord, root: str | Path | None = None, *, allow_outside: bool = False) -> Path:
    """The file or folder of ``record``: ``root / path``.

    With a ``root``, a path that leads outside it (absolute, ``~``, or climbing out with
    ``..``) is refused with :class:`ListFormatError` unless ``allow_outside``: a list
    should not reach files the dataset root does not hold. Without a root, paths are
    taken as written.
    """
    path = Path(os.path.expanduser(record.path))
    if root is None:
        return path
    base = Path(root).expanduser()
    full = path if path.is_absolute() else base / path
    if not allow_outside and not _inside(full, base):
        raise ListFormatError(f"{record.path}: outside the data root {base} (absolute paths and '..' "
                              f"are refused unless allowed explicitly)")
    return full


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` stays under ``root`` once ``..`` is collapsed (symbolic links are the dataset's business)."""
    return os.path.normpath(os.path.join(os.path.abspath(root), path)).startswith(
        os.path.join(os.path.normpath(os.path.abspath(root)), ""))


def write_list(records: Iterable[VideoRecord], path: str | Path, fmt: ListFormat = "comma") -> Path:
    """Write ``records`` as a list file the original tools can read back; returns the path.

    Paths that the target format cannot represent (a comma in a comma list, whitespace
    in a space-separated list, a leading ``#``) raise :class:`ListFormatError` instead of
    producing a file that reads back differently.
    """
    path = Path(path)
    fmt = "space" if fmt == "video" else fmt
    if fmt not in ("space", "comma", "frames"):
        raise ListFormatError(f"{path}: cannot write list format '{fmt}' (choose space, comma or frames)")
    lines = []
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        _check_writable(record, fmt, where)
        if fmt == "comma":
            lines.append(f"{record.path},{record.label}")
        elif fmt == "space":
            lines.append(f"{record.path} {record.label}")
        else:
            if record.num_frames is None:
                raise ListFormatError(f"{where}: '{record.path}' has no num_frames for a frames list")
            lines.append(f"{record.path} {record.num_frames} {record.label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written list behind
    return path


def _check_writable(record: VideoRecord, fmt: str, where: str) -> None:
    if not record.path or record.path.startswith("#") or record.path != record.path.strip():
        raise ListFormatError(f"{where}: path {_show(record.path)} cannot be written to a list file")
    if any(ch in record.path for ch in "\r\n"):
        raise ListFormatError(f"{where}: path {_show(record.path)} contains a line break")
    if fmt == "comma" and "," in record.path:
        raise ListFormatError(f"{where}: path {_show(record.path)} contains a comma; write fmt='space'")
    if fmt != "comma" and any(ch.isspace() for ch in record.path):
        raise ListFormatError(f"{where}: path {_show(record.path)} contains whitespace; write fmt='comma'")
    if record.label < 0:
        raise ListFormatError(f"{where}: label {record.label} is negative")
