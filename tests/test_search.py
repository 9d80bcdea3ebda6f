"""The search: spec validation of the search section, the define-by-run space, and the real `sparsesearch run`
and `resume` commands on a tiny spec (Ray Tune + Optuna + ASHA)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

import optuna
import pytest
import yaml
from helpers import ROOT, run_cli, search_spec_file, start_cli, trial_results, wait_for

from sparsesearch.checks import check_spec
from sparsesearch.cli import main
from sparsesearch.experiment import EXPERIMENT_FORMAT, METRICS
from sparsesearch.search.space import define_by_run, sample_configs
from sparsesearch.spec import SpecError, search_params, spec_from_dict

BASE = {"sparsity": {"method": "rigl", "level": 0.7}}


def _with_search(params, **search):
    return {**BASE, "search": {"params": params, **search}}


BAD_SEARCH = [
    ({"sparsity.method": {"choice": []}}, "search.params.sparsity.method.choice: must be a non-empty list"),
    ({"sparsity.level": {"uniform": [0.9, 0.5]}}, "search.params.sparsity.level.uniform: low must be < high"),
    ({"sparsity.level": {"uniform": [0.5]}}, "search.params.sparsity.level.uniform: must be [low, high]"),
    ({"sparsity.level": {"uniform": [0.5, 1.2]}}, "search.params.sparsity.level: value 1.2 is invalid"),
    ({"train.lr": {"loguniform": [0, 0.1]}}, "search.params.train.lr.loguniform: low must be > 0"),
    ({"train.batch_size": {"int": [4.5, 8]}}, "search.params.train.batch_size.int: bounds must be integers"),
    ({"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}, "needs exactly one distribution"),
    ({"train.lr": {"normal": [0, 1]}}, "search.params.train.lr.normal: unknown key"),
    ({"sparsity.method": {"choice": ["rigl", "magic"]}}, "value 'magic' is invalid: sparsity.method: unknown method"),
    ({"sparsity.lvl": {"uniform": [0.1, 0.2]}}, "search.params.sparsity.lvl: not a searchable spec key"),
    ({"search.seed": 3}, "search.params.search.seed: not a searchable spec key"),
    (
        {"sparsity.drop_fraction": {"uniform": [0.1, 0.2], "when": {"nope.key": ["x"]}}},
        "search.params.sparsity.drop_fraction.when.nope.key: unknown key",
    ),
    (
        {
            "sparsity.method": {"choice": ["rigl", "set"]},
            "sparsity.drop_fraction": {"uniform": [0.1, 0.2], "when": {"sparsity.method": ["gmp"]}},
        },
        "when.sparsity.method: 'gmp' is not a value of sparsity.method",
    ),
    (
        {
            "sparsity.drop_fraction": {"uniform": [0.1, 0.2], "when": {"sparsity.method": ["rigl"]}},
            "sparsity.method": {"choice": ["rigl", "set"]},
        },
        "sparsity.method must be listed before",
    ),
    ({"sparsity.level": {"uniform": [0.1, 0.2], "when": []}}, "search.params.sparsity.level.when: must be"),
]


@pytest.mark.parametrize("params,message", BAD_SEARCH, ids=[str(i) for i in range(len(BAD_SEARCH))])
def test_bad_search_params_name_the_field(params, message):
    raw = _with_search(params)
    with pytest.raises(SpecError) as e:
        check_spec(spec_from_dict(raw))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "raw,message",
    [
        (_with_search({}, sampler="cmaes"), "search.sampler: must be one of 'tpe', 'nsga2', 'random'"),
        (_with_search({}, objective="loss"), "search.objective: must be one of"),
        (_with_search({}, num_samples=0), "search.num_samples: must be >= 1"),
        (_with_search({}, asha={"reduction_factor": 1}), "search.asha.reduction_factor: must be > 1"),
        ({**BASE, "tune": {"max_concurrent": 0}}, "tune.max_concurrent: must be >= 1"),
        ({**BASE, "tune": {"cpus": 2}}, "tune.cpus: unknown key"),
    ],
)
def test_bad_search_and_tune_settings(raw, message):
    with pytest.raises(SpecError, match=None) as e:
        spec_from_dict(raw)
    assert message in str(e.value)


def test_constants_apply_before_values_are_checked():
    # The spec trains densely; the search fixes the method, so levels > 0 are valid for every trial.
    raw = {"search": {"params": {"sparsity.method": "rigl", "sparsity.level": {"uniform": [0.5, 0.9]}}}}
    assert [p.kind for p in search_params(spec_from_dict(raw))] == ["const", "uniform"]


def _sample(raw, n=40):
    spec = spec_from_dict(raw)
    space = define_by_run(spec, raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space(trial)
        out.append({**trial.params, **constants})
        study.tell(trial, 1.0)
    return out


def test_conditional_keys_exist_only_when_their_condition_holds():
    raw = _with_search(
        {
            "sparsity.method": {"choice": ["rigl", "static"]},
            "sparsity.drop_fraction": {"uniform": [0.1, 0.5], "when": {"sparsity.method": ["rigl"]}},
            "sparsity.update_every": {"int": [5, 6]},
            "train.seed": 7,
        }
    )
    configs = _sample(raw)
    assert {c["sparsity.method"] for c in configs} == {"rigl", "static"}
    for c in configs:
        assert ("sparsity.drop_fraction" in c) == (c["sparsity.method"] == "rigl")
        assert c["sparsity.update_every"] in (5, 6)  # integer bounds are inclusive
        assert c["train.seed"] == 7


def test_condition_on_a_spec_constant_uses_the_spec_value():
    raw = _with_search({"sparsity.drop_fraction": {"uniform": [0.1, 0.5], "when": {"sparsity.method": ["set"]}}})
    assert all("sparsity.drop_fraction" not in c for c in _sample(raw, 5))  # the spec's method is rigl


def test_list_valued_choices_round_trip():
    raw = _with_search({"sparsity.dense_groups": {"choice": [[], ["embed_proj"]]}})
    configs = sample_configs(spec_from_dict(raw), raw, 10)
    assert {c["sparsity.dense_groups"] for c in configs} == {(), ("embed_proj",)}
    assert not any("invalid" in c for c in configs)


def test_dry_run_prints_space_and_samples(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["run", "search_spaces/rigl.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sparsity.level" in out and "loguniform" in out and out.count("sparsity.method=rigl") == 5
    # rigl.yaml's grace period is 20% of its objective rung (dense after 1000 steps), its budget 1200 steps
    assert "grace period 200 (20% of 1000 dense steps)" in out and "stopped at 200, 400, 800\n" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "search_spaces/smoke.yaml", "--dry-run", "--num-samples", "0"], "--num-samples: must be >= 1"),
        (
            ["run", "search_spaces/smoke.yaml", "--dry-run", "--set", "search.sampler=cmaes"],
            "search.sampler: must be one of",
        ),
        (
            ["run", "search_spaces/smoke.yaml", "--dry-run", "--set", "search.asha.grace=3"],
            "search.asha.grace: unknown key",
        ),
        (["run", "search_spaces/smoke.yaml", "--dry-run", "--set", "search.params={}"], "nothing to search"),
        (["resume", "/no/such/experiment"], "not a sparsesearch experiment"),
        (
            ["run", "search_spaces/smoke.yaml", "--storage", "s3://bucket/runs"],
            "tune.storage: URIs are not supported, got 's3://bucket/runs'",
        ),
    ],
)
def test_run_cli_errors_are_one_line_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ----- end to end: real Ray Tune runs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_run_end_to_end(tmp_path, tiny_raw):
    spec = search_spec_file(tmp_path, tiny_raw)
    proc = run_cli("run", str(spec), "--name", "e2e")
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "runs" / "e2e"
    assert "best sparse configurations by net_time" in proc.stdout and str(exp) in proc.stdout
    assert "dense family" in proc.stdout
    state = json.loads((exp / "sparsesearch.json").read_text())
    assert state["format"] == EXPERIMENT_FORMAT and state["reference"]["machine"]
    fingerprint = state["corpus"]["fingerprint"]  # the data line, the state and every report name one corpus
    assert f"corpus fingerprint {fingerprint}" in proc.stdout
    trials = trial_results(exp)
    assert {row["corpus"] for rows in trials.values() for row in rows} == {fingerprint}
    assert len(trials) == 4  # 3 sampled + the dense family (one size, one configuration)
    refs = [rows for rows in trials.values() if _is_dense(rows)]
    assert len(refs) == 1 and refs[0][-1]["method"] == "dense"
    for rows in trials.values():
        for row in rows:  # every report carries every metric, none NaN
            assert set(METRICS) <= set(row)
            assert all(row[m] == row[m] for m in METRICS if isinstance(row[m], float))
        last = rows[-1]  # where each trial's time and memory went, and how it computed
        assert last["precision"] in ("fp32", "bf16")
        assert last["startup_s"] > 0 and last["eval_time_s"] > 0 and last["report_s"] >= 0
        assert 50 < last["rss_mb"] <= last["peak_rss_mb"]
    # The Optuna study (SQLite) holds the sampled trials, not the dense family.
    with sqlite3.connect(exp / "study.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 3


@pytest.mark.slow
def test_sparse_trials_on_course_reach_the_target_after_the_family_finished(tmp_path, tiny_raw):
    """The family runs first (one trial at a time) and finishes at the target loss; sparse trials at a low level
    are behind it at ASHA's first rung but on course, and ASHA, comparing sparse with sparse only, lets at least
    one of them reach the target (the default experiment once stopped every one at its first rung)."""
    path = search_spec_file(tmp_path, tiny_raw, num_samples=2, max_concurrent=1)
    raw = yaml.safe_load(path.read_text())
    raw["search"]["params"] = {"sparsity.method": {"choice": ["rigl"]}, "sparsity.level": {"choice": [0.5, 0.55]}}
    # Rungs at 10.5 and 31.5 dense-equivalent steps: the family's last report (the target, at 30) would land in the
    # first, which these sparse trials pass at their step 20 (budget ~11), on course but not yet at the target.
    raw["search"]["asha"] = {"grace_period": 10.5, "reduction_factor": 3}
    path.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(path), "--name", "family-first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = trial_results(tmp_path / "runs" / "family-first")
    family = [rows for rows in trials.values() if _is_dense(rows)]
    sparse = [rows for rows in trials.values() if not _is_dense(rows)]
    assert len(family) == 1 and len(sparse) == 2
    assert family[0][-1]["status"] == "reached"
    first_sparse_start = min(rows[0]["timestamp"] for rows in sparse)
    assert family[0][-1]["timestamp"] <= first_sparse_start, "the family finished before any sparse trial began"
    assert any(rows[-1]["status"] == "reached" for rows in sparse), [rows[-1]["status"] for rows in sparse]
    assert "(no sparse trial reached the target)" not in proc.stdout


def _is_dense(rows: list[dict]) -> bool:
    return rows[0]["config"].get("role") == "dense_family"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_search_resumes_without_rerunning_finished_trials(tmp_path, tiny_raw, sig):
    spec = search_spec_file(tmp_path, tiny_raw, num_samples=5, max_concurrent=1)
    exp = tmp_path / "runs" / "interrupted"
    proc = start_cli("run", str(spec), "--name", "interrupted")
    try:

        def finished() -> bool:
            done = [rows for rows in trial_results(exp).values() if rows[-1]["done"] or rows[-1]["status"] != "running"]
            return len(done) >= 2

        assert wait_for(finished, 400), "two trials should finish before the interrupt"
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {tid: rows for tid, rows in trial_results(exp).items() if rows[-1]["status"] != "running"}
    assert before
    # The results of an interrupted experiment can be read and exported before it is resumed.
    from sparsesearch.definitions import STATUSES
    from sparsesearch.results.export import export
    from sparsesearch.results.table import load_results

    df = load_results(exp)
    assert len(df) >= len(before) and set(df["status"]) <= set(STATUSES)
    assert export(exp, tmp_path / "export")["pareto.png"].stat().st_size > 10_000
    res = run_cli("resume", str(exp))
    assert res.returncode == 0, res.stderr[-3000:]
    after = trial_results(exp)
    assert len(after) == 6, "every trial (5 + the dense family) is there, none lost"
    for tid, rows in before.items():  # finished trials were not run again
        assert after[tid] == rows
    assert all(rows[-1]["status"] != "running" or rows[-1]["budget"] > 0 for rows in after.values())


@pytest.mark.slow
def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path, tiny_raw):
    """A real two-node Ray cluster on this machine (ray.cluster_utils.Cluster); one CPU per node, so two
    concurrent trials must land on different nodes."""
    import ray
    from ray.cluster_utils import Cluster

    from sparsesearch.results.table import load_results
    from sparsesearch.search.driver import run_search

    path = search_spec_file(tmp_path, tiny_raw, num_samples=3)
    ray.shutdown()  # a Ray an earlier test left running in this process would take the search's trials
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        raw = yaml.safe_load(path.read_text())
        raw["tune"]["address"] = cluster.address
        raw["tune"]["name"] = "cluster"
        # Every trial trains its whole budget (seconds), long enough that two always run side by side.
        raw["target"] = {"loss": 0.5}
        raw["train"].update(max_steps=300, eval_every=50)
        raw["search"]["asha"] = {"grace_period": 300}
        spec = spec_from_dict(raw)
        df = load_results(run_search(path, raw, spec, log=lambda msg: None))
        assert len(df) == 4
        nodes = set(df["node"])
        assert len(nodes) == 2, df[["trial_id", "node", "status"]].to_string()
    finally:
        ray.shutdown()
        cluster.shutdown()


def _trial_workers() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "ray::ImplicitFunc" in line]


@pytest.mark.slow
def test_killed_trial_worker_resumes_from_checkpoint_with_the_same_result(tmp_path, tiny_raw):
    from sparsesearch.experiment import trial_spec
    from sparsesearch.training.trainer import Trainer

    spec_path = search_spec_file(tmp_path, tiny_raw, num_samples=1, max_concurrent=1)
    raw = yaml.safe_load(spec_path.read_text())
    raw["train"]["max_steps"] = 600
    raw["target"] = {"loss": 0.5}  # unreachable: the trial runs its whole budget, long enough to be killed
    raw["search"]["asha"] = {"grace_period": 600}
    spec_path.write_text(yaml.safe_dump(raw))
    exp = tmp_path / "runs" / "killed"
    proc = start_cli("run", str(spec_path), "--name", "killed", text=True)
    try:

        def sampled_trial_running():
            rows = [r for r in trial_results(exp).values() if not r[0]["config"].get("reference")]
            return rows and 20 <= rows[0][-1]["step"] < 400

        assert wait_for(sampled_trial_running, 400)
        workers = _trial_workers()
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "ERROR" in out  # the failure was seen and retried
    rows = next(r for r in trial_results(exp).values() if not r[0]["config"].get("reference"))
    final = rows[-1]
    config = {k: v for k, v in rows[0]["config"].items()}
    spec = trial_spec(raw, config)
    from sparsesearch.data.batches import prepare_data

    data = prepare_data(spec.data, spec.model)
    uninterrupted = Trainer(spec, data, 0.5)
    last = list(uninterrupted.run())[-1]
    assert final["step"] == last["step"] == 600
    assert final["eval_loss"] == pytest.approx(last["eval_loss"], abs=1e-9)
    assert final["flops"] == last["flops"]


@pytest.mark.slow
def test_diverging_trials_are_marked_and_the_search_carries_on(tmp_path, tiny_raw):
    spec_path = search_spec_file(tmp_path, tiny_raw, num_samples=2)
    raw = yaml.safe_load(spec_path.read_text())
    raw["search"]["params"] = {
        "train.lr": {"choice": [1000.0]},
        "train.grad_clip": None,
        "sparsity.level": {"uniform": [0.5, 0.9]},
    }
    spec_path.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(spec_path), "--name", "diverge")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 diverged" in proc.stdout
    trials = trial_results(tmp_path / "runs" / "diverge")
    sampled = [rows for rows in trials.values() if not _is_dense(rows)]
    assert len(sampled) == 2
    for rows in sampled:
        last = rows[-1]
        assert last["status"] == "diverged" and last["diverged"] == 1 and last["objective"] == float("inf")
        assert last["step"] < 60, "stopped at once, not at the end of its budget"
    ref = next(rows for rows in trials.values() if _is_dense(rows))
    assert ref[-1]["status"] == "reached"


@pytest.mark.parametrize("config", [{"role": "dense_family", "family_size": 2}, {"reference": True}])
def test_asha_never_stops_a_dense_family_trial(config):
    """Speedups are measured against the dense family, so each of its trials runs to the target even when it is
    the worst trial at a rung (at equal compute, dense is behind a good sparse run). Older experiments' dense
    reference is one of them."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from sparsesearch.search.schedulers import FamilyKeepingASHA

    sched = FamilyKeepingASHA(
        time_attr="budget", metric="eval_loss", mode="min", max_t=100, grace_period=10, reduction_factor=2
    )
    trials = [SimpleNamespace(trial_id=f"t{i}", config={"sparsity.level": 0.5}) for i in range(4)]
    ref = SimpleNamespace(trial_id="ref", config=config)
    for t in trials + [ref]:
        sched.on_trial_add(None, t)
    for i, t in enumerate(trials):  # good sparse trials fill the first rung
        sched.on_trial_result(None, t, {"budget": 10, "eval_loss": 5.0 + 0.01 * i})
    worst = {"budget": 10, "eval_loss": 9.0}
    assert sched.on_trial_result(None, ref, worst) == TrialScheduler.CONTINUE
    # the same report from a sparse trial is stopped: the scheduler is still ASHA for everyone else
    late = SimpleNamespace(trial_id="late", config={"sparsity.level": 0.9})
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, worst) == TrialScheduler.STOP


