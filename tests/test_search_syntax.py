"""Search-space syntax: grid keys (every combination once, on Optuna's grid sampler), steps on uniform and int,
and the Weights & Biases spellings (values, value, min/max, distribution, q), each validated like the rest."""

from __future__ import annotations

import itertools
import math

import optuna
import pytest
import yaml
from helpers import ROOT

from sparsesearch.checks import check_spec
from sparsesearch.cli import main
from sparsesearch.search.space import DefineByRun, GridOnce, make_sampler, sample_configs
from sparsesearch.spec import SearchParam, SpecError, spec_from_dict

BASE = {"sparsity": {"method": "rigl", "level": 0.7}}
GRID = {
    "sparsity.method": {"grid": ["rigl", "set", "snfs"]},
    "sparsity.level": {"grid": [0.5, 0.8]},
    "sparsity.dense_groups": {"grid": [[], ["embed_proj"]]},
}


def _raw(params, **search):
    return {**BASE, "search": {"params": params, **search}}


def _params(raw) -> dict[str, SearchParam]:
    return {p.key: p for p in check_spec(spec_from_dict(raw))}


def _study_configs(raw, n: int, sampler: optuna.samplers.BaseSampler, ask_ahead: int = 1) -> list[dict]:
    """``n`` configurations as the search draws them: DefineByRun on an ask-and-tell study, ``ask_ahead`` trials
    asked before the oldest is told (as with trials running concurrently)."""
    space = DefineByRun(spec_from_dict(raw), raw)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    out, open_trials = [], []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        out.append({**trial.params, **constants})
        open_trials.append(trial)
        if len(open_trials) >= ask_ahead:
            study.tell(open_trials.pop(0), 1.0)
    for trial in open_trials:
        study.tell(trial, 1.0)
    return out


FORMS = [
    ({"grid": [1, 2, 3]}, "sparsity.update_every", "grid", (1, 2, 3), None),
    ({"int": [8, 64], "step": 8}, "sparsity.update_every", "int", (8, 64), 8),
    ({"uniform": [0.5, 0.9], "step": 0.1}, "sparsity.level", "uniform", (0.5, 0.9), 0.1),
    ({"values": ["rigl", "set"]}, "sparsity.method", "choice", ("rigl", "set"), None),
    ({"value": 0.8}, "sparsity.level", "const", (0.8,), None),
    ({"distribution": "constant", "value": 0.8}, "sparsity.level", "const", (0.8,), None),
    ({"distribution": "categorical", "values": [0.6, 0.8]}, "sparsity.level", "choice", (0.6, 0.8), None),
    ({"min": 5, "max": 50}, "sparsity.update_every", "int", (5, 50), None),
    ({"min": 0.5, "max": 0.9}, "sparsity.level", "uniform", (0.5, 0.9), None),
    ({"min": 0.5, "max": 0.9, "q": 0.05}, "sparsity.level", "uniform", (0.5, 0.9), 0.05),
    ({"min": 0, "max": 1, "q": 0.25}, "sparsity.drop_fraction", "uniform", (0, 1), 0.25),
    ({"min": 8, "max": 64, "q": 8}, "sparsity.update_every", "int", (8, 64), 8),
    ({"min": 0.5, "max": 0.9, "distribution": "uniform"}, "sparsity.level", "uniform", (0.5, 0.9), None),
    ({"min": 5, "max": 50, "distribution": "uniform"}, "sparsity.update_every", "uniform", (5, 50), None),
    ({"min": 5, "max": 50, "distribution": "int_uniform"}, "sparsity.update_every", "int", (5, 50), None),
    ({"min": 4, "max": 64, "distribution": "q_uniform"}, "sparsity.update_every", "int", (4, 64), 1),
    ({"min": 4, "max": 64, "distribution": "q_uniform", "q": 4}, "sparsity.update_every", "int", (4, 64), 4),
    ({"min": 0.5, "max": 0.9, "distribution": "q_uniform", "q": 0.1}, "sparsity.level", "uniform", (0.5, 0.9), 0.1),
    ({"min": 1e-3, "max": 1e-2, "distribution": "log_uniform_values"}, "train.lr", "loguniform", (1e-3, 1e-2), None),
    ({"min": 4, "max": 64, "distribution": "q_log_uniform_values"}, "sparsity.update_every", "int_log", (4, 64), None),
    (
        {"min": 4, "max": 64, "distribution": "q_log_uniform_values", "q": 1},
        "sparsity.update_every",
        "int_log",
        (4, 64),
        None,
    ),
]


