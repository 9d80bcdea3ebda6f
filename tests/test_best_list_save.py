"""From a search to use: `sparsesearch best` (the spec of the N-th best trial), `train --save` (a model that reloads
with its masks, sparsity and loss) and `sparsesearch list` (every experiment of a storage with its status)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import run_cli
from safetensors import safe_open

from sparsesearch.cli import main
from sparsesearch.definitions import REACHED
from sparsesearch.experiment import SPARSE, trial_spec
from sparsesearch.results.table import load_results
from sparsesearch.spec import spec_from_dict

SECTIONS = ("model", "data", "train", "target", "sparsity")


@pytest.fixture(scope="module")
def experiment(finished_search) -> Path:
    """A finished tiny search: 3 sparse trials and the same-size dense, none stopped early."""
    return finished_search[1]


def _ranked(exp: Path, by: str = "net_time_s"):
    df = load_results(exp)
    reached = df[(df["role"] == SPARSE) & (df["status"] == REACHED)].sort_values([by, "trial"], kind="stable")
    return df, reached


def _one_line_error(capsys, message: str) -> None:
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.out == ""


@pytest.mark.slow
def test_best_prints_the_full_spec_of_the_best_trial(experiment, capsys):
    df, reached = _ranked(experiment)
    assert len(reached) >= 2, reached[["trial_id", "status"]]
    assert main(["best", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# trial ") and "sparsesearch train" in out
    written = yaml.safe_load(out)
    assert set(written) == set(SECTIONS)  # full: every section a trial trains with, every key; no search or tune
    assert set(written["train"]) == set(spec_from_dict({}).to_dict()["train"])
    state = json.loads((experiment / "sparsesearch.json").read_text())
    expected = trial_spec(state["raw"], df.attrs["configs"][reached.iloc[0]["trial_id"]])
    got = spec_from_dict(written)
    assert all(getattr(got, s) == getattr(expected, s) for s in SECTIONS)
    assert reached.iloc[0]["trial_id"] in out.splitlines()[0]


@pytest.mark.slow
def test_best_rank_by_and_out(experiment, tmp_path, capsys):
    df, reached = _ranked(experiment, "net_flops")
    out = tmp_path / "second.yaml"
    assert main(["best", str(experiment), "--rank", "1", "--by", "net_flops", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    second = reached.iloc[1]
    assert printed.count("\n") == 1 and f"wrote {out}" in printed and second["trial_id"] in printed
    got = spec_from_dict(yaml.safe_load(out.read_text()))
    state = json.loads((experiment / "sparsesearch.json").read_text())
    assert got.sparsity == trial_spec(state["raw"], df.attrs["configs"][second["trial_id"]]).sparsity


@pytest.mark.slow
def test_best_errors_are_one_line_exit_2(experiment, tmp_path, capsys):
    _, reached = _ranked(experiment)
    n = len(reached)
    assert main(["best", str(experiment), "--rank", str(n)]) == 2
    _one_line_error(capsys, f"--rank {n}: out of range, {n} sparse trial(s) reached the target")
    assert main(["best", str(experiment), "--rank", "-1"]) == 2
    _one_line_error(capsys, "--rank: must be >= 0, got -1")
    fresh = tmp_path / "fresh"  # an experiment stopped before its first trial: nothing reached
    fresh.mkdir()
    shutil.copy(experiment / "sparsesearch.json", fresh)
    assert main(["best", str(fresh)]) == 2
    _one_line_error(capsys, "no sparse trial reached the target (0 trials so far)")
    assert main(["best", str(tmp_path / "none")]) == 2
    _one_line_error(capsys, "none: no such directory")
    assert main(["best", str(experiment), "--out", str(tmp_path / "no" / "dir" / "b.yaml")]) == 2
    _one_line_error(capsys, "cannot write")


@pytest.mark.slow
def test_trained_model_saves_and_reloads_with_its_sparsity_and_loss(experiment, tmp_path, capsys):
    import sparsesearch

    spec_file, saved = tmp_path / "best.yaml", tmp_path / "model"
    assert main(["best", str(experiment), "--out", str(spec_file)]) == 0
    proc = run_cli("train", str(spec_file), "--save", str(saved), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert f"saved   {saved}" in proc.stderr
    meta = json.loads((saved / "trained.json").read_text())
    assert meta["result"]["final_eval_loss"] == result["final_eval_loss"]
    with safe_open(str(saved / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "token_embedding.weight" not in keys  # frozen: reloaded from the spec's embedding
    assert {k for k in keys if k.startswith("mask/")} == {f"mask/{n}" for n, d in meta["densities"].items() if d < 1}

    model = sparsesearch.load_trained(saved)
    assert not model.model.training
    assert model.sparsity() == result["avg_sparsity"] == meta["sparsity"] > 0.4
    assert model.densities() == meta["densities"]
    weights = model.model.sparsifiable_weights()
    for name, mask in model.masks.items():
        assert not weights[name][~mask].any()  # masked weights are exactly zero
    assert model.evaluate() == pytest.approx(result["final_eval_loss"], abs=1e-7)
    assert f"sparsity {result['avg_sparsity']:.4f}" in model.describe()


def test_save_is_checked_before_training(tmp_path, tiny_raw, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_raw))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["train", str(spec), "--save", str(a_file)]) == 2
    _one_line_error(capsys, f"--save {a_file}: is a file, not a directory")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert main(["train", str(spec), "--save", str(full)]) == 2
    _one_line_error(capsys, "exists and is not empty (and holds no saved model)")
    assert main(["train", str(spec), "--save", str(full), "--set", "train.lr=-1"]) == 2
    _one_line_error(capsys, "train.lr: must be > 0")  # the spec first, as without --save


def _touch(root: Path, when: float) -> None:
    for p in root.rglob("*"):
        os.utime(p, (when, when))


@pytest.mark.slow
def test_list_shows_every_experiment_with_its_status(experiment, tmp_path, capsys, monkeypatch):
    storage = tmp_path / "runs"
    storage.mkdir()
    shutil.copytree(experiment, storage / "a-finished")
    for name, when in (("b-running", time.time()), ("c-interrupted", time.time() - 3600)):
        shutil.copytree(experiment, storage / name)
        trial = next(d for d in sorted((storage / name).iterdir()) if (d / "result.json").is_file())
        shutil.rmtree(trial)  # a trial the search asked for has not been created yet
        _touch(storage / name, when)
    (storage / "d-not-started").mkdir()
    shutil.copy(experiment / "sparsesearch.json", storage / "d-not-started")
    (storage / "e-unreadable").mkdir()
    (storage / "e-unreadable" / "sparsesearch.json").write_text("{not json")
    (storage / "f-not-an-experiment").mkdir()
    df = load_results(experiment)
    reached = int((df["status"] == REACHED).sum())
    best = df[(df["role"] == SPARSE) & (df["status"] == REACHED)]["net_time_s"].min()

    monkeypatch.chdir(tmp_path)  # the default storage: runs
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "a-finished",
        "b-running",
        "c-interrupted",
        "d-not-started",
        "e-unreadable",
    ]
    finished, running, interrupted, not_started, unreadable = lines
    assert f"finished     {reached}/{len(df)} reached" in finished and f"best net_time {best:.2f} s: trial " in finished
    rest = load_results(storage / "b-running")
    assert f"running      {int((rest['status'] == REACHED).sum())}/{len(df) - 1} reached, 1 to go" in running
    assert " interrupted " in interrupted
    assert f"not started  0/0 reached, {len(df)} to go" in not_started and "best -" in not_started
    assert "unreadable: " in unreadable and "sparsesearch.json: unreadable" in unreadable


def test_list_errors_and_empty_storage(tmp_path, capsys):
    assert main(["list", str(tmp_path / "none")]) == 2
    _one_line_error(capsys, "none: no such directory")
    assert main(["list", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"no experiments in {tmp_path}\n"


def test_topkast_saves_its_forward_set_and_a_second_save_replaces_the_first(tmp_path, tiny_raw):
    """Top-KAST's masks are its backward set; the saved ones are the forward set the weights hold, so the reloaded
    sparsity is the run's."""
    import sparsesearch

    raw = {**tiny_raw, "target": {"loss": 4.0}, "sparsity": {"method": "topkast", "level": 0.8}}
    raw["train"] = {**tiny_raw["train"], "max_steps": 20}
    for _ in range(2):
        result = sparsesearch.train(raw, save=tmp_path / "m")
    model = sparsesearch.load_trained(tmp_path / "m")
    assert all(m.dtype == torch.bool for m in model.masks.values())
    weights = model.model.sparsifiable_weights()
    assert all(not weights[n][~m].any() for n, m in model.masks.items())
    assert model.sparsity() == result.avg_sparsity
    assert model.evaluate() == pytest.approx(result.final_eval_loss, abs=1e-7)
