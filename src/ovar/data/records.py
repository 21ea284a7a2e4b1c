"""The one record type every list format is parsed into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video of a list file.

    ``path`` is as written in the list (relative to the dataset root unless absolute);
    ``num_frames`` is known only for frame-folder lists that state it.
    """

    path: str
    label: int
    num_frames: int | None = None