@pytest.mark.parametrize("entry,key,kind,values,step", FORMS, ids=[str(i) for i in range(len(FORMS))])
def test_each_form_parses_to_its_distribution(entry, key, kind, values, step):
    grid = kind == "grid"
    p = _params(_raw({key: entry}, **({"sampler": "grid", "num_samples": len(values)} if grid else {})))[key]
    assert (p.kind, p.values, p.step) == (kind, values, step)


def test_wandb_log_uniform_takes_natural_log_bounds():
    p = _params(_raw({"train.lr": {"min": -7, "max": -4, "distribution": "log_uniform"}}))["train.lr"]
    assert p.kind == "loguniform" and p.values == pytest.approx((math.exp(-7), math.exp(-4)))


def test_optuna_sees_the_steps_and_the_categoricals():
    raw = _raw(
        {
            "sparsity.method": {"values": ["rigl", "set"]},
            "sparsity.level": {"uniform": [0.5, 0.9], "step": 0.1},
            "sparsity.update_every": {"min": 8, "max": 64, "q": 8},
            "train.lr": {"min": 1e-3, "max": 1e-2, "distribution": "log_uniform_values"},
            "train.seed": {"value": 3},
        }
    )
    space = DefineByRun(spec_from_dict(raw), raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert space(trial) == {"train.seed": 3}
    assert trial.distributions == {
        "sparsity.method": optuna.distributions.CategoricalDistribution(["rigl", "set"]),
        "sparsity.level": optuna.distributions.FloatDistribution(0.5, 0.9, step=0.1),
        "sparsity.update_every": optuna.distributions.IntDistribution(8, 64, step=8),
        "train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True),
    }


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_steps_are_respected(sampler):
    raw = _raw(
        {
            "sparsity.level": {"uniform": [0.5, 0.9], "step": 0.1},
            "sparsity.update_every": {"int": [8, 64], "step": 8},
            "sparsity.drop_fraction": {"min": 0.1, "max": 0.5, "q": 0.05},
        }
    )
    configs = _study_configs(raw, 40, make_sampler(sampler, 0))
    for c in configs:
        assert c["sparsity.update_every"] in range(8, 65, 8)
        assert 0.5 <= c["sparsity.level"] <= 0.9 and round((c["sparsity.level"] - 0.5) / 0.1, 9).is_integer()
        assert 0.1 <= c["sparsity.drop_fraction"] <= 0.5
        assert round((c["sparsity.drop_fraction"] - 0.1) / 0.05, 9).is_integer()
    assert len({c["sparsity.update_every"] for c in configs}) > 3


@pytest.mark.parametrize("ask_ahead", [1, 3])
def test_grid_runs_every_combination_exactly_once(ask_ahead):
    raw = _raw({**GRID, "train.seed": 5}, sampler="grid", num_samples=12)
    params = tuple(_params(raw).values())
    configs = _study_configs(raw, 12, make_sampler("grid", 0, params), ask_ahead=ask_ahead)
    seen = [(c["sparsity.method"], c["sparsity.level"], c["sparsity.dense_groups"]) for c in configs]
    expected = itertools.product(["rigl", "set", "snfs"], [0.5, 0.8], ["[]", '["embed_proj"]'])
    assert sorted(seen) == sorted(expected)  # each once (list values travel as JSON text)
    assert all(c["train.seed"] == 5 for c in configs)
    # The order is the seed's: the same seed gives the same order, another seed another one.
    assert _study_configs(raw, 12, make_sampler("grid", 0, params)) == configs
    assert _study_configs(raw, 12, make_sampler("grid", 1, params)) != configs


def test_grid_through_ray_tunes_optuna_search():
    """Ray Tune asks and tells outside study.optimize: the end of the grid must not raise (Optuna's GridSampler
    stops the study there, which only works inside optimize)."""
    from ray.tune.search.optuna import OptunaSearch

    raw = _raw(GRID, sampler="grid", num_samples=12)
    space = DefineByRun(spec_from_dict(raw), raw)
    searcher = OptunaSearch(space=space, sampler=make_sampler("grid", 0, space.params), metric="loss", mode="min")
    configs = []
    for i in range(12):
        configs.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"loss": float(i)})
    assert len({tuple(sorted(c.items())) for c in configs}) == 12


