"""A bad experiment is refused in the first second with one line, and nothing is left half-made: the checks
that run before any data, target, Ray or file work, and the readers' behaviour on broken experiment folders."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
import yaml
from helpers import ROOT, _command, run_cli, search_spec_file

from sparsesearch import cli
from sparsesearch.experiment import STATE_FILE, STUDY_FILE, TUNER_FILE
from sparsesearch.spec import SpecError, spec_from_dict


def _one_line_error(capsys, argv, command) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsesearch {command}: error: ") and "\n" not in err, err
    return err


def _searching(params: dict, **sections) -> dict:
    return {**sections, "search": {"params": params}}


# ----- searched values are checked against the file's own settings ----------------------------------------------


def test_searched_values_are_checked_against_the_files_settings_not_the_defaults():
    ok = _searching({"model.num_heads": {"choice": [3, 6]}}, model={"hidden_size": 48})
    spec_from_dict(ok)  # 3 and 6 divide the file's 48 (not the default 256)
    bad = _searching({"model.num_heads": {"choice": [5, 6]}}, model={"hidden_size": 48})
    with pytest.raises(SpecError, match=r"search.params.model.num_heads: value 5 is invalid: .*\(48\)"):
        spec_from_dict(bad)


def test_a_searched_value_that_clashes_with_a_fixed_key_is_refused():
    raw = _searching({"model.hidden_size": {"choice": [48, 50]}}, model={"num_heads": 4})
    with pytest.raises(SpecError, match=r"model.hidden_size: value 50 is invalid"):
        spec_from_dict(raw)
    raw = _searching({"train.max_steps": {"int": [100, 2000]}}, target={"dense_steps": 200})
    with pytest.raises(SpecError, match=r"train.max_steps: value 100 is invalid.*dense_steps"):
        spec_from_dict(raw)


def test_a_clash_between_two_searched_keys_is_left_to_the_trials():
    # 5 heads suit hidden 60 but not 48: some combinations are valid, so the space is.
    raw = _searching({"model.hidden_size": {"choice": [48, 60]}, "model.num_heads": {"choice": [4, 5]}})
    spec_from_dict(raw)


def test_a_searched_method_is_checked_with_the_files_sparsity_settings(tiny_raw):
    from sparsesearch.checks import check_spec

    raw = {**tiny_raw, "sparsity": {"method": "rigl", "level": 0.0}}
    raw["search"] = {"params": {"sparsity.method": {"choice": ["rigl", "no_such_method"]}}}
    with pytest.raises(SpecError, match="no_such_method"):
        check_spec(spec_from_dict(raw))


# ----- everything is checked before any work ----------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_early_stopping_bounds_are_refused_before_anything_runs(tmp_path, tiny_raw, capsys, dry_run):
    path = search_spec_file(tmp_path, tiny_raw)
    args = ["run", str(path), "--set", "search.asha.grace_period=1000", "--name", "x"]
    err = _one_line_error(capsys, args + (["--dry-run"] if dry_run else []), "run")
    assert "search.asha.grace_period" in err and "max_t (60" in err
    assert not (tmp_path / "runs").exists()  # no experiment, no study, nothing to resume
    err = _one_line_error(capsys, ["train", str(path), "--set", "search.asha.grace_period=1000"], "train")
    assert "search.asha.grace_period" in err


def test_a_grace_period_in_steps_with_a_flop_budget_is_refused(tmp_path, tiny_raw, capsys):
    path = search_spec_file(tmp_path, tiny_raw)
    err = _one_line_error(capsys, ["run", str(path), "--dry-run", "--set", "search.asha.unit=flops"], "run")
    assert "at least one dense step's budget" in err


@pytest.mark.parametrize("unit", ["steps", "flops"])
def test_a_grace_period_in_percent_is_that_share_of_the_objective_rungs_dense_steps(tiny_raw, unit):
    """'20%' of a ladder whose objective rung is dense after 50 steps is 10 dense steps (their FLOPs with a FLOP
    budget), whatever the model: the first decision falls at the same point of training on any spec."""
    from sparsesearch.checks import asha_grace, asha_rungs, check_asha, dense_step_flops
    from sparsesearch.search.schedulers import make_scheduler

    raw = {
        **tiny_raw,
        "train": {**tiny_raw["train"], "max_steps": 60},
        "target": {"loss": "auto", "dense_steps": [20, 50]},
        "search": {"asha": {"unit": unit, "grace_period": "20%", "reduction_factor": 2}},
    }
    spec = spec_from_dict(raw)
    check_asha(spec)
    per_step = dense_step_flops(spec) if unit == "flops" else 1.0
    assert asha_grace(spec, per_step) == pytest.approx(10 * per_step)
    rungs = [milestone for milestone, _ in make_scheduler(spec, per_step)._brackets[0]._rungs]
    assert min(rungs) == pytest.approx(10 * per_step)
    # what `run --dry-run` prints is where Ray's ASHA decides: 10, 20, 40 of a 60-step budget
    assert sorted(rungs) == pytest.approx(asha_rungs(spec, per_step)) == [10 * per_step, 20 * per_step, 40 * per_step]


@pytest.mark.parametrize("unit", ["steps", "flops"])
def test_the_default_grace_period_adapts_to_a_short_budget(tmp_path, tiny_raw, unit, capsys):
    """A spec that says nothing about ASHA is never refused for it: the default is 20% of the objective rung's
    dense steps, kept within the budget (a 20-step budget with a 200-step target: grace 20, not an error)."""
    from sparsesearch.checks import asha_grace, check_asha, dense_step_flops

    raw = {
        **tiny_raw,
        "train": {**tiny_raw["train"], "max_steps": 20},
        "target": {"loss": 5.0, "dense_steps": 200},  # the schedules' horizon: 200 steps
        "search": {"asha": {"unit": unit}},
    }
    spec = spec_from_dict(raw)
    check_asha(spec)
    per_step = dense_step_flops(spec) if unit == "flops" else 1.0
    assert asha_grace(spec, per_step) == pytest.approx(20 * per_step)  # 20% of 200 = 40 > max_t 20
    long = spec_from_dict({**raw, "train": {**tiny_raw["train"], "max_steps": 2000}})
    assert asha_grace(long, per_step) == pytest.approx(40 * per_step)
    path = search_spec_file(tmp_path, tiny_raw)
    data = yaml.safe_load(path.read_text())
    del data["search"]["asha"]
    data["train"]["max_steps"], data["target"] = 20, raw["target"]
    path.write_text(yaml.safe_dump(data))
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    assert "grace period 20 (default: 20% of 200 dense steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("grace", "rule"),
    [
        ("20 percent", "a percentage"),
        ("0%", "between 0 and 100"),
        ("150%", "between 0 and 100"),
        ("fast", "a percentage"),
    ],
)
def test_a_bad_grace_percentage_names_the_rule(tiny_raw, grace, rule):
    with pytest.raises(SpecError, match=rf"search\.asha\.grace_period: .*{rule}.*got '{grace}'"):
        spec_from_dict({**tiny_raw, "search": {"asha": {"grace_period": grace}}})


def test_a_grace_percentage_beyond_the_budget_is_refused(tmp_path, tiny_raw, capsys):
    path = search_spec_file(tmp_path, tiny_raw)  # the objective rung is dense after 30 steps
    args = ["run", str(path), "--dry-run", "--set", "search.asha.max_t=20", "--set", "search.asha.grace_period=100%"]
    err = _one_line_error(capsys, args, "run")
    assert "search.asha.grace_period" in err and "max_t (20" in err and "got 100% = 30" in err


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("my-run_1", True),
        ("../x", False),
        ("/tmp/x", False),
        ("a/b", False),
        ("..", False),
        ("~x", False),
        (" ", False),
    ],
)
def test_an_experiment_name_stays_inside_its_storage(name, ok):
    raw = {"tune": {"name": name}}
    if ok:
        spec_from_dict(raw)
    else:
        with pytest.raises(SpecError, match="tune.name: must be"):
            spec_from_dict(raw)


def test_storage_uris_are_refused_and_the_help_says_so(tmp_path, tiny_raw, capsys):
    path = search_spec_file(tmp_path, tiny_raw)
    err = _one_line_error(capsys, ["run", str(path), "--dry-run", "--storage", "s3://bucket/x"], "run")
    assert "tune.storage: URIs are not supported" in err
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    assert "(or URI)" not in " ".join(help_text.split()) and "not a URI" in help_text


@pytest.mark.parametrize("command", [["train"], ["flops"], ["run", "--dry-run"]])
def test_an_empty_spec_file_is_an_error_not_a_default_run(tmp_path, capsys, command):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here yet\n")
    err = _one_line_error(capsys, [command[0], str(path), *command[1:]], command[0])
    assert "the spec file is empty" in err


def test_yaml_tags_that_build_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    path.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    err = _one_line_error(capsys, ["train", str(path)], "train")
    assert "not valid YAML" in err and not marker.exists()


def test_a_run_that_fails_before_its_first_trial_leaves_nothing(tmp_path, tiny_raw, monkeypatch):
    from sparsesearch.search import driver

    def fail(*args, **kw):
        raise RuntimeError("Ray could not start")

    monkeypatch.setattr(driver, "_fit", fail)
    path = search_spec_file(tmp_path, tiny_raw)
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["name"] = "failed"
    with pytest.raises(RuntimeError):
        driver.run_search(path, raw, spec_from_dict(raw), log=lambda m: None)
    assert not (tmp_path / "runs" / "failed").exists()
    # The same name is free again: the re-run gets as far as Ray (here: the same failure), not "exists; resume it".
    with pytest.raises(RuntimeError):
        driver.run_search(path, raw, spec_from_dict(raw), log=lambda m: None)


# ----- the FLOP breakdown at the spec's sparsity; a closed pipe ---------------------------------------------------


def test_flops_counts_the_specs_sparsity_as_training_charges_it(tiny_raw, tmp_path, capsys):
    """`flops` with a sparse method prints the FLOPs of a step at the target densities, equal to what the
    sparsifier charges for a real step of a model at those densities."""
    import torch

    from sparsesearch.data.batches import prepare_data
    from sparsesearch.training.trainer import Trainer

    raw = {**tiny_raw, "sparsity": {"method": "rigl", "level": 0.8, "update_every": 5}}
    path = tmp_path / "sparse.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["flops", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "rigl" and 0.2 < printed["flop_ratio"] < 1.0
    assert printed["update_step_total"] > printed["total"]  # RigL's dense gradient at an update
    spec = spec_from_dict(raw)
    torch.manual_seed(0)
    trainer = Trainer(spec, prepare_data(spec.data, spec.model), 0.01)
    step, _ = trainer.step_flops(trainer.expected_masked())
    assert printed["total"] == pytest.approx(step.total, rel=1e-3)  # masks hold round(density * size) weights


def test_flops_into_a_closed_pipe_ends_quietly(tmp_path, tiny_raw):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    exe = shlex.join(_command(()))
    # `head -c 1` leaves after one byte; the breakdown is longer than what the pipe buffers only in part, so
    # print it many times (-n is not an option: repeat the command in one shell pipeline instead).
    script = f"for i in $(seq 50); do echo; done | {exe} flops {path} | head -c 1 >/dev/null; echo ${{PIPESTATUS[1]}}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stdout.strip() in ("0", "141")


# ----- the readers on folders that are not complete experiments ---------------------------------------------------


def _state(tmp_path, content: str | None):
    exp = tmp_path / "exp"
    exp.mkdir()
    if content is not None:
        (exp / STATE_FILE).write_text(content)
    return exp


GOOD_STATE = json.dumps({"raw": {}, "target": {"losses": [6.0], "objective": 0, "source": "x"}, "name": "exp"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not a sparsesearch experiment"),
        ("", "unreadable"),
        ('{"raw": {', "unreadable"),
        ("[1, 2]", "holds a list"),
        ('{"raw": {"model": {"hidden_size": -1}}}', "its spec is invalid"),
        ('{"raw": {}, "target": {"losses": "x"}}', "target is malformed"),
        ('{"raw": {}}', "no finite target loss"),
        (GOOD_STATE, "no trial has reported yet"),
    ],
)
@pytest.mark.parametrize("command", ["export", "report"])
def test_readers_explain_an_incomplete_experiment_in_one_line(tmp_path, capsys, content, message, command):
    exp = _state(tmp_path, content)
    err = _one_line_error(capsys, [command, str(exp)], command)
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not a sparsesearch experiment"),
        ('{"raw": {', "unreadable, cannot resume"),
        ("[1, 2]", "not an experiment state"),
        ('{"raw": {}, "target": {"losses": null}}', "target is missing or malformed"),
    ],
)
def test_resume_explains_a_broken_experiment_in_one_line(tmp_path, capsys, content, message):
    exp = _state(tmp_path, content)
    err = _one_line_error(capsys, ["resume", str(exp)], "resume")
    assert message in err


def test_readers_on_paths_that_are_not_experiments(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "file.txt", tmp_path):
        for command in ("export", "report", "resume"):
            _one_line_error(capsys, [command, str(path)], command)


@pytest.mark.slow
def test_resume_of_a_damaged_ray_state_is_one_line(tmp_path, capsys, tiny_raw):
    raw = {**tiny_raw, "search": {"params": {"sparsity.level": {"uniform": [0.5, 0.9]}}}}
    exp = _state(tmp_path, json.dumps({**json.loads(GOOD_STATE), "raw": raw}))
    (exp / TUNER_FILE).write_bytes(b"\x80\x04not a pickle")
    err = _one_line_error(capsys, ["resume", str(exp)], "resume")
    assert "saved state cannot be restored" in err


def test_resume_refuses_another_corpus_in_one_line(tmp_path, tiny_raw, monkeypatch, capsys):
    """An experiment resumed on data with another corpus fingerprint would mix trials on different token ids:
    one line naming both fingerprints, exit 2, nothing run."""
    from sparsesearch.search import driver

    path = search_spec_file(tmp_path, tiny_raw, num_samples=2)
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["name"] = "other-corpus"
    monkeypatch.setattr(driver, "_fit", lambda spec, raw, data, target, exp_dir, *a, **kw: exp_dir)
    exp = driver.run_search(path, raw, spec_from_dict(raw), log=lambda m: None)
    state = json.loads((exp / STATE_FILE).read_text())
    assert len(state["corpus"]["fingerprint"]) == 16
    state["corpus"]["fingerprint"] = "0123456789abcdef"
    (exp / STATE_FILE).write_text(json.dumps(state))
    err = _one_line_error(capsys, ["resume", str(exp)], "resume")
    assert "(fingerprint 0123456789abcdef)" in err and "is not the one the experiment was made on" in err


@pytest.mark.slow
def test_resume_starts_afresh_an_experiment_stopped_before_its_first_trial(tmp_path, tiny_raw, monkeypatch):
    """The driver was killed after writing the experiment's state but before Ray Tune saved its own: `resume`
    runs the whole search from the stored spec, the stale study left aside."""
    from sparsesearch.results.table import load_results
    from sparsesearch.search import driver

    path = search_spec_file(tmp_path, tiny_raw, num_samples=2)
    raw = yaml.safe_load(path.read_text())
    raw["tune"]["name"] = "early"
    monkeypatch.setattr(driver, "_fit", lambda spec, raw, data, target, exp_dir, *a, **kw: exp_dir)
    exp = driver.run_search(path, raw, spec_from_dict(raw), log=lambda m: None)
    monkeypatch.undo()
    assert (exp / STATE_FILE).is_file() and not (exp / TUNER_FILE).exists()
    (exp / STUDY_FILE).write_bytes(b"")  # what a kill during the study's creation leaves
    proc = run_cli("resume", str(exp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "from the start" in proc.stdout
    df = load_results(exp)
    assert len(df) == 3 and df["status"].isin(["reached", "not_reached", "stopped_early"]).all()


@pytest.mark.slow
def test_a_combination_that_cannot_meet_its_level_is_an_invalid_trial_not_an_error(tmp_path, tiny_raw):
    """Every value is valid alone; together the fixed dense groups leave too few weights for the level. The
    trial reports `invalid` with the reason (no retries, no error) and the search carries on."""
    from sparsesearch.results.table import load_results
    from sparsesearch.search.driver import run_search

    path = search_spec_file(tmp_path, tiny_raw, num_samples=1)
    raw = yaml.safe_load(path.read_text())
    raw["search"]["params"] = {
        "sparsity.method": "rigl",
        "sparsity.distribution": "uniform",
        "sparsity.dense_groups": {"choice": [["embed_proj", "head_transform", "attn_qkv", "ffn_in"]]},
        "sparsity.level": {"uniform": [0.9, 0.95]},
    }
    raw["tune"]["name"] = "clash"
    import ray

    try:
        df = load_results(run_search(path, raw, spec_from_dict(raw), log=lambda m: None))
    finally:
        ray.shutdown()  # later tests start their own Ray (a cluster, a subprocess)
    sparse = df[df["role"] == "sparse"]
    assert list(sparse["status"]) == ["invalid"], sparse[["status"]]
    assert (df[df["role"] == "dense_family"]["status"] != "errored").all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 1000 + "]" * 1000, "nested too deeply"),
        ("train: {lr: 1" + "0" * 400 + "}", "must be a finite number"),
        ("train: {max_steps: 1" + "0" * 60 + "}", "train.max_steps: must be at most"),
        ("model: {hidden_size: 100000000000000000000}", "model.hidden_size: must be"),
        ("model: {num_layers: 100000000}", "model.num_layers: must be <="),
        ("search: {dense_family: {configs: 100000000}}", "search.dense_family.configs: must be <="),
        ("search: {seed: 4294967296}", "search.seed: must be <="),
        ("model: {'a\\nb': 1}", "unknown key"),
    ],
)
def test_what_fuzzing_found_is_one_clean_line(tmp_path, capsys, text, message):
    """Each input once crashed validation (a traceback, a hang or a huge allocation)."""
    path = tmp_path / "fuzzed.yaml"
    path.write_text(text + "\n")
    err = _one_line_error(capsys, ["run", str(path), "--dry-run"], "run")
    assert message in err


def test_an_error_ray_logs_and_survives_is_one_line_on_the_console(monkeypatch):
    """Ray logs some failures it survives with a traceback (an old checkpoint it cannot delete from a storage that
    turned read-only): the console shows each as one line, without the traceback."""
    import io
    import logging
    import os

    import ray.train._internal.storage as ray_storage

    from sparsesearch.search.ray_setup import quiet_ray_logs

    monkeypatch.setattr(os, "environ", dict(os.environ))  # the settings it makes stay in this test
    quiet_ray_logs(verbose=False)
    handler = logging.getLogger("ray").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        try:
            raise OSError(30, "Read-only file system")
        except OSError:
            ray_storage.logger.exception("Caught exception when deleting path at (fs, /store/checkpoint_000001):")
    finally:
        handler.setStream(previous)
    out = stream.getvalue()
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert "checkpoint_000001" in out and "OSError: [Errno 30] Read-only file system" in out
