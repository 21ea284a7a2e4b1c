"""Training machinery (not imported by ``import ovar``): the engine, optimiser, checkpoints."""

from .loop import RunResult, evaluate, train

__all__ = ["RunResult", "evaluate", "train"]
