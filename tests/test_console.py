"""What a search shows and keeps: one line per finished trial with the search's status, per-evaluation lines only
with --verbose, Ray's start-up noise kept off, everything also in the experiment's log file; loggers named in
tune.callbacks receive every trial."""

from __future__ import annotations

import re

import pytest
from helpers import run_cli, search_spec_file

from sparsesearch.results.table import load_results
from sparsesearch.search.progress import LOG_FILE


@pytest.fixture(scope="module")
def logged_search(finished_search):
    """A finished search run by the CLI with tune.callbacks: [mlflow]: (its process, its experiment)."""
    return finished_search


@pytest.mark.slow
def test_one_line_per_finished_trial_with_the_searchs_status(logged_search):
    proc, exp = logged_search
    finished = [line for line in proc.stdout.splitlines() if re.match(r"\s+trial \d+ \(\w+\).* done, ", line)]
    df = load_results(exp)
    assert len(finished) == len(df)  # one line per trial, none per evaluation
    last = finished[-1]
    assert f"{len(df)}/{len(df)} done" in last and "stopped" in last and "ETA" in last
    assert "best sparse" in proc.stdout or "dense " in last


@pytest.mark.slow
def test_ray_noise_stays_off_the_console(logged_search):
    proc, _ = logged_search
    for noise in ("Started a local Ray instance", "Trial status", "View detailed results", "Traceback"):
        assert noise not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_everything_the_console_shows_is_in_the_log_file(logged_search):
    proc, exp = logged_search
    logged = [line.split("  ", 1)[1] for line in (exp / LOG_FILE).read_text().splitlines()]
    shown = [line for line in proc.stdout.splitlines() if line.strip()]
    assert shown == [line for line in logged if line.strip()]


@pytest.mark.slow
def test_verbose_adds_every_evaluation(tmp_path, tiny_raw):
    path = search_spec_file(tmp_path, tiny_raw, num_samples=1)
    proc = run_cli("run", str(path), "--name", "verbose", "--verbose")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(re.findall(r"step\s+\d+\s+eval", proc.stdout)) > len(load_results(tmp_path / "runs" / "verbose"))


@pytest.mark.slow
def test_mlflow_receives_every_trial_in_a_local_store(logged_search):
    import mlflow

    _, exp = logged_search
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(exp.name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(load_results(exp))
    assert all("eval_loss" in r.data.metrics for r in runs)


def test_a_logger_that_is_not_installed_is_refused_up_front(tmp_path, tiny_raw, monkeypatch):
    import importlib.util

    from sparsesearch import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = search_spec_file(tmp_path, tiny_raw)
    assert cli.main(["run", str(path), "--dry-run", "--set", "tune.callbacks=[wandb]"]) == 2
