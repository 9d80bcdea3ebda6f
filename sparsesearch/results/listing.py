"""The experiments under a storage directory, one line each (``sparsesearch list``).

Reads only what ``load_results`` reads, and never fails on one experiment: a folder whose results cannot be read
shows as ``unreadable: <reason>``. An experiment's status:

* ``not started``: no trial has reported yet (a search still preparing its data and target, or one stopped
  before its first evaluation: ``resume`` restarts it);
* ``finished``: every trial the search asked for (the dense family and ``search.num_samples`` sparse trials,
  extensions included) has a final status;
* ``running``: trials are unfinished (or not yet created) and the experiment was written to in the last
  ``RECENT_S`` seconds;
* ``interrupted``: trials are unfinished (or not yet created) and nothing was written for longer
  (``sparsesearch resume`` continues it).

A storage holds no process information, so running and interrupted are told apart by the age of the last write
(trials report at every evaluation, and Ray saves its state every few seconds).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..definitions import REACHED, UNFINISHED
from ..experiment import SPARSE, STATE_FILE, trial_label
from .format import number
from .pareto import OBJECTIVES
from .table import ResultsError, load_results, load_state

NOT_STARTED, RUNNING, FINISHED, INTERRUPTED, UNREADABLE = (
    "not started",
    "running",
    "finished",
    "interrupted",
    "unreadable",
)
RECENT_S = 300.0  # a search that wrote nothing for this long is taken as interrupted


@dataclass(frozen=True)
class ExperimentInfo:
    """One experiment's line of ``sparsesearch list``."""

    name: str
    path: Path
    status: str  # one of NOT_STARTED, RUNNING, FINISHED, INTERRUPTED, UNREADABLE
    reached: int = 0  # trials that reached the target (dense family included)
    trials: int = 0  # trials so far
    expected: int | None = None  # trials the search asked for (None: an older experiment that does not say)
    objective: str = "net_time"
    best: float = math.nan  # the best sparse trial's objective (NaN: none reached the target)
    best_label: str = ""
    reason: str = ""  # why it is unreadable

    def line(self, width: int = 24) -> str:
        """The experiment's line: name, status, trials, best objective."""
        if self.status == UNREADABLE:
            return f"{self.name:<{width}}  unreadable: {self.reason}"
        to_go = self.expected - self.trials if self.expected is not None and self.expected > self.trials else 0
        trials = f"{self.reached}/{self.trials} reached" + (f", {to_go} to go" if to_go else "")
        if math.isnan(self.best):
            best = "best -"
        else:
            value = number(self.best, ".2f", " s") if self.objective == "net_time" else number(self.best, ".4g")
            best = f"best {self.objective} {value}: {self.best_label}"
        return f"{self.name:<{width}}  {self.status:<11}  {trials:<24}  {best}"


def _expected(state: dict) -> int | None:
    """Trials the search asked for: its dense family configurations and its sparse trials (extensions included)."""
    family = state.get("family_configs")
    search = state["raw"].get("search")
    samples = search.get("num_samples", 16) if isinstance(search, dict) else 16  # spec.py's default
    if not isinstance(family, list) or not isinstance(samples, int):
        return None
    return len(family) + samples


def _last_write(exp: Path) -> float:
    """When the experiment was last written to: its trials' reports, Ray's state, the study, the state file."""
    files = [exp / STATE_FILE, *exp.glob("experiment_state-*.json"), *exp.glob("*/result.json"), *exp.glob("study.db*")]
    times = []
    for f in files:
        try:
            times.append(f.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


def describe_experiment(exp: Path, now: float | None = None) -> ExperimentInfo:
    """One experiment's status, trial counts and best objective; ``unreadable`` with the reason, never an error."""
    try:
        df = load_results(exp)
        state = load_state(exp)
    except ResultsError as e:
        return ExperimentInfo(exp.name, exp, UNREADABLE, reason=str(e))
    except (OSError, ValueError, KeyError, TypeError) as e:  # damage the reader did not foresee
        return ExperimentInfo(exp.name, exp, UNREADABLE, reason=f"{type(e).__name__}: {e}")
    objective = df.attrs.get("objective", "net_time")
    expected = _expected(state)
    unfinished = int((df["status"] == UNFINISHED).sum())
    if df.empty:
        status = NOT_STARTED
    elif unfinished or (expected is not None and len(df) < expected):
        recent = (now if now is not None else time.time()) - _last_write(exp) < RECENT_S
        status = RUNNING if recent else INTERRUPTED
    else:
        status = FINISHED
    sparse = df[(df["role"] == SPARSE) & (df["status"] == REACHED)]
    best, label = math.nan, ""
    if not sparse.empty:
        row = sparse.loc[sparse[OBJECTIVES[objective]].idxmin()]
        best, label = float(row[OBJECTIVES[objective]]), trial_label(int(row["trial"]), str(row["trial_id"]))
    return ExperimentInfo(
        name=exp.name,
        path=exp,
        status=status,
        reached=int((df["status"] == REACHED).sum()),
        trials=len(df),
        expected=expected,
        objective=objective,
        best=best,
        best_label=label,
    )


def list_experiments(storage: str | Path = "runs", now: float | None = None) -> list[ExperimentInfo]:
    """Every experiment directly under ``storage`` (or ``storage`` itself when it is one), by name."""
    root = Path(storage).expanduser()
    if not root.is_dir():
        raise ResultsError(f"{root}: no such directory")
    if (root / STATE_FILE).exists():
        return [describe_experiment(root, now)]
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / STATE_FILE).exists())
    except OSError as e:
        raise ResultsError(f"{root}: cannot list the directory ({e.strerror or e})") from None
    return [describe_experiment(d, now) for d in dirs]


def listing_lines(storage: str | Path = "runs", now: float | None = None) -> list[str]:
    """The lines ``sparsesearch list`` prints."""
    infos = list_experiments(storage, now)
    if not infos:
        return [f"no experiments in {Path(storage).expanduser()}"]
    width = max(len(i.name) for i in infos)
    return [i.line(width) for i in infos]
