"""sparsesearch: search dynamic weight-sparsity training recipes by FLOP-adjusted time to a target MLM loss."""

__version__ = "0.1.0"

__all__ = ["load_history", "load_results"]


def load_results(path):
    """One row per trial of an experiment directory as a pandas DataFrame (see ``sparsesearch.results``)."""
    from .results.table import load_results as _load

    return _load(path)


def load_history(path):
    """Every evaluation report of every trial of an experiment directory as a pandas DataFrame."""
    from .results.table import load_history as _load

    return _load(path)
