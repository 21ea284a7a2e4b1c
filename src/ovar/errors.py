"""Exception types that ovar raises for bad user input.

Every error a user can cause derives from :class:`OvarError`; the command line prints
its message on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class OvarError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class VideoDecodeError(OvarError):
    """A video (file or frame folder) that cannot be opened or decoded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class LabelError(OvarError):
    """An empty, duplicated or malformed list of class names or templates."""


class ModelError(OvarError):
    """An unknown model name, unreadable weights file or unavailable pretrained tag."""
