"""Spec -> Optuna define-by-run search space (conditional keys exist only when their condition holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import optuna

from .spec import SearchParam, Spec, SpecError, search_params, spec_from_dict


def _encode(value: Any) -> Any:
    # Optuna's storage holds scalars only: list-valued choices (e.g. dense_groups) travel as JSON text.
    return json.dumps(list(value)) if isinstance(value, tuple) else value


def decode(value: Any) -> Any:
    """A sampled value as the spec wants it (inverse of the JSON encoding of list-valued choices)."""
    if isinstance(value, str) and value.startswith("["):
        return tuple(json.loads(value))
    return value


def _suggest(trial: optuna.Trial, p: SearchParam) -> Any:
    if p.kind == "choice":
        return decode(trial.suggest_categorical(p.key, [_encode(v) for v in p.values]))
    lo, hi = p.values
    if p.kind == "uniform":
        return trial.suggest_float(p.key, lo, hi)
    if p.kind == "loguniform":
        return trial.suggest_float(p.key, lo, hi, log=True)
    return trial.suggest_int(p.key, lo, hi, log=p.kind == "int_log")  # bounds inclusive


class DefineByRun:
    """The define-by-run function OptunaSearch calls: suggests the searched keys (no computation inside) and
    returns the constants. A condition on a key that is not searched is decided by the spec's own value.
    A class, not a closure, so that the searcher can be pickled into the experiment for resuming."""

    def __init__(self, spec: Spec, raw: dict):
        self.params = search_params(spec, raw)
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


def define_by_run(spec: Spec, raw: dict) -> Callable[[optuna.Trial], dict]:
    return DefineByRun(spec, raw)


def _current(key: str, chosen: dict, constants: dict, fixed: dict) -> Any:
    if key in chosen:
        return chosen[key]
    if key in constants:
        return constants[key]
    section, name = key.split(".")
    return fixed[section][name]


def trial_overrides(config: dict) -> list[str]:
    """``--set``-style overrides for one sampled configuration (Ray passes params and constants together)."""
    import yaml
    out = []
    for k, v in sorted(config.items()):
        v = decode(v)
        v = list(v) if isinstance(v, tuple) else v
        out.append(f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")
    return out


def sample_configs(spec: Spec, raw: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` configurations drawn at random from the space (for --dry-run), each validated as a full spec."""
    space = define_by_run(spec, raw)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        config = {k: decode(v) for k, v in {**trial.params, **constants}.items()}
        try:
            spec_from_dict(raw, trial_overrides(config))
        except SpecError as e:  # the spec validator checks values one at a time; combinations can still clash
            config["invalid"] = str(e)
        study.tell(trial, 0.0)
        out.append(config)
    return out


def param_importances(study_file: str | Path) -> tuple[dict[str, float], str]:
    """fANOVA importances of the sampled parameters for the objective, from a search's Optuna study.

    Uses completed trials with finite values (a diverged trial's infinity would swamp the variance) and the
    parameters every one of them has and that vary (conditional knobs of a method seen only in some trials
    are left out). Returns (importances, note); empty importances with the reason when there is too little.
    """
    import math

    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(study_file)
    if not path.is_file():
        return {}, f"no Optuna study at {path}"
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    names = optuna.get_all_study_names(storage)
    if not names:
        return {}, "the Optuna study is empty"
    study = optuna.load_study(study_name=names[0], storage=storage)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values and all(math.isfinite(v) for v in t.values)]
    if len(done) < 3:
        return {}, f"{len(done)} completed trials with a finite objective; importances need at least 3"
    common = set.intersection(*(set(t.params) for t in done))
    varying = sorted(p for p in common if len({json.dumps(t.params[p], sort_keys=True) for t in done}) > 1)
    if not varying:
        return {}, "no parameter varied across the completed trials"
    scratch = optuna.create_study(directions=study.directions)
    scratch.add_trials(done)
    imp = get_param_importances(scratch, evaluator=FanovaImportanceEvaluator(seed=0), params=varying,
                                target=lambda t: t.values[0])
    left_out = sorted(set().union(*(set(t.params) for t in done)) - set(varying))
    note = (f"fANOVA over {len(done)} completed trials (objective: the first study value; the dense reference "
            "is not part of the study)")
    if left_out:
        note += "; left out (constant, or only in some trials): " + ", ".join(left_out)
    return dict(imp), note
