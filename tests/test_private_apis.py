"""The private Ray and Optuna APIs that sparsesearch wraps (``search/private_apis.py``) are still there and still
mean what the wrappers assume: a Ray or Optuna upgrade that changes one fails here, by name."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from sparsesearch.search import private_apis


def test_ray_still_reads_the_cluster_switch_that_keeps_a_local_ray_on_loopback():
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    with private_apis.loopback_only_ray():
        assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert before == ray_constants.ENABLE_RAY_CLUSTER


def test_optuna_search_still_keeps_its_live_trials_and_the_told_ones():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = OptunaSearch(
        space=lambda trial: {"x": trial.suggest_float("x", 0.0, 1.0)}, metric="loss", mode="min", seed=0
    )
    assert search.suggest("t1") is not None
    trial = private_apis.optuna_trial(search, "t1")
    assert isinstance(trial, optuna.Trial) and not private_apis.optuna_trial_told(search, "t1")
    search.on_trial_complete("t1", {"loss": 0.5})
    assert private_apis.optuna_trial_told(search, "t1")


def test_asha_still_maps_trials_to_brackets():
    sched = ASHAScheduler(time_attr="budget", metric="loss", mode="min", max_t=10, grace_period=1)
    trial = SimpleNamespace(trial_id="t1", config={})
    sched.on_trial_add(None, trial)
    assert "t1" in sched._trial_info
    private_apis.forget_asha_trial(sched, "t1")
    assert "t1" not in sched._trial_info
    private_apis.forget_asha_trial(sched, "never-added")  # forgetting twice is fine


def test_a_restored_tuner_still_has_a_run_config_to_take_new_callbacks(tmp_path):
    def trainable(config):
        tune.report({"loss": 1.0})

    tuner = tune.Tuner(trainable, run_config=tune.RunConfig(name="x", storage_path=str(tmp_path)))
    marker = tune.Callback()
    private_apis.set_restored_callbacks(tuner, [marker])
    assert tuner._local_tuner.get_run_config().callbacks == [marker]


@pytest.mark.parametrize("package", sorted(private_apis.CHECKED_AGAINST))
def test_the_checked_versions_are_the_pinned_ones(package):
    """The wrappers were checked against the versions the set-up pins; a new pin means checking them again."""
    from importlib.metadata import version

    from helpers import ROOT

    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert pins[package] == private_apis.CHECKED_AGAINST[package] == version(package)
