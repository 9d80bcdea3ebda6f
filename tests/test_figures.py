"""Figures and files of export and report: one shared plotly.js per folder, labelled lines, a Pareto plot coloured
by method and role, honest importances and Optuna's views of the study. Experiments are written by hand (no
training): a few trials of two sparse methods and a dense family of three sizes, and an Optuna study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from sparsesearch.results import plots
from sparsesearch.results import report as report_module
from sparsesearch.results.export import export
from sparsesearch.results.importances import MIN_TRIALS, RELIABLE_TRIALS, read_study
from sparsesearch.results.pareto import front
from sparsesearch.results.report import report
from sparsesearch.results.table import load_history, load_results

TARGET = 5.0


def _row(step: int, loss: float, status: str, net_time: float, sparsity: float, method: str) -> dict:
    """One evaluation as a trial reports it (``result.json`` line)."""
    flops = 1e9 * step
    return {
        "step": step,
        "budget": step,
        "eval_loss": loss,
        "train_loss": loss,
        "train_time_s": step * 0.1,
        "flops": flops * (1 - sparsity / 2),
        "dense_flops": flops,
        "flop_ratio": 1 - sparsity / 2,
        "net_time_s": net_time,
        "net_flops": net_time * 1e10,
        "time_to_target_s": net_time,
        "objective": net_time,
        "avg_sparsity": sparsity,
        "target_loss": TARGET,
        "reached": int(status == "reached"),
        "projected": int(status != "reached"),
        "diverged": 0,
        "status": status,
        "method": method,
        "node": "n1",
        "precision": "bf16",
        "done": status != "running",
    }


def _family(size: int, config: int = 0, hidden: int = 32) -> dict:
    return {"role": "dense_family", "family_size": size, "family_config": config, "model.hidden_size": hidden}


def _sparse(method: str, level: float) -> dict:
    return {"sparsity.method": method, "sparsity.level": level, "train.lr": 3e-3}


# trial id -> (config, last status, net time, sparsity, method)
TRIALS = {
    "d0a": (_family(0), "reached", 20.0, 0.0, "dense"),
    "d0b": (_family(0, 1), "reached", 16.0, 0.0, "dense"),  # the best same-size dense
    "d1": (_family(1, hidden=16), "reached", 12.0, 0.0, "dense"),  # the dense frontier
    "d2": (_family(2, hidden=8), "not_reached", 30.0, 0.0, "dense"),
    "r1": (_sparse("rigl", 0.8), "reached", 8.0, 0.8, "rigl"),
    "r2": (_sparse("rigl", 0.9), "reached", 10.0, 0.9, "rigl"),
    "r3": (_sparse("rigl", 0.6), "running", 14.0, 0.6, "rigl"),  # stopped early by the scheduler
    "s1": (_sparse("set", 0.7), "reached", 9.0, 0.7, "set"),
    "s2": (_sparse("set", 0.5), "not_reached", 25.0, 0.5, "set"),
}


def _experiment(root: Path) -> Path:
    exp = root / "exp"
    exp.mkdir(parents=True)
    family = [{"index": i, "hidden": h, "flops_per_step": 1e9 * h / 32} for i, h in enumerate((32, 16, 8))]
    state = {"name": "exp", "target_loss": TARGET, "spec_path": "x.yaml", "dense_family": family}
    state["raw"] = {"search": {"objective": "net_time"}}
    (exp / "sparsesearch.json").write_text(json.dumps(state))
    for n, (tid, (cfg, status, net_time, sparsity, method)) in enumerate(TRIALS.items(), 1):
        d = exp / f"run_trial_{tid}_{n}_cfg"
        d.mkdir()
        (d / "params.json").write_text(json.dumps(cfg))
        rows = [_row(50, 6.0, "running", net_time, sparsity, method)]
        rows.append(_row(100, 4.9 if status == "reached" else 5.4, status, net_time, sparsity, method))
        (d / "result.json").write_text("".join(json.dumps({**r, "trial_id": tid, "config": cfg}) + "\n" for r in rows))
    return exp


def _study(path: Path, complete: int, pruned: int = 2) -> None:
    """An Optuna study as the search leaves it: completed trials (reached the target) and pruned ones."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="exp", storage=f"sqlite:///{path}", direction="minimize")
    dists = {
        "sparsity.method": CategoricalDistribution(["rigl", "set"]),
        "sparsity.level": FloatDistribution(0.5, 0.95),
        "train.lr": FloatDistribution(1e-3, 1e-2, log=True),
    }
    trials = []
    for i in range(complete + pruned):
        params = {
            "sparsity.method": ["rigl", "set"][i % 2],
            "sparsity.level": 0.5 + 0.03 * i,
            "train.lr": 1e-3 * (1 + i % 9),
        }
        if i < complete:
            trials.append(
                create_trial(value=20.0 - i, params=params, distributions=dists, user_attrs={"status": "reached"})
            )
        else:
            trials.append(
                create_trial(
                    state=TrialState.PRUNED,
                    params=params,
                    distributions=dists,
                    intermediate_values={50: 6.0},
                    user_attrs={"status": "stopped_early"},
                )
            )
    study.add_trials(trials)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """The experiment with a study of enough completed trials for reliable importances."""
    exp = _experiment(tmp_path_factory.mktemp("figures"))
    _study(exp / "study.db", RELIABLE_TRIALS + 2)
    return exp


