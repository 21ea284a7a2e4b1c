"""Videos stored as folders of numbered frame images (``img_00001.jpg``, ``00001.png``, ...).

Datasets are often shipped pre-extracted this way.  Files are ordered by the number in
their name (0- or 1-based, any zero padding); index 0 is the lowest number.  A folder may
mix several series (``img_*``, ``flow_x_*``, ...): the most common one is used.  Only the
requested images are read.  Frame folders carry no frame rate, so ``fps`` defaults to
:data:`DEFAULT_FOLDER_FPS` unless given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import VideoDecodeError
from .info import VideoInfo, VideoReader

DEFAULT_FOLDER_FPS = 30.0
"""Frame rate assumed for a frame folder (its true rate is not stored anywhere)."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# "<prefix><number>.<ext>": the prefix is anything not ending in a digit, e.g. "img_",
# "image_", "frame", "" or "video1_frame_".
_NUMBERED = re.compile(r"^(?P<prefix>.*?\D)?(?P<num>\d+)(?P<ext>\.[A-Za-z]+)$")
# When two series are equally common, prefer the usual RGB-frame names over e.g. flow.
_PREFERRED = ("img", "image", "frame", "")
_CODEC = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".webp": "webp"}


def _series(folder: Path) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Numbered images grouped by (prefix, lower-case extension)."""
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return groups
    for name in names:
        m = _NUMBERED.match(name)
        if not m or m["ext"].lower() not in IMAGE_EXTENSIONS:
            continue
        key = (m["prefix"] or "", m["ext"].lower())
        groups.setdefault(key, []).append((int(m["num"]), name))
    return groups


def _rank(key: tuple[str, str], count: int) -> tuple[int, int, str]:
    stem = key[0].rstrip("_-. ").lower()
    preferred = _PREFERRED.index(stem) if stem in _PREFERRED else len(_PREFERRED)
    return (-count, preferred, key[0] + key[1])


def list_frames(folder: str | os.PathLike) -> list[str]:
    """File names of the folder's frame series, in frame order (empty if none)."""
    groups = _series(Path(folder))
    if not groups:
        return []
    best = min(groups, key=lambda k: _rank(k, len(groups[k])))
    return [name for _, name in sorted(groups[best])]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding numbered frame images."""
    p = Path(path)
    return p.is_dir() and bool(list_frames(p))


class FrameFolderReader(VideoReader):
    """Frames of a folder of numbered images; ``frames_decoded`` counts images read."""

    def __init__(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        self.path = str(folder)
        self.frames_decoded = 0
        self._folder = Path(folder)
        self._names = list_frames(self._folder)
        if not self._names:
            raise VideoDecodeError(self.path,
                                   "directory is not a frame folder (no numbered images)")
        first = self._folder / self._names[0]
        try:
            with Image.open(first) as img:
                width, height = img.size  # the header only: no pixel decoding
        except (OSError, UnidentifiedImageError) as exc:
            raise VideoDecodeError(first, f"unreadable image ({exc.__class__.__name__})") from None
        rate = float(fps) if fps else DEFAULT_FOLDER_FPS
        n = len(self._names)
        ext = Path(self._names[0]).suffix.lower()
        self.info = VideoInfo(path=self.path, num_frames=n, fps=rate, duration=n / rate,
                              width=width, height=height, rotation=0, codec=_CODEC[ext])

    def _load(self, index: int) -> np.ndarray:
        path = self._folder / self._names[index]
        # PIL rather than torchvision.io, whose image codecs are deprecated since 0.29.
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
        except FileNotFoundError:
            raise VideoDecodeError(path, "frame image disappeared") from None
        except (OSError, UnidentifiedImageError, ValueError):
            raise VideoDecodeError(path, "unreadable or corrupt image") from None
        self.frames_decoded += 1
        if rgb.shape[:2] != (self.info.height, self.info.width):
            raise VideoDecodeError(path, f"frame size {rgb.shape[1]}x{rgb.shape[0]} differs from "
                                         f"the first frame's {self.info.width}x{self.info.height}")
        return rgb

    def _read(self, indices: list[int]) -> dict[int, np.ndarray]:
        return {i: self._load(i) for i in indices}
