"""A search whose storage fails (full, read-only, gone) stops at once with one message that says how to go on.

Without this, each trial retry meets the same failure, uses up the trial's ``tune.max_failures``, and the search
goes on into the broken storage trial after trial until Optuna's study (SQLite, in the same folder) fails too.
"""

from __future__ import annotations

import errno
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.experiment import Trial

from ..experiment import StorageError

# Failures of the storage, not of a trial: a retry meets them again.
_STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ESTALE, errno.ENOTCONN}
)
_SQLITE_STORAGE = ("disk is full", "readonly database", "unable to open database file", "disk I/O error")


def _storage_failure(exc: BaseException | None) -> str | None:
    """What failed, when ``exc`` is a storage failure anywhere in its chain (Ray wraps a trial's error as
    RayTaskError.cause; Optuna chains SQLAlchemy's error, which chains sqlite3's), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
            return os.strerror(exc.errno)
        if isinstance(exc, sqlite3.OperationalError) and any(s in str(exc) for s in _SQLITE_STORAGE):
            return f"Optuna study: {exc}"
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def _storage_error(exp_dir: Path, what: str) -> StorageError:
    return StorageError(
        f"cannot write to {exp_dir.parent} ({what}); the search stopped, its trials kept. Once it is writable again, "
        f"continue with `sparsesearch resume {exp_dir}`"
    )


class StopOnStorageFailure(tune.Callback):
    """Stops the search at a trial's first storage failure: each retry would fail the same way, use up the
    trial's max_failures, and the search would go on into the broken storage trial after trial."""

    def __init__(self, exp_dir: Path) -> None:
        self.exp_dir = exp_dir

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._check(trial)

    def _check(self, trial: Trial) -> None:
        try:  # Tune pickles the error on the driver's machine (its session folder), not into the storage
            with open(trial.pickled_error_file, "rb") as f:
                error = pickle.load(f)
        except Exception:  # no pickled error (e.g. a lost node), or one that does not unpickle here
            return
        what = _storage_failure(error)
        if what:
            raise _storage_error(self.exp_dir, what)


def fit_or_stop(tuner: tune.Tuner, exp_dir: Path) -> None:
    """``tuner.fit()``; a storage failure (in a trial, the searcher's study or Tune's own files) ends it as one
    StorageError that says how to go on."""
    try:
        tuner.fit()
    except StorageError:
        raise
    except Exception as e:
        what = _storage_failure(e)
        if what is None:
            raise
        raise _storage_error(exp_dir, what) from None