def test_grid_sampler_needs_the_params():
    with pytest.raises(ValueError, match="needs the search parameters"):
        make_sampler("grid", 0)
    assert isinstance(make_sampler("grid", 0, ()), GridOnce)


def test_dry_run_shows_the_grid(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    raw = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    raw["search"].update(
        sampler="grid", num_samples=6, params={k: GRID[k] for k in ("sparsity.method", "sparsity.level")}
    )
    spec_file = tmp_path / "grid.yaml"
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["run", str(spec_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(grid," in out and "6 sparse trials" in out and "grid       ['rigl', 'set', 'snfs']" in out
    samples = [line for line in out.splitlines() if "sparsity.method=" in line]
    assert len(samples) == 5 and len(set(samples)) == 5  # the first 5 combinations the search runs


def test_dry_run_samples_a_small_grid_once():
    raw = _raw({"sparsity.level": {"grid": [0.6, 0.8]}}, sampler="grid", num_samples=2)
    configs = sample_configs(spec_from_dict(raw), raw, 5)
    assert sorted(c["sparsity.level"] for c in configs) == [0.6, 0.8]


def test_start_from_respects_steps():
    params = {
        "sparsity.level": {"uniform": [0.5, 0.9], "step": 0.1},
        "sparsity.update_every": {"min": 8, "max": 64, "q": 8},
    }
    raw = _raw(params, start_from=[{"sparsity.level": 0.7, "sparsity.update_every": 16}])
    check_spec(spec_from_dict(raw))
    for point, message in [
        ({"sparsity.level": 0.75}, "search.start_from[0].sparsity.level: 0.75 is not a value of its distribution"),
        ({"sparsity.update_every": 12}, "search.start_from[0].sparsity.update_every: 12 is not a value"),
    ]:
        raw = _raw(params, start_from=[point])
        with pytest.raises(SpecError, match="step") as e:
            check_spec(spec_from_dict(raw))
        assert message in str(e.value)


def _grid(params=None, **search):
    return _raw(
        params or {"sparsity.method": {"grid": ["rigl", "set"]}}, **{"sampler": "grid", "num_samples": 2, **search}
    )


BAD = [
    (
        _raw({"train.lr": {"min": 1e-3, "max": 1e-2, "distribution": "normal"}}),
        "search.params.train.lr.distribution: 'normal' is not supported",
    ),
    (
        _raw({"train.lr": {"min": 1e-3, "max": 1e-2, "distribution": "inv_log_uniform_values"}}),
        "train.lr.distribution: 'inv_log_uniform_values' is not supported",
    ),
    (
        _raw({"sparsity.update_every": {"min": 4, "max": 64, "distribution": "q_log_uniform_values", "q": 2}}),
        "search.params.sparsity.update_every.distribution: q_log_uniform_values is supported with integer min",
    ),
    (
        _raw({"sparsity.level": {"uniform": [0.5, 0.9], "step": 0.3}}),
        "search.params.sparsity.level.step: high - low (0.4) must be a multiple of the step 0.3",
    ),
    (
        _raw({"sparsity.update_every": {"int": [8, 60], "step": 8}}),
        "search.params.sparsity.update_every.step: high - low (52) must be a multiple",
    ),
    (
        _raw({"sparsity.level": {"min": 0.5, "max": 0.9, "q": 0.15}}),
        "search.params.sparsity.level.q: high - low (0.4) must be a multiple",
    ),
    (
        _raw({"sparsity.level": {"min": 0.5, "max": 0.9, "distribution": "q_uniform"}}),
        "search.params.sparsity.level.q: high - low (0.4)",
    ),
    (
        _raw({"train.lr": {"loguniform": [1e-3, 1e-2], "step": 1e-3}}),
        "search.params.train.lr.step: not with a log scale",
    ),
    (
        _raw({"sparsity.update_every": {"int_log": [4, 64], "step": 2}}),
        "search.params.sparsity.update_every.step: not with a log scale",
    ),
    (
        _raw({"sparsity.update_every": {"int": [8, 64], "step": 0}}),
        "search.params.sparsity.update_every.step: must be a number > 0",
    ),
    (
        _raw({"sparsity.update_every": {"int": [8, 64], "step": 0.5}}),
        "search.params.sparsity.update_every.step: must be an integer",
    ),
    (
        _raw({"sparsity.level": {"uniform": [0.5, 0.9], "step": "big"}}),
        "search.params.sparsity.level.step: must be a number > 0",
    ),
    (
        _raw({"sparsity.method": {"choice": ["rigl", "set"], "step": 1}}),
        "search.params.sparsity.method.step: applies to uniform and int only",
    ),
    (
        _raw({"sparsity.level": {"uniform": [0.5, 0.9], "step": 0.1, "q": 0.1}}),
        "search.params.sparsity.level: step and q are the same",
    ),
    (
        _raw({"sparsity.method": {"values": ["rigl"], "choice": ["set"]}}),
        "search.params.sparsity.method: needs exactly one distribution (choice",
    ),
    (
        _raw({"sparsity.level": {"value": 0.8, "values": [0.8]}}),
        "search.params.sparsity.level: needs exactly one distribution",
    ),
    (_raw({"sparsity.level": {"uniform": [0.5, 0.9], "min": 0.5, "max": 0.9}}), "got both uniform and min"),
    (_raw({"sparsity.level": {"min": 0.5}}), "search.params.sparsity.level.max: required"),
    (
        _raw({"sparsity.level": {"distribution": "categorical", "min": 0.5, "max": 0.9}}),
        "search.params.sparsity.level.min: not used by distribution categorical",
    ),
    (_raw({"sparsity.level": {"distribution": "uniform"}}), "search.params.sparsity.level.min: required"),
    (_raw({"sparsity.level": {"values": []}}), "search.params.sparsity.level.values: must be a non-empty list"),
    (_raw({"sparsity.level": {"min": 0.9, "max": 0.5}}), "search.params.sparsity.level.min/max: low must be < high"),
    (_raw({"sparsity.level": {"min": 0.5, "max": 1.5}}), "search.params.sparsity.level: value 1.5 is invalid"),
    (_raw({"sparsity.level": {"value": 1.5}}), "search.params.sparsity.level: value 1.5 is invalid"),
    (
        _raw({"sparsity.method": {"values": ["rigl", "magic"]}}),
        "value 'magic' is invalid: sparsity.method: unknown method",
    ),
    (
        _raw({"sparsity.update_every": {"min": 4, "max": 64, "probabilities": [1]}}),
        "search.params.sparsity.update_every.probabilities: unknown key",
    ),
    (
        _raw({"sparsity.level": {"value": 0.8, "when": {"sparsity.method": ["rigl"]}}}),
        "search.params.sparsity.level.when: a constant cannot be conditional",
    ),
    (
        _grid({"sparsity.method": {"grid": ["rigl", "rigl"]}}),
        "search.params.sparsity.method.grid: values must be distinct",
    ),
    (_grid({"sparsity.level": {"grid": [0.5, 1.5]}}), "search.params.sparsity.level: value 1.5 is invalid"),
    (
        _grid({"sparsity.level": {"grid": [0.5, 0.8], "when": {"sparsity.method": ["rigl"]}}}),
        "search.params.sparsity.level.when: a grid key",
    ),
    (
        _grid({"sparsity.method": {"grid": ["rigl", "set"]}, "sparsity.level": {"uniform": [0.5, 0.9]}}),
        "search.params.sparsity.level: a uniform key cannot be mixed with grid keys (sparsity.method)",
    ),
    (
        _grid({"sparsity.level": {"choice": [0.5, 0.9]}}),
        "search.params.sparsity.level: sampler grid tries every combination",
    ),
    (  # the method registry checks grid values as it checks choices (checks.check_space)
        _grid({"sparsity.method": {"grid": ["rigl", "magic"]}}),
        "search.params.sparsity.method: value 'magic' is invalid: sparsity.method: unknown method",
    ),
    (_grid(sampler="tpe"), "search.sampler: grid keys (sparsity.method) need sampler: grid, got tpe"),
    (
        _grid(num_samples=16),
        "search.num_samples: a grid search runs each of its 2 combinations (2 sparsity.method) once; "
        "set num_samples: 2, got 16",
    ),
    (_grid(start_from=[{"sparsity.method": "set"}]), "search.start_from: a grid search tries every combination anyway"),
]


@pytest.mark.parametrize("raw,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_forms_give_one_line_naming_the_field(raw, message):
    with pytest.raises(SpecError) as e:
        check_spec(spec_from_dict(raw))
    assert message in str(e.value) and "\n" not in str(e.value)
