"""Results: reading experiment directories, the Pareto front, export and report (CLI end to end)."""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import run_cli

import sparsesearch
from sparsesearch.definitions import STATUSES
from sparsesearch.results.pareto import front, front_mask, non_dominated
from sparsesearch.results.table import COLUMNS, ResultsError, load_history, load_results, steps_to_target

# ----- the Pareto front -------------------------------------------------------------------------------------------


def _brute_force(cost, gain):
    n = len(cost)
    return [
        not any(
            cost[j] <= cost[i] and gain[j] >= gain[i] and (cost[j] < cost[i] or gain[j] > gain[i]) for j in range(n)
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", range(200))
def test_front_equals_brute_force_non_dominated_set(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 30)
    levels = rng.choice([3, 6, 1000])  # few distinct values force ties in one or both coordinates
    cost = [float(rng.randint(0, levels)) for _ in range(n)]
    gain = [rng.randint(0, levels) / levels for _ in range(n)]
    if n and rng.random() < 0.3:  # exact duplicates
        k = rng.randrange(n)
        cost.append(cost[k])
        gain.append(gain[k])
    assert non_dominated(cost, gain) == _brute_force(cost, gain)


def test_ties_on_the_front_are_all_kept_and_equal_cost_lower_gain_is_not():
    assert non_dominated([1.0, 1.0, 1.0, 2.0], [0.5, 0.5, 0.4, 0.9]) == [True, True, False, True]
    # same gain at a higher cost is dominated
    assert non_dominated([1.0, 2.0], [0.5, 0.5]) == [True, False]


@pytest.mark.parametrize("seed", range(50))
def test_trials_that_did_not_reach_the_target_are_never_on_the_front(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 25)
    statuses = [rng.choice(STATUSES) for _ in range(n)]
    df = pd.DataFrame(
        {
            "status": statuses,
            "net_time_s": [rng.choice([rng.uniform(1, 100), math.inf]) for _ in range(n)],
            "net_flops": [rng.uniform(1, 100) for _ in range(n)],
            "avg_sparsity": [rng.uniform(0, 1) for _ in range(n)],
        }
    )
    mask = front_mask(df)
    assert not (mask & (df["status"] != "reached")).any()
    ok = (df["status"] == "reached") & df["net_time_s"].map(math.isfinite)
    sub = df[ok]
    expected = _brute_force(sub["net_time_s"].tolist(), sub["avg_sparsity"].tolist())
    assert mask[ok].tolist() == expected
    assert len(front(df)) == sum(expected)
    # an unreached trial that would dominate everything still stays off the front
    df.loc[len(df)] = {"status": "stopped_early", "net_time_s": 0.0, "net_flops": 0.0, "avg_sparsity": 1.0}
    assert not front_mask(df).iloc[-1]


def test_unknown_front_objective_names_the_choices():
    with pytest.raises(ValueError, match="net_time, net_flops"):
        front_mask(pd.DataFrame({"status": []}), by="speed")


def test_steps_to_target_interpolates_like_the_trainer():
    rows = [{"step": 10, "eval_loss": 7.0}, {"step": 20, "eval_loss": 6.0}, {"step": 30, "eval_loss": 5.0}]
    assert steps_to_target(rows, 5.5) == pytest.approx(25.0)
    assert steps_to_target(rows, 7.5) == 10
    assert math.isnan(steps_to_target(rows, 4.0))


# ----- reading experiment directories (synthetic, every status) ---------------------------------------------------


def _report(step, loss, status="running", **kw):
    flops = 1e9 * step
    row = {
        "step": step,
        "budget": step * 0.5,
        "eval_loss": loss,
        "train_loss": loss,
        "train_time_s": step * 0.1,
        "flops": flops * 0.5,
        "dense_flops": flops,
        "flop_ratio": 0.5,
        "net_time_s": step * 0.05,
        "net_flops": flops * 0.5,
        "time_to_target_s": step * 0.1,
        "objective": step * 0.05,
        "avg_sparsity": 0.8,
        "target_loss": 5.0,
        "reached": int(status == "reached"),
        "projected": int(status != "reached"),
        "diverged": int(status == "diverged"),
        "status": status,
        "method": "rigl",
        "level": 0.8,
        "node": "n1",
        "precision": "bf16",
        "done": False,
    }
    row.update(kw)
    return row


def _write_experiment(root: Path, trials: dict[str, tuple[dict, list[dict], dict]], name: str = "exp") -> Path:
    """trials: id -> (config, reports, extra files); result.json rows get config/trial_id like Ray's."""
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "sparsesearch.json").write_text(
        json.dumps(
            {"name": "exp", "target_loss": 5.0, "spec_path": "x.yaml", "raw": {"search": {"objective": "net_time"}}}
        )
    )
    for n, (tid, (cfg, rows, files)) in enumerate(trials.items(), 1):
        d = exp / f"run_trial_{tid}_{n}_cfg"
        d.mkdir()
        (d / "params.json").write_text(json.dumps(cfg))
        (d / "result.json").write_text("".join(json.dumps({**r, "trial_id": tid, "config": cfg}) + "\n" for r in rows))
        for name, text in files.items():
            (d / name).write_text(text)
    return exp


def test_statuses_speedups_and_parameters_from_stored_reports(tmp_path):
    cfg = {"sparsity.level": 0.8, "sparsity.method": "rigl"}
    ref_done = _report(
        200,
        4.9,
        "reached",
        net_time_s=20.0,
        net_flops=8e11,
        flop_ratio=1.0,
        avg_sparsity=0.0,
        method="dense",
        done=True,
    )
    exp = _write_experiment(
        tmp_path,
        {
            "ref": ({"reference": True}, [_report(100, 6.0, method="dense"), ref_done], {}),
            "ok": (
                cfg,
                [_report(100, 5.5), _report(120, 4.5, "reached", net_time_s=5.0, net_flops=2e11, done=True)],
                {},
            ),
            "bud": (cfg, [_report(100, 5.5), _report(200, 5.2, "budget", done=True)], {}),
            "asha": (cfg, [_report(100, 5.5, done=True)], {}),
            "div": (cfg, [_report(20, math.inf, "diverged", net_time_s=math.inf, done=True)], {}),
            "err": (cfg, [_report(20, 6.0)], {"error.txt": "Traceback ..."}),
            "inv": (cfg, [_report(0, math.inf, "invalid", done=True)], {}),
            "run": (cfg, [_report(20, 6.0)], {}),
            # Statuses as older experiments stored them read the same.
            "old_inv": (cfg, [_report(0, math.inf, "invalid: train.lr clashes", done=True)], {}),
            "new_bud": (cfg, [_report(100, 5.5), _report(200, 5.2, "not_reached", done=True)], {}),
        },
    )
    # A running trial's last line may be half written: it is skipped, not fatal.
    with (exp / "run_trial_run_8_cfg" / "result.json").open("a") as f:
        f.write('{"step": 40, "eval_lo')
    df = load_results(exp)
    status = dict(zip(df["trial_id"], df["status"]))
    assert status == {
        "ref": "reached",
        "ok": "reached",
        "bud": "not_reached",
        "asha": "stopped_early",
        "div": "diverged",
        "err": "errored",
        "inv": "invalid",
        "run": "unfinished",
        "old_inv": "invalid",
        "new_bud": "not_reached",
    }
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    ok = df.set_index("trial_id").loc["ok"]
    assert ok["speedup"] == pytest.approx(4.0) and ok["flop_speedup"] == pytest.approx(4.0)
    assert ok["steps_to_target"] == pytest.approx(110.0)  # interpolated between the two reports
    assert not ok["projected"] and ok["sparsity.level"] == 0.8
    assert ok["precision"] == "bf16"  # recorded as text, like method and node
    assert df.set_index("trial_id")["speedup"].drop(["ref", "ok"]).isna().all()
    assert df.set_index("trial_id").loc["run", "steps"] == 20
    assert df.attrs["params"] == ["sparsity.level", "sparsity.method"]
    assert sparsesearch.load_results(exp).equals(df)  # the public API


def test_evaluations_replayed_after_a_restore_are_counted_once(tmp_path):
    """A trial whose node died after Ray logged a report but before it registered that report's checkpoint resumes
    from the checkpoint before and reports those steps again: results and history keep the run it continued."""
    cfg = {"sparsity.level": 0.8, "sparsity.method": "rigl"}
    rows = [_report(20, 6.0), _report(40, 5.8), _report(60, 5.7, node="lost"), _report(40, 5.81, node="n2")]
    rows += [_report(60, 5.69, node="n2"), _report(80, 4.5, "reached", net_time_s=4.0, net_flops=4e10, done=True)]
    exp = _write_experiment(tmp_path, {"t": (cfg, rows, {})})
    history = load_history(exp)
    assert list(history["step"]) == [20, 40, 60, 80]
    assert list(history["eval_loss"]) == [6.0, 5.81, 5.69, 4.5]
    assert "lost" not in set(history["node"])
    rec = load_results(exp).iloc[0]
    assert rec["status"] == "reached" and rec["steps"] == 80


def test_ray_state_file_decides_between_stopped_running_and_errored(tmp_path):
    cfg = {"sparsity.level": 0.5}
    exp = _write_experiment(
        tmp_path,
        {
            "a": (cfg, [_report(20, 6.0)], {}),
            "b": (cfg, [_report(20, 6.0)], {}),
            "c": (cfg, [_report(20, 6.0)], {"error.txt": "x"}),
        },
    )
    state = {
        "trial_data": [
            [json.dumps({"trial_id": t, "status": s}), "{}"]
            for t, s in (("a", "TERMINATED"), ("b", "RUNNING"), ("c", "ERROR"))
        ]
    }
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    assert dict(zip(*load_results(exp)[["trial_id", "status"]].T.values)) == {
        "a": "stopped_early",
        "b": "unfinished",
        "c": "errored",
    }


def test_an_experiment_of_the_first_format_reads_as_the_current_one():
    """One place knows the history (``experiment.upgrade_state``): a state written before the format version
    (its target one loss, no price, corpus or family configs) reads in the current shape, with what it never
    recorded as None; a current state keeps everything; a damaged version counts as the first."""
    from sparsesearch.experiment import EXPERIMENT_FORMAT, upgrade_state
    from sparsesearch.search.state import stored_target

    old = upgrade_state({"raw": {}, "target_loss": 5.25})
    assert old["format"] == EXPERIMENT_FORMAT
    assert stored_target(old).losses == (5.25,) and stored_target(old).source == "stored"
    assert old["reference"] is None and old["corpus"] is None and old["family_configs"] is None
    target = {"losses": [6.0, 5.5], "objective": 1, "source": "computed", "path": None}
    new = {"format": EXPERIMENT_FORMAT, "raw": {}, "target": target, "corpus": {"fingerprint": "abc"}}
    assert upgrade_state(new) == new
    assert upgrade_state({**new, "format": "2"})["family_configs"] is None  # not an int: read as the first


def test_not_an_experiment_is_one_clear_error(tmp_path):
    with pytest.raises(ResultsError, match="not a sparsesearch experiment"):
        load_results(tmp_path)
    _write_experiment(tmp_path / "store", {}, "one")
    assert load_results(tmp_path / "store").attrs["name"] == "exp"  # a storage folder with one experiment
    _write_experiment(tmp_path / "store", {}, "two")
    with pytest.raises(ResultsError, match="holds 2 experiments; name one: one, two"):
        load_results(tmp_path / "store")
    proc = run_cli("export", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such directory" in proc.stderr


# ----- end to end: a real smoke experiment ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory, tiny_raw) -> Path:
    tmp = tmp_path_factory.mktemp("results_e2e")
    raw = {
        **tiny_raw,
        "train": {**tiny_raw["train"], "max_steps": 60},
        "search": {
            "num_samples": 4,
            "seed": 3,
            "params": {
                "sparsity.method": {"choice": ["rigl", "set"]},
                "sparsity.level": {"uniform": [0.5, 0.95]},
                "train.lr": {"loguniform": [2e-3, 1e-2]},
            },
            "asha": {"grace_period": 10, "reduction_factor": 2},
            "dense_family": {"sizes": 2, "configs": 1, "depths": []},
            "confirm": {"top": 1, "seeds": 2},
        },
        "tune": {"max_concurrent": 2, "cpus_per_trial": 1, "storage": str(tmp / "runs")},
    }
    spec = tmp / "smoke.yaml"
    spec.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(spec), "--name", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "runs" / "smoke"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_export_and_report_of_a_real_experiment(smoke_experiment, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("export", str(smoke_experiment), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 6 and trials["reference"].sum() == 1
    assert list(trials["role"]).count("dense_family") == 2 and set(trials["size"].dropna()) == {0, 1}
    for col in (
        "trial_id",
        "status",
        "sparsity.method",
        "sparsity.level",
        "train.lr",
        "target_loss",
        "final_eval_loss",
        "steps",
        "time_to_target_s",
        "flop_ratio",
        "net_time_s",
        "net_flops",
        "avg_sparsity",
        "speedup",
        "flop_speedup",
        "frontier_speedup",
        "frontier_flop_speedup",
        "rung0_net_flops",
    ):
        assert col in trials.columns, col
    assert set(trials["status"]) <= set(STATUSES)
    ref = trials[trials["reference"]].iloc[0]
    assert ref["status"] == "reached" and ref["speedup"] == pytest.approx(1.0)
    front_csv = pd.read_csv(out / "pareto.csv")
    assert len(front_csv) >= 1 and (front_csv["status"] == "reached").all()
    payload = json.loads((out / "pareto.json").read_text())
    assert set(payload) == {"experiment", "objective", "maximise", "minimise", "target_loss", "front", "envelopes"}
    assert set(payload["envelopes"]) == {"dense", "sparse", "crossings"} and payload["envelopes"]["dense"]
    assert payload["objective"] == "net_time" and len(payload["front"]) == len(front_csv)
    for p in payload["front"]:
        assert {"trial_id", "method", "avg_sparsity", "net_time_s", "net_flops", "speedup", "params"} <= set(p)
        assert isinstance(p["params"], dict)
    confirmed = pd.read_csv(out / "confirm.csv")  # the best sparse trial and the best dense of each size
    assert list(confirmed["role"]) == ["sparse", "dense_family", "dense_family"] and set(confirmed["seeds"]) == {2}
    w, h = _png_size(out / "pareto.png")
    assert 600 <= w <= 2000 and 400 <= h <= 1500 and (out / "pareto.png").stat().st_size > 10_000
    html = (out / "pareto.html").read_text()
    assert "plotly" in html and "cdn.plot.ly" not in html.split("<body>")[0]  # plotly.js embedded: offline
    assert "sparsity.level = " in html  # parameters in the hover text

    rep = tmp_path / "rep"
    proc = run_cli("report", str(smoke_experiment), "--out", str(rep))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (rep / "report.md").read_text()
    for heading in (
        "## Summary",
        "## Dense family",
        "## Confirmation on more seeds",
        "## Best configurations",
        "## Pareto front",
        "## Loss against compute",
        "## Parameter importances",
        "## Per method",
        "## Where the FLOPs go",
    ):
        assert heading in text, heading
    for image in ("pareto.png", "curves.png"):
        assert f"]({image})" in text and _png_size(rep / image)[0] >= 600
    assert "importances.png" in text or "Not computed:" in text


@pytest.mark.slow
def test_results_of_a_copied_experiment_are_the_same(smoke_experiment, tmp_path):
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(smoke_experiment, copy)
    a, b = load_results(smoke_experiment), load_results(copy)
    pd.testing.assert_frame_equal(a, b)
    proc = run_cli("report", str(copy))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (copy / "report" / "report.md").is_file()


# ----- the two speedups, per rung ----------------------------------------------------------------------------------


def _family(size, config=0, lr=None, hidden=None):
    out = {"role": "dense_family", "family_size": size, "family_config": config}
    out.update({"train.lr": lr} if lr else {})
    out.update({"model.hidden_size": hidden} if hidden else {})
    return out


def _ladder(status, time, flops, rung0=None, **kw):
    """A last report with two rungs (6.0, then the objective 5.0): ``rung0`` = (net time, net FLOPs) or None."""
    rungs = {}
    for i, (loss, got) in enumerate(((6.0, rung0), (5.0, (time, flops) if status == "reached" else None))):
        t, f = got if got else (math.inf, math.inf)
        rungs.update({f"rung{i}_loss": loss, f"rung{i}_reached": int(got is not None), f"rung{i}_steps": 100.0})
        rungs.update({f"rung{i}_train_time_s": t, f"rung{i}_flops": f, f"rung{i}_net_time_s": t})
        rungs[f"rung{i}_net_flops"] = f
    loss = 4.9 if status == "reached" else 5.5
    return _report(100, loss, status, net_time_s=time, net_flops=flops, done=True, **rungs, **kw)


def test_same_size_and_frontier_speedups_have_one_right_answer(tmp_path):
    exp = _write_experiment(
        tmp_path,
        {
            "d0a": (_family(0), [_ladder("reached", 20.0, 8e11, (10.0, 4e11), method="dense")], {}),
            "d0b": (
                _family(0, 1) | {"train.lr": 0.003},
                [_ladder("reached", 16.0, 9e11, (9.0, 5e11), method="dense")],
                {},
            ),
            "d1": (
                _family(1) | {"model.hidden_size": 16},
                [_ladder("reached", 12.0, 6e11, (8.0, 3e11), method="dense")],
                {},
            ),
            "d2": (
                _family(2) | {"model.hidden_size": 8},
                [_ladder("not_reached", 30.0, 9e11, (5.0, 2e11), method="dense")],
                {},
            ),
            "s1": ({"sparsity.level": 0.8}, [_ladder("reached", 8.0, 4e11, (4.0, 2e11))], {}),
            "s2": ({"sparsity.level": 0.9}, [_ladder("not_reached", 40.0, 9e11, None)], {}),
        },
    )
    state = json.loads((exp / "sparsesearch.json").read_text())
    state["target"] = {"losses": [6.0, 5.0], "objective": 1, "source": "spec", "path": None}
    (exp / "sparsesearch.json").write_text(json.dumps(state))
    df = load_results(exp).set_index("trial_id")
    assert list(df["role"]) == ["dense_family"] * 4 + ["sparse"] * 2
    s1 = df.loc["s1"]
    # Objective rung: same-size best time min(20, 16), FLOPs min(8e11, 9e11); frontier over every reached size.
    assert (s1["speedup"], s1["flop_speedup"]) == pytest.approx((16 / 8, 8e11 / 4e11))
    assert (s1["frontier_speedup"], s1["frontier_flop_speedup"]) == pytest.approx((12 / 8, 6e11 / 4e11))
    # The easier rung: the size-2 model reached it too, and is the frontier there.
    assert (s1["rung0_speedup"], s1["rung0_flop_speedup"]) == pytest.approx((9 / 4, 4e11 / 2e11))
    assert (s1["rung0_frontier_speedup"], s1["rung0_frontier_flop_speedup"]) == pytest.approx((5 / 4, 2e11 / 2e11))
    assert s1["rung1_flop_speedup"] == pytest.approx(s1["flop_speedup"])
    assert math.isnan(df.loc["s2", "speedup"]) and math.isnan(df.loc["s2", "rung0_speedup"])
    assert list(df.index[df["reference"]]) == ["d0b"]  # the best same-size dense by the objective (net time)
    assert df.loc["d1", "size"] == 1 and math.isnan(df.loc["s1", "size"])
    assert "family_size" not in df.attrs["params"] and "model.hidden_size" in df.attrs["params"]


def test_confirmation_pairs_speedups_by_seed(tmp_path):
    from scipy import stats

    from sparsesearch.results.confirm import confirm_configs, confirm_picks, confirmation_table, load_confirmation

    search = {
        "d0": (_family(0), [_report(100, 4.9, "reached", net_flops=9e11, done=True, method="dense")], {}),
        "d1": (_family(1, hidden=16), [_report(100, 4.9, "reached", net_flops=8e11, done=True, method="dense")], {}),
        "s1": ({"sparsity.level": 0.8}, [_report(100, 4.9, "reached", net_flops=4e11, done=True)], {}),
        "s2": ({"sparsity.level": 0.9}, [_report(100, 4.9, "reached", net_flops=6e11, net_time_s=99.0, done=True)], {}),
    }
    exp = _write_experiment(tmp_path, search)
    df = load_results(exp)
    picks = confirm_picks(df, 1, "net_time")
    assert picks == ["s1", "d0", "d1"]  # the best sparse trial, then the best dense trial of each size
    configs = confirm_configs(df, picks, seed=0, seeds=3)
    assert [(c["confirm_of"], c["train.seed"]) for c in configs][:3] == [("s1", 1), ("s1", 2), ("s1", 3)]
    flops = {"s1": [5e11, 6e11, 7e11], "d0": [10e11, 12e11, 14e11], "d1": [8e11, 9e11, 13e11]}
    runs = {
        f"{t}_{seed}": (
            {**df.attrs["configs"][t], "train.seed": seed, "confirm_of": t},
            [_report(100, 4.9, "reached", net_flops=flops[t][seed - 1], done=True)],
            {},
        )
        for t in picks
        for seed in (1, 2, 3)
    }
    _write_experiment(exp, runs, name="confirm")
    table = confirmation_table(load_confirmation(exp), df).set_index("trial_id")
    s1 = table.loc["s1"]
    assert s1["reached"] == 3 and s1["net_flops"] == pytest.approx(6e11)
    half = stats.t.ppf(0.975, 2) * 1e11 / 3**0.5  # sd of (5, 6, 7)e11 is 1e11
    assert (s1["net_flops_lo"], s1["net_flops_hi"]) == pytest.approx((6e11 - half, 6e11 + half))
    assert s1["flop_speedup"] == pytest.approx(2.0) and s1["flop_speedup_hi"] == pytest.approx(2.0)  # 2x every seed
    frontier = [8 / 5, 9 / 6, 13 / 7]  # each seed against the best dense run of that seed
    assert s1["frontier_flop_speedup"] == pytest.approx(math.prod(frontier) ** (1 / 3))  # their geometric mean
    assert s1["frontier_flop_speedup_pairs"] == 3
    assert math.isnan(table.loc["d0", "flop_speedup"])  # dense configurations get no speedup


def test_ratios_average_geometrically_with_a_log_scale_t_interval():
    """One statistics home for speedups (confirmation and study alike): 2x and 0.5x average to 1x, the interval is
    the t interval of the logs mapped back (positive, asymmetric), one value has no interval, a non-positive
    ratio gives no number."""
    from sparsesearch.results.stats import mean_ci, ratio_ci

    assert ratio_ci([2.0, 0.5])[0] == pytest.approx(1.0)
    values = [1.2, 1.5, 1.1, 1.9]
    mean, lo, hi = ratio_ci(values)
    m, lo_log, hi_log = mean_ci([math.log(v) for v in values])
    assert (mean, lo, hi) == pytest.approx((math.exp(m), math.exp(lo_log), math.exp(hi_log)))
    assert 0 < lo < mean < hi and hi - mean > mean - lo  # multiplicative noise: longer above
    one = ratio_ci([1.7])
    assert one[0] == pytest.approx(1.7) and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in ratio_ci([1.0, 0.0])) and all(math.isnan(v) for v in ratio_ci([]))
