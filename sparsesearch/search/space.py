"""Spec -> Optuna define-by-run search space (conditional keys exist only when their condition holds)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import optuna

from ..checks import check_space, checked_trial_spec
from ..experiment import decode_value, encode_value
from ..spec import GRID, SearchParam, Spec, SpecError, grid_size


def _suggest(trial: optuna.Trial, p: SearchParam) -> Any:
    if p.kind in ("choice", GRID):  # a grid key is a categorical; the grid sampler picks its value
        return decode_value(trial.suggest_categorical(p.key, [encode_value(v) for v in p.values]))
    lo, hi = p.values
    if p.kind == "uniform":
        return trial.suggest_float(p.key, lo, hi, step=p.step)
    if p.kind == "loguniform":
        return trial.suggest_float(p.key, lo, hi, log=True)
    return trial.suggest_int(p.key, lo, hi, step=int(p.step or 1), log=p.kind == "int_log")  # bounds inclusive


class DefineByRun:
    """The define-by-run function OptunaSearch calls: suggests the searched keys (no computation inside) and
    returns the constants. A condition on a key that is not searched is decided by the spec's own value.
    A class, not a closure, so that the searcher can be pickled into the experiment for resuming."""

    def __init__(self, spec: Spec, raw: dict, keep: Collection[str] | None = None):
        """``keep``: only these searched keys (None: all)."""
        self.params = tuple(p for p in check_space(spec) if keep is None or p.key in keep)
        self.fixed = spec.to_dict()

    def __call__(self, trial: optuna.Trial) -> dict:
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for p in self.params:
            if not all(_current(k, chosen, constants, self.fixed) in allowed for k, allowed in p.when):
                continue
            if p.kind == "const":
                constants[p.key] = p.values[0]
            else:
                chosen[p.key] = _suggest(trial, p)
        return constants


class GridOnce(optuna.samplers.GridSampler):
    """Optuna's ``GridSampler`` (trial i of the study takes combination i of the grid, shuffled by the seed), without
    its stop at the end of the grid: outside ``study.optimize`` (Ray Tune asks and tells) that stop raises, and
    ``search.num_samples``, equal to the grid's size, already ends the search."""

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        pass


def grid_space(params: Iterable[SearchParam]) -> dict[str, list]:
    """The grid keys and their values as the study stores them."""
    return {p.key: [encode_value(v) for v in p.values] for p in params if p.kind == GRID}


def make_sampler(
    kind: str, seed: int, params: Iterable[SearchParam] | None = None, startup_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``search.sampler`` names; ``grid`` needs the space's ``params`` (its grid keys);
    ``startup_trials``: TPE's random start (None: Optuna's default)."""
    if kind == GRID:
        if params is None:
            raise ValueError("make_sampler: the grid sampler needs the search parameters (params=space.params)")
        return GridOnce(grid_space(params), seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if startup_trials is not None:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    return optuna.samplers.TPESampler(seed=seed)


def define_by_run(spec: Spec, raw: dict) -> DefineByRun:
    """The search space of ``spec`` as Optuna's define-by-run function."""
    return DefineByRun(spec, raw)


def _current(key: str, chosen: dict, constants: dict, fixed: dict) -> Any:
    if key in chosen:
        return chosen[key]
    if key in constants:
        return constants[key]
    section, name = key.split(".")
    return fixed[section][name]


def sample_configs(spec: Spec, raw: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` configurations drawn at random from the space (for --dry-run), each validated as a full spec; for a
    grid search, the first ``n`` combinations the search will run (at most the grid's size)."""
    space = DefineByRun(spec, raw)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(seed=seed)
    if spec.search.sampler == GRID:
        sampler, n = make_sampler(GRID, seed, space.params), min(n, grid_size(space.params))
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        config = {k: decode_value(v) for k, v in {**trial.params, **constants}.items()}
        try:
            checked_trial_spec(raw, config)
        except SpecError as e:  # the spec validator checks values one at a time; combinations can still clash
            config["invalid"] = str(e)
        study.tell(trial, 0.0)
        out.append(config)
    return out