def test_finished_family_trials_never_set_a_sparse_rung_cutoff():
    """Family trials that finished first at the target loss (low) must not stop a sparse trial whose loss is the
    best sparse loss at its rung: sparse trials are compared with sparse trials only (Ray records a finished
    trial's last result at the highest rung it passed, which once put the family's final losses in every rung)."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from sparsesearch.search.schedulers import FamilyKeepingASHA

    sched = FamilyKeepingASHA(
        time_attr="budget", metric="eval_loss", mode="min", max_t=100, grace_period=10, reduction_factor=2
    )
    family = [SimpleNamespace(trial_id=f"f{i}", config={"role": "dense_family", "family_size": i}) for i in range(4)]
    for i, f in enumerate(family):  # each finishes at the target, its last report past one of the rungs 10-80
        sched.on_trial_add(None, f)
        sched.on_trial_result(None, f, {"budget": 5, "eval_loss": 6.5})
        sched.on_trial_complete(None, f, {"budget": [15, 25, 45, 85][i], "eval_loss": 4.0 + 0.01 * i})
    errored, pending = (SimpleNamespace(trial_id=t, config={"role": "dense_family"}) for t in ("f4", "f5"))
    for f in (errored, pending):
        sched.on_trial_add(None, f)
    sched.on_trial_result(None, errored, {"budget": 12, "eval_loss": 3.9})
    sched.on_trial_error(None, errored)  # Ray requeues an errored trial: it is added again
    sched.on_trial_add(None, errored)
    sched.on_trial_remove(None, pending)
    sparse = SimpleNamespace(trial_id="s0", config={"sparsity.level": 0.8})
    sched.on_trial_add(None, sparse)
    for budget, loss in ((10, 5.0), (20, 4.6), (40, 4.3), (80, 4.1)):  # on course, behind the family's finals
        assert sched.on_trial_result(None, sparse, {"budget": budget, "eval_loss": loss}) == TrialScheduler.CONTINUE
    # sparse trials still compete with each other
    worse = SimpleNamespace(trial_id="s1", config={"sparsity.level": 0.9})
    sched.on_trial_add(None, worse)
    assert sched.on_trial_result(None, worse, {"budget": 10, "eval_loss": 5.5}) == TrialScheduler.STOP


@pytest.mark.parametrize(
    "gpus_set,device,cluster_gpus,concurrent,expected",
    [
        (None, "auto", 0.0, 2, 0.0),  # no GPU anywhere: CPU trials
        (None, "auto", 1.0, 2, 0.5),  # one GPU shared by two concurrent trials
        (None, "auto", 4.0, 2, 1.0),  # at most one GPU per trial
        (None, "cpu", 4.0, 2, 0.0),  # the spec asks for CPU training
        (0.25, "auto", 4.0, 2, 0.25),  # an explicit setting wins
        (0.0, "auto", 4.0, 2, 0.0),
    ],
)
def test_trials_get_a_gpu_share_by_default(gpus_set, device, cluster_gpus, concurrent, expected):
    from sparsesearch.search.driver import gpus_per_trial

    spec = spec_from_dict(
        {"train": {"device": device}, "tune": {"gpus_per_trial": gpus_set, "max_concurrent": concurrent}}
    )
    assert gpus_per_trial(spec, cluster_gpus) == expected
