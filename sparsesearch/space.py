"""Spec -> Optuna define-by-run search space (conditional keys exist only when their condition holds)."""

from __future__ import annotations

from typing import Any, Callable

import optuna

from .spec import SearchParam, Spec, SpecError, search_params, spec_from_dict


def _suggest(trial: optuna.Trial, p: SearchParam) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.key, list(p.values))
    lo, hi = p.values
    if p.kind == "uniform":
        return trial.suggest_float(p.key, lo, hi)
    if p.kind == "loguniform":
        return trial.suggest_float(p.key, lo, hi, log=True)
    return trial.suggest_int(p.key, lo, hi, log=p.kind == "int_log")  # bounds inclusive


def define_by_run(spec: Spec, raw: dict) -> Callable[[optuna.Trial], dict]:
    """A define-by-run function for OptunaSearch: suggests the searched keys (no computation inside) and
    returns the constants. A condition on a key that is not searched is decided by the spec's own value."""
    params = search_params(spec, raw)
    fixed = spec.to_dict()

    def space(trial: optuna.Trial) -> dict:
        chosen: dict[str, Any] = {}
        constants: dict[str, Any] = {}
        for p in params:
            if not all(_current(k, chosen, constants, fixed) in allowed for k, allowed in p.when):
                continue
            if p.kind == "const":
                constants[p.key] = p.values[0]
            else:
                chosen[p.key] = _suggest(trial, p)
        return constants

    return space


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
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in sorted(config.items())]


def sample_configs(spec: Spec, raw: dict, n: int, seed: int = 0) -> list[dict]:
    """``n`` configurations drawn at random from the space (for --dry-run), each validated as a full spec."""
    space = define_by_run(spec, raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        config = {**trial.params, **constants}
        try:
            spec_from_dict(raw, trial_overrides(config))
        except SpecError as e:  # the spec validator checks values one at a time; combinations can still clash
            config["invalid"] = str(e)
        study.tell(trial, 0.0)
        out.append(config)
    return out
