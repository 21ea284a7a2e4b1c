"""One meaning of ``--device`` / ``run.device`` for every command: auto, cpu, cuda, cuda:N, mps.

:func:`check_device_name` checks the spelling without importing torch (so it can run while
the command line is parsed); :func:`resolve_device` also checks that the device exists on
this machine. Both raise :class:`~ovar.errors.OvarError`, which the command line reports
as one line with exit status 2.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from .errors import OvarError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")


class DeviceError(OvarError):
    """A device name that is misspelt, or names hardware this machine does not have."""


def check_device_name(name: str) -> str:
    """``name`` lower-cased if it is one of auto, cpu, cuda, cuda:N, mps; else :class:`DeviceError`."""
    text = str(name).strip().lower()
    if not _DEVICE.fullmatch(text):
        raise DeviceError(f"unknown device '{name}' (expected {DEVICE_NAMES})")
    return text


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """The torch device that ``name`` means here.

    ``auto`` (or ``None``) is this process's GPU (``cuda:local_rank``) when CUDA is
    available, else the CPU. ``cuda`` without an index is ``cuda:local_rank``. A CUDA or
    MPS device this machine lacks, or a GPU index past the last one, is a :class:`DeviceError`
    rather than a late torch failure.
    """
    import torch

    text = check_device_name("auto" if name is None else name)
    if text == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise DeviceError(f"device '{name}': MPS is not available on this machine")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{name}': CUDA is not available on this machine")
    index = int(text.split(":")[1]) if ":" in text else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device '{name}': this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


PRECISIONS = ("auto", "fp32", "fp16", "bf16")
"""The precisions every command takes (``--precision``, ``run.precision``)."""


class PrecisionError(OvarError):
    """A precision that is misspelt, or that this device cannot run."""


def check_precision(precision: str, setting: str = "run.precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; else :class:`PrecisionError`."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"{setting}: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device, setting: str = "run.precision") -> str:
    """The precision ``precision`` means on ``device``, the one meaning of ``auto`` in ovar:
    bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU.

    ``setting`` names the option in the error raised for an unknown name or fp16 without a GPU.
    """
    import torch

    check_precision(precision, setting)
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise PrecisionError(f"{setting}: fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved ``precision`` (fp32, fp16 or bf16) on ``device``."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)
