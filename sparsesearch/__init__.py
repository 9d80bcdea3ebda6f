"""sparsesearch: search dynamic weight-sparsity training recipes by FLOP-adjusted time to a target MLM loss.

The Python API mirrors the commands (``sparsesearch.api``): ``run``, ``resume``, ``train``, ``Results``,
``load_trained``; ``load_results`` and ``load_history`` read an experiment for notebooks. Everything is imported
on first use, so ``import sparsesearch`` stays light.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

from . import train as _train_layer

if TYPE_CHECKING:
    from .api import Results, resume, run
    from .results.best import BestTrial
    from .train.saved import Trained, load_trained

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
    "resume": "api",
    "Results": "api",
    "BestTrial": "results.best",
    "load_trained": "train.saved",
    "Trained": "train.saved",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _TrainLayer(types.ModuleType):
    """``sparsesearch.train`` is both the train layer's package (``sparsesearch.train.trainer``, ...) and, called,
    ``sparsesearch.api.train``: the package attribute is always the module (Python binds a subpackage to its name
    on import), so the function is its ``__call__``."""

    def __call__(self, spec, overrides=(), **kwargs):
        """Train the spec's configuration to its target; see ``sparsesearch.api.train``."""
        from .api import train

        return train(spec, overrides, **kwargs)


_train_layer.__class__ = _TrainLayer


def load_results(path):
    """One row per trial of an experiment directory as a pandas DataFrame (see ``sparsesearch.results``)."""
    from .results.table import load_results as _load

    return _load(path)


def load_history(path):
    """Every evaluation report of every trial of an experiment directory as a pandas DataFrame."""
    from .results.table import load_history as _load

    return _load(path)
