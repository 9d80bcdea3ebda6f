"""What the Optuna study learns from a trial: only what the trial really showed.

Ray Tune's ``OptunaSearch`` tells the study every finished trial as COMPLETE with its last reported objective.
For a trial that ASHA stopped, or one that ran out of budget, that objective is a *projection* (optimistic: the
report plots such trials below the front), so the sampler would learn that the configurations early stopping
rejected are the good ones. Here instead, as Optuna's own pruners do:

* every evaluation of a sparse trial reaches the study as an intermediate value: the held-out loss at the budget
  spent so far (dense-equivalent steps, or net FLOPs, as ASHA counts them);
* a trial that reached the target is COMPLETE with its objective; one stopped early or out of budget is PRUNED
  (TPE ranks it by how far it got and how good it was there, below every completed trial); a diverged or invalid
  one is FAIL. So the study's best trial is always the best trial that reached the target.
* every Optuna trial carries user attributes: its label (the one the console, report and CSV use), the Ray trial
  id, role, status, whether its numbers are projected, and its results per target rung.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..definitions import DIVERGED, INVALID, REACHED, RUNNING, STOPPED_EARLY, is_finite, json_safe
from ..experiment import SPARSE, rung_key, trial_label
from .private_apis import optuna_trial, optuna_trial_told

# Reported metrics copied to the study's user attributes when a trial ends.
_ATTRS = ("step", "net_time_s", "net_flops", "wall_net_time_s", "avg_sparsity", "eval_loss", "budget")


class StudyFeed(OptunaSearch):
    """``OptunaSearch`` that tells its study the truth about each trial (module docstring)."""

    def __init__(self, *args: Any, rungs: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._rungs = rungs
        self._last_step: dict[str, int] = {}  # saved and restored with the rest of the searcher's state

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        trial = optuna_trial(self, trial_id)
        if trial is not None and isinstance(config, dict) and config is not Searcher.FINISHED:
            _unless_finished(trial.set_user_attr, "ray_trial_id", trial_id)
            _unless_finished(trial.set_user_attr, "role", SPARSE)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, list):  # Optuna keeps no intermediate values for several objectives
            return
        trial = optuna_trial(self, trial_id)
        loss, budget = result.get("eval_loss"), result.get("budget")
        if trial is None or not is_finite(loss) or not is_finite(budget):
            return
        step = math.floor(float(budget))  # type: ignore[arg-type]
        if step <= self._last_step.get(trial_id, -1):  # Optuna keeps the first value of a step
            return
        self._last_step[trial_id] = step
        _unless_finished(trial.report, float(loss), step)  # type: ignore[arg-type]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = optuna_trial(self, trial_id)
        result = result or {}
        status = str(result.get("status", ""))
        if trial is not None and not optuna_trial_told(self, trial_id):
            for key, value in self.attributes(trial_id, result, error).items():
                _unless_finished(trial.set_user_attr, key, value)
        if status == REACHED and not error:
            super().on_trial_complete(trial_id, result, error=False)
            return
        # Without a result Ray tells the study PRUNED (or FAIL with error): never a projection.
        super().on_trial_complete(trial_id, None, error=error or status in (DIVERGED, INVALID))

    def attributes(self, trial_id: str, result: dict, error: bool) -> dict[str, Any]:
        """The user attributes of a finished trial: identity, outcome and per-rung results."""
        status = str(result.get("status", ""))
        if error:
            status = "errored"
        elif status == RUNNING:
            status = STOPPED_EARLY  # the scheduler ended it mid-run
        out: dict[str, Any] = {
            "label": trial_label(result.get("trial_number"), trial_id),
            "status": status,
            "projected": bool(result.get("projected", status != REACHED)),
        }
        for key in _ATTRS:
            if key in result:
                out[key] = json_safe(result[key])
        if result.get("message"):
            out["message"] = str(result["message"])
        for i in range(self._rungs):
            if result.get(rung_key(i, "reached")):
                out[f"rung{i}"] = {
                    k: json_safe(result.get(rung_key(i, k))) for k in ("loss", "steps", "net_time_s", "net_flops")
                }
        return out


def _unless_finished(update: Callable[..., None], *args: Any) -> None:
    """Update an Optuna trial, unless the study already holds it as finished: a driver killed after telling the
    study and before saving its searcher state resumes with a searcher that does not know the trial ended."""
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        update(*args)
