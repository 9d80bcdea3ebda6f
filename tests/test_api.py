"""The Python API (sparsesearch.api): validated exactly as the commands, a search with extra Ray Tune callbacks and
its results handle, `sparsesearch.train` beside the train layer's package, and the README's example, run
verbatim."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import ray
import yaml
from helpers import ROOT, search_spec_file
from ray import tune

import sparsesearch
from sparsesearch.cli import main
from sparsesearch.spec import SpecError


class Recorder(tune.Callback):
    """Counts what Ray Tune reports to a caller's callback."""

    def __init__(self):
        self.results: dict[str, int] = {}
        self.completed: set[str] = set()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results[trial.trial_id] = self.results.get(trial.trial_id, 0) + 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed.add(trial.trial_id)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, tiny_raw):
    """A tiny search run through the API from a dict, with a callback of ours; Ray is shut down after it."""
    tmp = tmp_path_factory.mktemp("api")
    raw = yaml.safe_load(search_spec_file(tmp, tiny_raw, num_samples=2).read_text())
    recorder, lines = Recorder(), []
    try:
        results = sparsesearch.run(raw, callbacks=[recorder], name="api", num_samples=2, log=lines.append)
    finally:
        ray.shutdown()
    return results, recorder, lines, tmp


@pytest.mark.slow
def test_run_passes_callbacks_and_returns_the_results(searched):
    results, recorder, lines, tmp = searched
    assert results.path == tmp / "runs" / "api"
    df = results.table()
    assert len(df) == 3  # 2 sparse trials + the same-size dense
    assert set(recorder.results) == set(df["trial_id"]) == recorder.completed
    assert all(recorder.results[t] == n for t, n in zip(df["trial_id"], df["reports"]))
    assert set(results.history()["trial_id"]) == set(df["trial_id"])
    assert any(line.startswith("search ") for line in lines)  # progress went to our log
    summary = results.summary()
    assert summary[0].startswith("3 trials:") and summary[-2].startswith(f"results: {results.path}")
    assert repr(sparsesearch.Results(results.path)) == f"Results({str(results.path)!r})"


@pytest.mark.slow
def test_best_trial_trains_again_through_the_api(searched, tmp_path):
    results, *_ = searched
    best = results.best()
    assert best.rank == 0 and best.by == "net_time" and best.label.startswith("trial ")
    assert set(best.spec) == {"model", "data", "train", "target", "sparsity"}
    outcome = sparsesearch.train(best.spec, ["train.max_steps=40"], save=tmp_path / "m")
    assert outcome.steps <= 40 and outcome.status in ("reached", "not_reached")
    model = sparsesearch.load_trained(tmp_path / "m")
    assert model.sparsity() == outcome.avg_sparsity
    assert model.spec.train.max_steps == 40 and model.metrics["steps"] == outcome.steps


def _spec_file(tmp_path, tiny_raw):
    path = search_spec_file(tmp_path, tiny_raw)
    return path, yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    "kwargs,args,message",
    [
        ({"num_samples": 0}, ["--num-samples", "0"], "--num-samples: must be >= 1, got 0"),
        ({"overrides": ["search.asha.grace=3"]}, ["--set", "search.asha.grace=3"], "search.asha.grace: unknown key"),
        ({"overrides": ["search.params={}"]}, ["--set", "search.params={}"], "nothing to search"),
        ({"storage": "s3://bucket/runs"}, ["--storage", "s3://bucket/runs"], "URIs are not supported"),
        ({"name": "a/b"}, ["--name", "a/b"], "tune.name"),
    ],
)
def test_run_validates_exactly_as_the_command(tmp_path, tiny_raw, capsys, kwargs, args, message):
    path, raw = _spec_file(tmp_path, tiny_raw)
    assert main(["run", str(path), *args]) == 2
    expected = capsys.readouterr().err.strip().removeprefix("sparsesearch run: error: ")
    assert message in expected
    for spec in (path, str(path), raw):
        with pytest.raises(SpecError) as e:
            sparsesearch.run(spec, **kwargs)
        assert str(e.value) == expected
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()  # refused before any work


def test_train_validates_as_the_command(tmp_path, tiny_raw, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    assert main(["train", str(path), "--set", "train.lr=-3"]) == 2
    expected = capsys.readouterr().err.strip().removeprefix("sparsesearch train: error: ")
    for spec in (path, tiny_raw):
        with pytest.raises(SpecError) as e:
            sparsesearch.train(spec, ["train.lr=-3"])
        assert str(e.value) == expected
    with pytest.raises(SpecError, match="spec: must be a mapping"):
        sparsesearch.run([1, 2])  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="is a file, not a directory"):
        sparsesearch.train(tiny_raw, save=path)


def test_train_is_the_api_function_and_training_the_layer():
    """``sparsesearch.train`` is a plain function (the API's), whatever was imported before; the training layer is
    the package ``sparsesearch.training``, a different name."""
    import sparsesearch.training.trainer as trainer_mod
    from sparsesearch.api import train

    assert sparsesearch.train is train and "sparsesearch.train" not in sys.modules
    assert sparsesearch.training.trainer is trainer_mod


def _readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("### Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: the Python API section has no python block"
    return match.group(1)


@pytest.mark.slow
def test_readme_example_runs_verbatim(tmp_path):
    """The README's block, as written, from a folder holding the smoke spec (so that its runs/ lands there)."""
    (tmp_path / "search_spaces").mkdir()
    shutil.copy(ROOT / "search_spaces" / "smoke.yaml", tmp_path / "search_spaces")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _readme_example()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "best sparse configurations by net_time" in proc.stdout
    assert "runs/smoke-best: " in lines[-2] and " sparsity " in lines[-2]
    sparsity, avg_sparsity, loss, final_loss = map(float, lines[-1].split())
    assert sparsity == avg_sparsity > 0.4
    assert loss == pytest.approx(final_loss, abs=1e-7)
    assert (tmp_path / "runs" / "smoke-api" / "sparsesearch.json").is_file()
