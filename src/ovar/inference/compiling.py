"""``--compile``: the video encoder through ``torch.compile``, failing as a one-line user error."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from typing import Any

import torch

from ..errors import OvarError

log = logging.getLogger(__name__)


class CompileError(OvarError):
    """torch.compile is unavailable here, or compiling the model failed."""


def _cxx_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def check_compile_available(device: torch.device) -> None:
    """Raise :class:`CompileError` when ``torch.compile`` cannot run on ``device``."""
    if not hasattr(torch, "compile"):
        raise CompileError(f"--compile needs torch.compile (torch 2 or later; this is torch {torch.__version__})")
    if device.type == "cpu" and _cxx_compiler() is None:
        raise CompileError("--compile on CPU needs a C++ compiler (g++, c++ or clang++ on PATH, or $CXX)")


def compile_video_encoder(model: Any) -> Any:
    """Replace ``model.encode_video`` by its compiled version (in place; returns ``model``).

    Compilation happens at the first call (and again for a new batch shape, e.g. the last,
    smaller batch); a failure there becomes a :class:`CompileError`, not a compiler traceback.
    """
    if getattr(model.encode_video, "ovar_compiled", False):
        return model  # a model compiled by an earlier call stays compiled
    device = next(model.parameters()).device
    check_compile_available(device)
    eager = model.encode_video
    compiled = torch.compile(eager)

    @functools.wraps(eager)
    def encode_video(*args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return compiled(*args, **kwargs)
        except (OvarError, KeyboardInterrupt, torch.cuda.OutOfMemoryError):
            raise
        except Exception as exc:  # dynamo/inductor/C++ build failures carry long reports
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CompileError(f"--compile: compiling the video encoder failed ({first}); run without --compile") from None

    encode_video.ovar_compiled = True  # type: ignore[attr-defined]
    model.encode_video = encode_video
    log.info("video encoder compiled with torch.compile on %s", device)
    return model
