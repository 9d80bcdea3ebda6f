"""The project's shared vocabulary: what a run's status means, where a run reached its target, and which numbers
are finite (and how a number that is not is written to JSON).

One home for each, so that the trainer, the trial reports and the results tables agree (docs/ARCHITECTURE.md,
"Definitions"). Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

# Statuses of a training run (the trainer sets them) ...
RUNNING = "running"
REACHED = "reached"  # the held-out loss reached the target
NOT_REACHED = "not_reached"  # the step or time budget ran out first
DIVERGED = "diverged"  # a non-finite loss
# ... of a trial (the search adds it) ...
INVALID = "invalid"  # its sampled values clash; it did not train
# ... and of a trial as the results table sees it afterwards.
STOPPED_EARLY = "stopped_early"
ERRORED = "errored"
UNFINISHED = "unfinished"

# Final statuses of a trial, in the order tables list them, with what each means.
STATUSES = (REACHED, NOT_REACHED, STOPPED_EARLY, DIVERGED, ERRORED, INVALID, UNFINISHED)
STATUS_HELP = {
    REACHED: "reached the target loss",
    NOT_REACHED: "spent its step or time budget without reaching the target",
    STOPPED_EARLY: "stopped by ASHA before reaching the target",
    DIVERGED: "non-finite loss; stopped at once",
    ERRORED: "the trial raised an error (see error.txt in its folder)",
    INVALID: "its sampled values clash; it did not train",
    UNFINISHED: "still running, or the search was interrupted (resume it to finish)",
}
LEGACY_STATUSES = {"budget": NOT_REACHED}  # names older experiments stored


def target_crossing(prev_loss: float | None, loss: float, target: float) -> float:
    """Where the held-out loss reached ``target`` between the previous evaluation (0) and this one (1), by
    linear interpolation of the loss; 1 when there is no previous evaluation above this one."""
    if prev_loss is None or not prev_loss > loss:
        return 1.0
    return (prev_loss - target) / (prev_loss - loss)


def at_target(
    prev: Mapping[str, float] | None, row: Mapping[str, float], target: float, keys: Iterable[str]
) -> dict[str, float]:
    """``keys`` (step, time, FLOPs, ...) interpolated to the point where the loss reached ``target``, between
    the evaluations ``prev`` and ``row`` (rows with an ``eval_loss``; the first to reach the target is ``row``)."""
    if prev is None or not prev["eval_loss"] > row["eval_loss"]:
        return {k: row[k] for k in keys}
    frac = target_crossing(prev["eval_loss"], row["eval_loss"], target)
    return {k: prev[k] + (row[k] - prev[k]) * frac for k in keys}


def is_finite(v: Any) -> bool:
    """Whether ``v`` is a real, finite number (numpy scalars included; never a bool, text, None, NaN or inf)."""
    if v is None or isinstance(v, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


def nan_to_inf(x: float) -> float:
    """``x``, with NaN as infinity: Optuna rejects NaN (its trial stays running forever), infinity ranks last."""
    return math.inf if isinstance(x, float) and math.isnan(x) else x


def json_safe(x: Any) -> Any:
    """Plain JSON values, recursively: tuples as lists, keys as text, numpy scalars as Python numbers, infinite and
    NaN floats as null (strict JSON has neither)."""
    if hasattr(x, "item") and not isinstance(x, (dict, list, tuple)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x
