"""sparsesearch: search dynamic weight-sparsity training recipes by FLOP-adjusted time to a target MLM loss.

The Python API mirrors the commands (``sparsesearch.api``): ``run``, ``resume``, ``train``, ``Results``,
``load_trained``; ``load_results`` and ``load_history`` read an experiment for notebooks. Everything is imported
on first use, so ``import sparsesearch`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Results, resume, run, train
    from .results.best import BestTrial
    from .training.saved import Trained, load_trained

__version__ = "0.1.0"

__all__ = [
    "BestTrial",
    "Results",
    "Trained",
    "load_history",
    "load_results",
    "load_trained",
    "resume",
    "run",
    "train",
]

_LAZY = {
    "run": "api",
    "train": "api",
    "resume": "api",
    "Results": "api",
    "BestTrial": "results.best",
    "load_trained": "training.saved",
    "Trained": "training.saved",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_results(path):
    """One row per trial of an experiment directory as a pandas DataFrame (see ``sparsesearch.results``)."""
    from .results.table import load_results as _load

    return _load(path)


def load_history(path):
    """Every evaluation report of every trial of an experiment directory as a pandas DataFrame."""
    from .results.table import load_history as _load

    return _load(path)
