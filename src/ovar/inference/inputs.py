"""Turning user paths into the list of videos to classify."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, TextIO

from ..errors import OvarError, VideoDecodeError
from ..video import VIDEO_EXTENSIONS, is_frame_folder


def expand_inputs(paths: Iterable[str | os.PathLike], *, missing_ok: bool = False) -> tuple[list[str], bool]:
    """Expand files and folders into video paths.

    A frame folder is one video; any other folder means every video in it, recursively
    (videos files and frame folders), in sorted order. Returns the videos and whether
    the request was a batch (several paths or a folder of videos). A missing path raises
    :class:`VideoDecodeError`, or with ``missing_ok`` is kept (it then fails as a video).
    """
    videos: list[str] = []
    batch = False
    paths = list(paths)
    if len(paths) != 1:
        batch = True
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            if missing_ok:
                videos.append(str(path))
                continue
            raise VideoDecodeError(path, "file not found")
        if not path.is_dir() or is_frame_folder(path):  # files, and pipes or devices holding a video
            videos.append(str(path))
            continue
        batch = True
        found = scan_folder(path)
        if not found:
            raise VideoDecodeError(path, "folder holds no videos or frame folders")
        videos.extend(found)
    return videos, batch


def scan_folder(folder: Path) -> list[str]:
    """Every video file and frame folder below ``folder`` (frame folders are not descended into)."""
    found: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found.extend([str(entry)] if is_frame_folder(entry) else scan_folder(entry))
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(str(entry))
    return found


def read_path_list(source: str, stream: TextIO | None = None) -> list[str]:
    """The video paths listed one per line in file ``source`` (``"-"``: ``stream``, standard input).

    Blank lines and lines starting with ``#`` are skipped; surrounding whitespace is dropped.
    """
    if source == "-":
        text = (stream if stream is not None else sys.stdin).read()
        name = "standard input"
    else:
        path = Path(source)
        if not path.is_file():
            raise OvarError(f"@{source}: list of videos not found")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise OvarError(f"@{source}: cannot read the list of videos ({exc})") from None
        name = f"@{source}"
    paths = [line.strip() for line in text.splitlines()]
    paths = [p for p in paths if p and not p.startswith("#")]
    if not paths:
        raise OvarError(f"{name}: the list of videos is empty")
    return paths
