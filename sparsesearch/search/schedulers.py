"""The search's Ray Tune plug-ins: the dense family ahead of the sampler's trials, fixed configurations (the
confirmation runs), and ASHA over the sparse trials alone."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from ..checks import asha_grace, asha_max_t
from ..experiment import DENSE_FAMILY, role
from ..spec import Spec
from .private_apis import forget_asha_trial


class WithDenseFamily(Searcher):
    """Searcher wrapper: the first suggestions are the dense family's trials (fixed configurations); the rest come
    from the wrapped searcher, which never hears about the family (its model of the space is the sparse one)."""

    def __init__(self, inner: Searcher, family: list[dict]) -> None:
        self.inner = inner
        self.family = family
        self.family_trials: list[str] = []
        super().__init__(metric=inner.metric, mode=inner.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.inner.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        if len(self.family_trials) < len(self.family):
            self.family_trials.append(trial_id)
            return dict(self.family[len(self.family_trials) - 1])
        return self.inner.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.family_trials:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.family_trials:
            self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            self.inner.save(os.path.join(d, "inner.pkl"))
            inner = Path(d, "inner.pkl").read_bytes()
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"family": self.family, "family_trials": self.family_trials, "inner": inner}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.family, self.family_trials = state["family"], state["family_trials"]
        with tempfile.TemporaryDirectory() as d:
            Path(d, "inner.pkl").write_bytes(state["inner"])
            self.inner.restore(os.path.join(d, "inner.pkl"))


class FixedConfigs(Searcher):
    """Searcher that suggests a fixed list of configurations, then finishes (the confirmation runs)."""

    def __init__(self, configs: list[dict]) -> None:
        super().__init__(metric="objective", mode="min")
        self.configs, self.given = configs, 0

    def suggest(self, trial_id: str) -> dict | None:
        if self.given >= len(self.configs):
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray's sentinel is a str; its signature says dict
        self.given += 1
        return dict(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "given": self.given}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.given = state["configs"], state["given"]


class FamilyKeepingASHA(ASHAScheduler):
    """ASHA over the sparse trials alone: dense family trials never enter its rungs and are never stopped.

    Every speedup is measured against the best dense family trial, so each runs to the target or its budget (at
    equal compute a dense run is behind a good sparse one, so plain ASHA may cut it at a rung). And a family
    trial's results must not set a rung's cutoff either: Ray's ``on_trial_complete`` records a finished trial's
    *last* result at the highest rung it passed, so family trials that finished first at the target loss would put
    that loss in early rungs and stop every sparse trial there, however well it was doing. The role is read from
    the trial's config at every call, so a restored experiment (``resume``) is treated the same way.
    """

    @staticmethod
    def _is_family(trial: Trial) -> bool:
        return role(getattr(trial, "config", None) or {}) == DENSE_FAMILY

    def _forget(self, trial: Trial) -> None:
        # An experiment saved before family trials were kept out may hold one in Ray's trial -> bracket map.
        forget_asha_trial(self, trial.trial_id)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        if self._is_family(trial):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_remove(tune_controller, trial)


def make_scheduler(spec: Spec, unit_flops: float) -> FamilyKeepingASHA:
    """ASHA over the sparse trials on dense-equivalent steps or FLOPs (``search.asha``), up to the budget."""
    a = spec.search.asha
    max_t = asha_max_t(spec, unit_flops)  # grace_period <= max_t: checked with the spec (checks.check_asha)
    # Budgets are floats (dense-equivalent steps or FLOPs); ASHA compares them as numbers, whatever its hints say.
    return FamilyKeepingASHA(
        time_attr="budget",
        metric="eval_loss",
        mode="min",
        max_t=max_t,  # type: ignore[arg-type]
        grace_period=asha_grace(spec, unit_flops),  # type: ignore[arg-type]
        reduction_factor=a.reduction_factor,
    )
