"""The Optuna study learns only what trials really showed: stopped trials are pruned with their intermediate
losses, failures fail, the best trial is a reached one, and every trial carries its identity."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from sparsesearch.search.space import define_by_run
from sparsesearch.search.study_feed import StudyFeed
from sparsesearch.spec import spec_from_dict

RAW = {"search": {"params": {"sparsity.method": "rigl", "sparsity.level": {"uniform": [0.5, 0.9]}}}}


def _feed(metric="objective", mode="min"):
    spec = spec_from_dict(RAW)
    return StudyFeed(
        space=define_by_run(spec, RAW),
        metric=metric,
        mode=mode,
        sampler=optuna.samplers.RandomSampler(seed=0),
        rungs=2,
    )


def _report(step, loss, budget, status="running", objective=1.0, **extra):
    return {
        "step": step,
        "eval_loss": loss,
        "budget": budget,
        "status": status,
        "objective": objective,
        "projected": int(status != "reached"),
        "net_time_s": objective,
        "net_flops": objective * 1e9,
        "avg_sparsity": 0.7,
        "trial_number": extra.pop("trial_number", 3),
        **extra,
    }


def _trial(feed, trial_id) -> optuna.trial.FrozenTrial:
    study = feed._ot_study
    return next(t for t in study.get_trials() if t.user_attrs.get("ray_trial_id") == trial_id)


def test_a_trial_stopped_early_is_pruned_with_its_losses_at_its_budgets():
    feed = _feed()
    feed.suggest("stopped")
    feed.on_trial_result("stopped", _report(10, 7.0, 4.2, objective=0.5))
    feed.on_trial_result("stopped", _report(20, 6.5, 8.9, objective=0.4))
    feed.on_trial_result("stopped", _report(21, 6.4, 8.95, objective=0.4))  # same budget point: kept once
    feed.on_trial_complete("stopped", _report(20, 6.5, 8.9, objective=0.4))
    t = _trial(feed, "stopped")
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.intermediate_values == {4: 7.0, 8: 6.5}
    assert t.user_attrs["status"] == "stopped_early" and t.user_attrs["projected"] is True
    assert t.user_attrs["label"] == "trial 3 (stopped)"


def test_the_best_trial_is_the_best_reached_one_never_a_projection():
    feed = _feed()
    feed.suggest("projected")
    feed.on_trial_result("projected", _report(10, 7.0, 5.0, objective=0.1))  # optimistic projection
    feed.on_trial_complete("projected", _report(10, 7.0, 5.0, status="not_reached", objective=0.1))
    feed.suggest("reached")
    feed.on_trial_result("reached", _report(10, 6.0, 5.0, objective=3.0))
    rungs = {"rung0_reached": 1, "rung0_loss": 6.1, "rung0_steps": 8.5, "rung0_net_time_s": 2.5, "rung0_net_flops": 2e9}
    rungs |= {"rung1_reached": 0, "rung1_loss": 5.0, "rung1_steps": math.inf}
    feed.on_trial_complete("reached", _report(10, 6.0, 5.0, status="reached", objective=3.0, **rungs))
    feed.suggest("diverged")
    feed.on_trial_complete("diverged", _report(3, math.inf, 1.0, status="diverged", objective=math.inf))
    study = feed._ot_study
    assert study.best_trial.user_attrs["ray_trial_id"] == "reached"
    assert study.best_trial.value == 3.0
    reached = _trial(feed, "reached")
    assert reached.user_attrs["rung0"] == {"loss": 6.1, "steps": 8.5, "net_time_s": 2.5, "net_flops": 2e9}
    assert "rung1" not in reached.user_attrs  # a rung it did not cross has no results
    assert _trial(feed, "projected").state == optuna.trial.TrialState.PRUNED
    assert _trial(feed, "diverged").state == optuna.trial.TrialState.FAIL


def test_an_errored_trial_fails():
    feed = _feed()
    feed.suggest("broken")
    feed.on_trial_complete("broken", None, error=True)
    t = _trial(feed, "broken")
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["status"] == "errored"


@pytest.mark.parametrize("status", ["running", "not_reached"])
def test_several_objectives_prune_unreached_trials_too(status):
    feed = _feed(metric=["objective", "avg_sparsity"], mode=["min", "max"])
    feed.suggest("a")
    feed.on_trial_complete("a", _report(10, 7.0, 5.0, status=status))
    feed.suggest("b")
    feed.on_trial_complete("b", _report(10, 6.0, 5.0, status="reached", objective=2.0))
    assert _trial(feed, "a").state == optuna.trial.TrialState.PRUNED
    assert [t.user_attrs["ray_trial_id"] for t in feed._ot_study.best_trials] == ["b"]


@pytest.mark.slow
def test_a_real_search_tells_the_study_the_truth_and_extends_on_the_same_study(tmp_path, tiny_raw):
    """A tiny search where ASHA stops trials, then `resume --num-samples 2`: stopped trials are pruned with
    intermediate values, the best trial reached the target, the attributes match the experiment's files, and
    the extension adds trials to the same study (the sampler sees every earlier trial)."""
    import yaml
    from helpers import run_cli, search_spec_file

    from sparsesearch.experiment import STUDY_FILE
    from sparsesearch.results.table import load_results

    path = search_spec_file(tmp_path, tiny_raw, num_samples=6, max_concurrent=1)
    raw = yaml.safe_load(path.read_text())
    raw["search"]["start_from"] = [{"sparsity.method": "rigl", "sparsity.level": 0.6}]
    path.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(path), "--name", "feed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "runs" / "feed"
    df = load_results(exp)
    sparse = df[df["role"] == "sparse"].set_index("trial_id")
    storage = f"sqlite:///{exp / STUDY_FILE}"
    study = optuna.load_study(study_name="feed", storage=storage)
    trials = {t.user_attrs["ray_trial_id"]: t for t in study.get_trials()}
    assert set(trials) == set(sparse.index)
    first = min(study.get_trials(), key=lambda t: t.number)
    # start_from goes first; the keys it leaves out are drawn by the sampler
    assert {k: first.params[k] for k in ("sparsity.method", "sparsity.level")} == {
        "sparsity.method": "rigl",
        "sparsity.level": 0.6,
    }
    assert "train.lr" in first.params
    states = optuna.trial.TrialState
    for tid, t in trials.items():
        row = sparse.loc[tid]
        assert t.user_attrs["status"] == row["status"]
        assert t.user_attrs["label"] == f"trial {row['trial']} ({tid})"
        assert t.state == (states.COMPLETE if row["status"] == "reached" else states.PRUNED)
        if row["status"] == "reached":
            assert t.value == pytest.approx(row["net_time_s"])
        else:
            assert t.intermediate_values  # ranked by how far it got and how good it was there
    assert (sparse["status"] == "stopped_early").any(), sparse["status"].tolist()
    if (sparse["status"] == "reached").any():
        best = sparse[sparse["status"] == "reached"]["net_time_s"].idxmin()
        assert study.best_trial.user_attrs["ray_trial_id"] == best

    proc = run_cli("resume", str(exp), "--num-samples", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(optuna.load_study(study_name="feed", storage=storage).get_trials()) == len(trials) + 2
    after = load_results(exp)
    assert len(after) == len(df) + 2
    assert set(df["trial_id"]) < set(after["trial_id"])
    old = after[after["trial_id"].isin(df["trial_id"])].set_index("trial_id")["status"]
    assert (old == df.set_index("trial_id")["status"]).all()  # earlier trials read as before
    assert (
        yaml.safe_load(json.dumps(json.loads((exp / "sparsesearch.json").read_text())["raw"]))["search"]["num_samples"]
        == 8
    )


def test_tpe_models_the_space_after_the_specs_startup_trials():
    from sparsesearch.search.space import make_sampler

    assert make_sampler("tpe", 0, None, 3)._n_startup_trials == 3
    assert make_sampler("tpe", 0)._n_startup_trials == 10  # Optuna's own default
    spec = spec_from_dict({**RAW, "search": {**RAW["search"], "startup_trials": 2}})
    assert spec.search.startup_trials == 2
