"""Stopping a run cleanly on SIGTERM / SIGINT (cluster preemption, Ctrl-C).

The handler only records the signal; the engine looks at :attr:`StopRequest.requested`
after each optimiser step, writes a mid-epoch checkpoint and returns, so ``--resume``
continues from exactly that step.  A second SIGINT falls back to the previous handler
(Ctrl-C twice interrupts at once).  Under torch.distributed every rank must stop at the
same step, so :meth:`StopRequest.agreed` takes the maximum over ranks.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A context manager installing the handlers (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        # The next identical signal gets the previous behaviour (e.g. KeyboardInterrupt).
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def agreed(self, device: torch.device) -> bool:
        """Whether any rank was asked to stop (every rank must call it at the same step)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.requested
        flag = torch.tensor([self.signum or 0], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signum is None:
            self.signum = int(flag.item())
        return bool(flag.item())

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                previous = signal.signal(signum, self._handle)
                # None: a handler not installed from Python; restore the default then.
                self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