@pytest.fixture(scope="module")
def reported(experiment, tmp_path_factory) -> Path:
    """Its report folder (which holds the export files too)."""
    out = tmp_path_factory.mktemp("report")
    report(experiment, out)
    return out


def _study_sections(tmp_path: Path, complete: int | None) -> str:
    """The report's importance and study sections for a study of ``complete`` completed trials (None: no study),
    without the rest of the report (its figures take seconds)."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "study.db"
    if complete is not None:
        _study(path, complete)
    record, problem = read_study(path)
    lines = report_module._importances(record, problem, "net_time", tmp_path)
    return "\n".join(lines + report_module._study_views(record, problem, "net_time", tmp_path))


def test_html_files_load_one_small_plotly_bundle_per_folder(experiment, reported, tmp_path):
    exported = export(experiment, tmp_path / "export")
    assert exported[plots.PLOTLY_JS] == tmp_path / "export" / "plotly.min.js"
    for folder, expected in (
        (tmp_path / "export", {"pareto.html"}),
        (reported, {"pareto.html", "study_history.html", "study_parallel.html", "study_slice.html"}),
    ):
        pages = {p.name for p in folder.glob("*.html")}
        assert pages == expected
        assert [p.name for p in folder.glob("*.js")] == ["plotly.min.js"]
        assert (folder / "plotly.min.js").stat().st_size > 1_000_000  # the whole library: opens offline
        for name in pages:
            html = (folder / name).read_text()
            assert (folder / name).stat().st_size < 200_000, name
            assert '<script charset="utf-8" src="plotly.min.js"></script>' in html, name
            assert "cdn.plot.ly" not in html, name
    # a bundle an older plotly left is replaced, not kept beside figures it may not draw
    (tmp_path / "export" / "plotly.min.js").write_text("/* plotly.js v0 */")
    export(experiment, tmp_path / "export")
    assert (tmp_path / "export" / "plotly.min.js").stat().st_size > 1_000_000


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _every_line_in_legend(ax) -> None:
    legend = _legend(ax)
    for line in ax.get_lines():
        assert not line.get_label().startswith("_") and line.get_label() in legend, line.get_label()


def test_pareto_plot_colours_methods_and_draws_the_dense_family_and_its_frontier(experiment):
    df = load_results(experiment)
    fr = front(df)
    fig = plots.pareto_figure(df, fr, by="net_time")
    ax = fig.axes[0]
    legend = _legend(ax)
    assert "rigl: reached (2)" in legend and "rigl: not reached, projected (1)" in legend
    assert "set: reached (1)" in legend and "set: not reached, projected (1)" in legend
    assert any(t.startswith("dense family, labelled by size (2") for t in legend)
    assert "dense frontier: best dense of any size (size 1, 12)" in legend
    assert "best same-size dense (size 0)" in legend and "same-size dense (16)" in legend
    assert "2x faster than the same-size dense" in legend and any(t.startswith("Pareto front") for t in legend)
    _every_line_in_legend(ax)
    sizes = sorted(t.get_text() for t in ax.texts if t.get_text().startswith("size"))
    assert sizes == ["size 0", "size 1"]  # the best reached configuration of each size
    colours = plots.method_colours(df)
    assert set(colours) == {"rigl", "set"} and len(set(colours.values())) == 2
    # one description, two renderings: the interactive figure has exactly the PNG's legend, in its order
    assert [t.name for t in plots.pareto_plotly(df, fr, by="net_time").data] == legend
    assert legend == [layer.name for layer in plots.pareto_layers(df, fr, by="net_time")]


def test_loss_curves_label_the_target_line(experiment):
    df = load_results(experiment)
    labels = {"d0b": "best same-size dense", "r1": "trial 5: rigl 0.80"}
    fig = plots.curves_figure(load_history(experiment), ["d0b", "r1"], labels, TARGET)
    ax = fig.axes[0]
    assert "target loss 5.000" in _legend(ax)
    _every_line_in_legend(ax)
    assert df.attrs["target_loss"] == TARGET


def test_drawing_figures_leaves_a_notebooks_matplotlib_backend_alone(experiment, tmp_path):
    """A notebook user's backend (inline, widget, ...) must survive ``import``, drawing and saving: the figures
    are made without pyplot, so no backend is ever chosen for them."""
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import sparsesearch.results.plots as p;"
        "from sparsesearch.results.table import load_results, load_history;"
        "from sparsesearch.results.pareto import front;"
        f"df = load_results({str(experiment)!r}); fig = p.pareto_figure(df, front(df));"
        f"fig.savefig({str(tmp_path / 'f.png')!r});"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg" and (tmp_path / "f.png").stat().st_size > 0


def test_importances_state_their_trial_count_and_warn_below_the_minimum(reported, tmp_path):
    text = (reported / "report.md").read_text()
    n = RELIABLE_TRIALS + 2
    assert f"fANOVA over {n} completed trials" in text and "Unreliable" not in text
    assert "Only trials that reached the target are completed in the study" in text
    few = _study_sections(tmp_path, RELIABLE_TRIALS - 5)
    assert f"**Unreliable: only {RELIABLE_TRIALS - 5} completed trials** (fewer than {RELIABLE_TRIALS})" in few
    assert "![Parameter importances](importances.png)" in few  # still drawn, with the warning


def test_study_views_are_linked_with_enough_trials_and_skipped_with_a_note_otherwise(reported, experiment, tmp_path):
    text = (reported / "report.md").read_text()
    for page in ("study_history.html", "study_parallel.html", "study_slice.html"):
        assert f"]({page})" in text and (reported / page).is_file()
    few = _study_sections(tmp_path / "few", MIN_TRIALS - 1)
    assert f"Not drawn: {MIN_TRIALS - 1} completed trials with a finite objective" in few
    assert "Not drawn: no Optuna study at" in _study_sections(tmp_path, None)
    assert not list(tmp_path.rglob("study_*.html"))
    # a damaged study.db: the whole report still comes out, with one line in place of each study section
    exp = tmp_path / "damaged"
    shutil.copytree(experiment, exp, ignore=shutil.ignore_patterns("report", "export"))
    (exp / "study.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    text = report(exp, tmp_path / "rep").read_text()
    assert text.count("study.db is not a readable Optuna study (truncated or overwritten?)") == 2
    assert "Not drawn: study.db is not" in text and not list((tmp_path / "rep").glob("study_*.html"))


@pytest.mark.parametrize(("crossed", "noted"), [(60, True), (95, False)])
def test_the_report_says_when_the_defining_dense_run_crosses_an_auto_rung_early(tmp_path, crossed, noted):
    """The same-seed dense configuration whose run defined an ``auto`` rung crossing it well before the defining
    step (more than one evaluation interval) means a plateau: the report says so, and how to read costs there."""
    exp = _experiment(tmp_path)
    state = json.loads((exp / "sparsesearch.json").read_text())
    state["raw"] = {"search": {"objective": "net_time"}, "target": {"loss": "auto", "dense_steps": 100}}
    (exp / "sparsesearch.json").write_text(json.dumps(state))
    result = next(exp.glob("run_trial_d0a_*")) / "result.json"
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    rows[-1].update(rung0_loss=4.9, rung0_reached=1, rung0_steps=crossed, rung0_net_flops=1e12)
    result.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = report(exp, tmp_path / "out").read_text()
    assert ("**On a plateau.**" in text) is noted
    if noted:
        assert f"crossed rung 0 (defined at step 100) at step {crossed}" in text


@pytest.mark.parametrize(("high", "warned"), [(3.1e-3, True), (1e-2, False)])
def test_an_optimum_at_the_edge_of_its_range_is_flagged(tmp_path, high, warned):
    """The best sparse trial's learning rate (3e-3) at the top of a range that ends at 3.1e-3 (log scale: 97% of
    the way) may not be the optimum: the console summary and the report say so; inside [1e-3, 1e-2] they do not.
    The dense family's first configuration uses the spec's own rate (2e-3), inside either range."""
    from sparsesearch.results.summary import summarize

    exp = _experiment(tmp_path)
    state = json.loads((exp / "sparsesearch.json").read_text())
    state["raw"] = {"search": {"objective": "net_time", "params": {"train.lr": {"loguniform": [1e-3, high]}}}}
    (exp / "sparsesearch.json").write_text(json.dumps(state))
    text = report(exp, tmp_path / "out").read_text()
    lines = summarize(exp)
    flagged = "the best sparse trial (trial 5) has train.lr=0.003 at the upper edge of its range [0.001, 0.0031]"
    assert (flagged in text) is warned and any(flagged in line for line in lines) is warned
    assert "dense size" not in "".join(line for line in lines if line.startswith("warning"))


@pytest.mark.parametrize(("grid", "warned"), [([2e-3, 3e-3, 4e-3], True), ([1e-3, 2e-3, 3e-3], False)])
def test_a_dense_sizes_best_rate_at_the_edge_of_its_grid_is_flagged(tmp_path, grid, warned):
    """Size 0's best configuration trains at the spec's rate (2e-3): the lowest of a grid from 2e-3 up (the
    optimum may be lower), the middle of one around it."""
    exp = _experiment(tmp_path)
    state = json.loads((exp / "sparsesearch.json").read_text())
    state["dense_family"][0]["lrs"] = grid
    (exp / "sparsesearch.json").write_text(json.dumps(state))
    text = report(exp, tmp_path / "out").read_text()
    flagged = "the best dense size 0 configuration (trial 2) has train.lr=0.002 at the lower edge of its grid"
    assert (flagged in text) is warned


def test_the_report_draws_both_frontiers_and_pareto_json_holds_them(reported):
    text = (reported / "report.md").read_text()
    assert "## Frontier against frontier" in text and (reported / "envelope.png").stat().st_size > 10_000
    assert "Best loss at a few budgets" in text
    envelopes = json.loads((reported / "pareto.json").read_text())["envelopes"]
    assert envelopes["dense"] and envelopes["sparse"]
    # The hand-made trials: the best dense loss at the last budget is the reached dense runs' 4.9.
    assert min(loss for _, loss in envelopes["dense"]) == pytest.approx(4.9)
