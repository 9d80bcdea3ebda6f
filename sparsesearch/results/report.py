"""``sparsesearch report``: a markdown report of an experiment, with its figures, from stored results."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..definitions import REACHED, STATUS_HELP, STATUSES, UNFINISHED
from ..experiment import CONFIG_KEY, DENSE_FAMILY, SPARSE, STUDY_FILE, base_raw, rung_key, trial_spec
from ..model.flops import StepFlops, step_flops
from ..model.shape import ModelShape
from ..sparsity.distributions import layer_densities
from ..spec import spec_from_dict
from . import plots
from .confirm import ci_text, confirmation_table, load_confirmation
from .edges import edge_warnings
from .envelope import budgets, envelopes
from .export import export
from .format import missing, number, params_text
from .importances import MIN_TRIALS, RELIABLE_TRIALS, StudyRecord, importances, read_study, varying_params
from .pareto import OBJECTIVES, front
from .table import experiment_dir, load_history, load_reported, load_state, spec_value

_FILES = [
    "## Files",
    "",
    "- `trials.csv`: every trial, its parameters, status and metrics",
    "- `pareto.csv`, `pareto.json`: the front (`pareto.json` also holds the dense and sparse envelopes)",
    "- `envelope.png`: the dense frontier against the sparse frontier, loss against FLOPs",
    "- `pareto.png`, `pareto.html`: the front, static and interactive",
    "- `plotly.min.js`: plotly.js, loaded by every HTML file of this folder (keep it beside them to open them offline)",
    "- `study_history.html`, `study_parallel.html`, `study_slice.html`: Optuna's views of the study (when drawn)",
    "",
]


def report(path: str | Path, out: str | Path | None = None, *, by: str | None = None) -> Path:
    """Write ``report.md`` and its figures for the experiment at ``path`` into ``out`` (default
    ``<experiment>/report``); returns the report's path. ``by``: net_time or net_flops (default: the
    search's objective)."""
    exp = experiment_dir(path)
    state = load_state(exp)
    df = load_reported(exp)
    by = by or df.attrs.get("objective", "net_time")
    out = Path(out) if out is not None else exp / "report"
    out.mkdir(parents=True, exist_ok=True)
    export(exp, out, by=by)
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    fr = front(df, by)
    reached = df[(df["status"] == REACHED) & (df["role"] == SPARSE)].sort_values(OBJECTIVES[by])
    best = reached.iloc[0] if len(reached) else None
    lines = [
        f"# Experiment `{df.attrs['name']}`",
        "",
        f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from `{exp}` by `sparsesearch report`. "
        "Every number comes from the stored trial results; nothing was re-trained.",
        "",
    ]
    lines += _summary(df, state, by)
    lines += _dense_family(df, state)
    lines += _best(reached, by, params)
    lines += _rungs(df, out)
    lines += _confirmation(exp, df)
    lines += _pareto(fr, by, params)
    history = load_history(exp)
    lines += _envelope(df, history, out)
    lines += _curves(df, fr, history, out)
    record, problem = read_study(exp / STUDY_FILE)
    study_objective = df.attrs.get("objective", "net_time")
    lines += _importances(record, problem, study_objective, out)
    lines += _study_views(record, problem, study_objective, out)
    lines += _per_method(df)
    lines += ["## Where the FLOPs go", ""]
    config = df.attrs["configs"].get(best["trial_id"], {}) if best is not None else {}
    lines += _flops_section(state, best, config) + [""] + _FILES
    path_md = out / "report.md"
    path_md.write_text("\n".join(lines))
    return path_md


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _summary(df: pd.DataFrame, state: dict, by: str) -> list[str]:
    raw = state.get("raw", {})
    search, target_cfg = raw.get("search") or {}, raw.get("target") or {}
    counts = df["status"].value_counts()
    if target_cfg.get("loss", "auto") == "auto":
        defined = f"the loss a dense run reaches in {target_cfg.get('dense_steps', 200)} steps"
    else:
        defined = "given in the spec"
    lines = [
        "## Summary",
        "",
        f"- Spec: `{state.get('spec_path', '?')}`; objective `{by}` (net time = time to target x FLOP "
        "ratio; net FLOPs = FLOPs actually needed to the target); sampler "
        f"`{search.get('sampler', 'tpe')}`, {search.get('num_samples', '?')} sampled sparse trials + "
        f"{int((df['role'] == DENSE_FAMILY).sum())} dense family trials ({len(state.get('dense_family') or []) or 1} "
        "size(s)).",
        f"- Target: held-out MLM loss **{number(df.attrs.get('target_loss'), '.4f')}** ({defined})"
        + (
            "; the ladder of rungs: " + ", ".join(f"{v:.4f}" for v in df.attrs["target_losses"]) + "."
            if len(df.attrs.get("target_losses", [])) > 1
            else "."
        ),
        f"- {len(df)} trials: "
        + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES if counts.get(s, 0))
        + ".",
        *_data_and_price(df, state),
        *(f"- **Warning**: {w}." for w in edge_warnings(df, state, by)),
        f"- Compute spent: {number(df['train_time_s'].sum(), '.0f')} s of training, "
        f"{number(df['flops'].sum(), '.3g')} FLOPs; nodes used: {df['node'].dropna().nunique()}; precision: "
        f"{_precisions(df)}.",
        "",
    ]
    lines += _table(
        ["status", "trials", "meaning"],
        [[s, str(counts.get(s, 0)), STATUS_HELP[s]] for s in STATUSES if counts.get(s, 0)],
    ) + [""]
    if counts.get(UNFINISHED, 0):
        lines += [
            f"**{counts[UNFINISHED]} trial(s) are unfinished**: the search is still running or was "
            "interrupted; their numbers are the latest reports.",
            "",
        ]
    return lines


def _data_and_price(df: pd.DataFrame, state: dict) -> list[str]:
    """What the experiment trained on (the corpus fingerprint) and what priced its net time (the reference)."""
    corpus, ref = state.get("corpus") or {}, state.get("reference") or {}
    fingerprint = corpus.get("fingerprint")
    lines = [
        f"- Data: {corpus.get('source', 'not recorded')}; corpus fingerprint `{fingerprint}`."
        if fingerprint
        else "- Data: the corpus fingerprint was not recorded (an experiment older than fingerprints)."
    ]
    seen = {str(c) for c in df.get("corpus", pd.Series(dtype=object)).dropna() if str(c)}
    if fingerprint and seen - {fingerprint}:
        lines.append(f"- **Warning**: trials trained on other corpora too ({', '.join(sorted(seen - {fingerprint}))}).")
    if ref.get("dense_step_s"):
        machine = ref.get("machine") or "a machine not recorded"
        lines.append(
            f"- Price: net times are in dense-equivalent seconds of a dense step of the spec's model that took "
            f"{ref['dense_step_s'] * 1e3:.0f} ms on {machine}."
        )
    return lines


SPEEDUPS_EXPLAINED = (
    "Two speedups answer two questions. Against the **same-size dense** model (the spec's own model, trained "
    "densely with the best of its tuned configurations): does sparse training beat dense training of this model? "
    "Against the **dense frontier** (the best dense model of any size in the family that reached the same "
    "target): does it beat simply training a smaller dense model? Each is the best dense run's net time (or net "
    "FLOPs) over the trial's; a FLOP speedup is a ratio of FLOPs, a time speedup one of net times (wall time x "
    "FLOP ratio)."
)


def _dense_family(df: pd.DataFrame, state: dict) -> list[str]:
    lines = ["## Dense family", "", SPEEDUPS_EXPLAINED, ""]
    dense = df[df["role"] == DENSE_FAMILY]
    if dense.empty:
        return lines + ["No dense family trial has reported yet; speedups cannot be computed.", ""]
    sizes = {s["index"]: s for s in state.get("dense_family") or []}
    spec = spec_from_dict(base_raw(state["raw"]))
    losses = df.attrs.get("target_losses", [])
    rows = []
    for size, g in dense.groupby("size", sort=True):
        info = sizes.get(int(size), {})
        ok = g[g["status"] == REACHED]
        best = ok.loc[ok["net_flops"].idxmin()] if len(ok) else None
        lr = "–" if best is None else number(spec_value(best, "train.lr", spec), ".3g")
        lrs = info.get("lrs") or []
        row = [
            str(int(size)),
            str(info.get("layers") or spec.model.num_layers),
            str(info.get("hidden", "–")),
            number(info.get("flops_per_step", math.nan) / 1e9, ".2f"),
            f"{min(lrs):.3g}-{max(lrs):.3g}" if lrs else "–",
            f"{len(ok)}/{len(g)}",
            lr,
            number(best["steps_to_target"] if best is not None else None, ".0f"),
            number(best["net_time_s"] if best is not None else None, ".1f", " s"),
            number(best["net_flops"] if best is not None else None, ".3g"),
        ]
        row += [number(g[rung_key(i, "net_flops")].min(), ".3g") for i in range(len(losses))] if len(losses) > 1 else []
        rows.append(row)
    header = [
        "size",
        "layers",
        "hidden",
        "GFLOP/step",
        "lr range",
        "reached",
        "best lr",
        "steps",
        "net time",
        "net FLOPs",
    ]
    header += [f"net FLOPs to {v:.3f}" for v in losses] if len(losses) > 1 else []
    lines += _table(header, rows) + [""]
    return lines + [
        "Size 0 is the spec's own model; each row shows the configuration with the fewest net FLOPs to the target "
        "and its learning rate, from the size's grid (lr range).",
        "",
        *_plateau_note(dense, df.attrs.get("configs") or {}, state),
    ]


def _plateau_note(dense: pd.DataFrame, configs: dict[str, dict], state: dict) -> list[str]:
    """Where the held-out loss is flat enough that a target's cost is uncertain: the run that defined an ``auto``
    rung (the spec's own dense configuration, same seed) crossed it well before the step that defines it."""
    spec = spec_from_dict(base_raw(state["raw"]))
    if spec.target.loss != "auto":
        return []
    own = [r for _, r in dense.iterrows() if configs.get(r["trial_id"], {}).get(CONFIG_KEY) == 0 and r["size"] == 0]
    if not own:
        return []
    early = []
    for i, step in enumerate(spec.target.rung_steps):
        crossed = own[0].get(rung_key(i, "steps"))
        if not missing(crossed) and crossed < step - spec.train.eval_every:
            early.append(f"rung {i} (defined at step {step}) at step {crossed:.0f}")
    if not early:
        return []
    return [
        "**On a plateau.** The spec's own dense configuration, whose run defined the `auto` rungs, crossed "
        + "; ".join(early)
        + ": the held-out loss there is flat and noisy (a constant learning rate), so a cost to that rung is "
        "uncertain by about the steps between the crossing and the defining step. Compare such costs over seeds "
        "(`search.confirm`) and read a speedup there as a range.",
        "",
    ]


def _confirmation(exp: Path, df: pd.DataFrame) -> list[str]:
    table = confirmation_table(load_confirmation(exp), df)
    if table.empty:
        return []
    rows = []
    for _, r in table.iterrows():
        dense = r["role"] == DENSE_FAMILY
        rows.append(
            [
                str(r["trial"]),
                f"dense size {int(r['size'])}" if dense else f"{r['method']} {r['avg_sparsity']:.2f}",
                f"{r['reached']}/{r['seeds']}",
                ci_text(r, "net_flops", ".3g"),
                ci_text(r, "net_time_s", ".1f"),
                "" if dense else ci_text(r, "flop_speedup", ".2f"),
                "" if dense else ci_text(r, "frontier_flop_speedup", ".2f"),
                "" if dense else ci_text(r, "speedup", ".2f"),
                "" if dense else ci_text(r, "frontier_speedup", ".2f"),
            ]
        )
    header = [
        "trial",
        "configuration",
        "reached",
        "net FLOPs",
        "net time (s)",
        "FLOP speedup vs same-size",
        "vs frontier",
        "time speedup vs same-size",
        "vs frontier",
    ]
    return (
        [
            "## Confirmation on more seeds",
            "",
            "The search picked its winners on one seed. Here they, and the best dense configuration of each size, "
            "ran again on further seeds: mean [95% t-based confidence interval] over the seeds that reached the "
            "target; speedups are paired by seed (each seed's sparse run against the dense runs of that seed). An "
            "interval that excludes 1 is a difference at the 5% level.",
            "",
        ]
        + _table(header, rows)
        + [""]
    )


def _rungs(df: pd.DataFrame, out: Path) -> list[str]:
    """Per rung of the target ladder: the best sparse trial's speedups over the same-size dense and the frontier."""
    losses = df.attrs.get("target_losses", [])
    if len(losses) < 2:
        return []
    sparse = df[df["role"] == SPARSE]
    rows, points = [], []
    for i, loss in enumerate(losses):
        ok = sparse[sparse[rung_key(i, "net_flops")].notna()]
        best = ok.loc[ok[rung_key(i, "net_flops")].idxmin()] if len(ok) else None
        cells = [rung_key(i, k) for k in ("flop_speedup", "frontier_flop_speedup", "speedup", "frontier_speedup")]
        rows.append(
            [f"{loss:.4f}", str(len(ok)), str(best["trial"]) if best is not None else "–"]
            + [number(best[c] if best is not None else None, ".2f", "x") for c in cells]
        )
        if best is not None:
            points.append((loss, best[cells[0]], best[cells[1]]))
    lines = ["## Speedup per target rung", ""]
    lines += _table(
        [
            "target loss",
            "sparse trials reaching it",
            "best (fewest net FLOPs)",
            "FLOP speedup vs same-size",
            "vs frontier",
            "time speedup vs same-size",
            "vs frontier",
        ],
        rows,
    ) + [""]
    if points:
        plots.rungs_png(points, out / "rungs.png")
        lines += [
            "![Speedup per rung](rungs.png)",
            "",
            "A harder target (lower loss, to the right) needs sustained training: a speedup that holds only at "
            "the easiest rung is an early-training effect.",
            "",
        ]
    return lines


# The cells of a trial in the report's tables, by column.
_CELLS: dict[str, Callable[[pd.Series], str]] = {
    "trial": lambda r: str(r["trial"]),
    "method": lambda r: str(r["method"]),
    "sparsity": lambda r: number(r["avg_sparsity"], ".3f"),
    "net time": lambda r: number(r["net_time_s"], ".1f", " s"),
    "speedup": lambda r: number(r["speedup"], ".2f", "x"),
    "frontier speedup": lambda r: number(r["frontier_speedup"], ".2f", "x"),
    "frontier FLOP speedup": lambda r: number(r["frontier_flop_speedup"], ".2f", "x"),
    "net FLOPs": lambda r: number(r["net_flops"], ".3g"),
    "FLOP speedup": lambda r: number(r["flop_speedup"], ".2f", "x"),
    "steps": lambda r: number(r["steps_to_target"], ".0f"),
    "FLOP ratio": lambda r: number(r["flop_ratio"], ".3f"),
}


def _trials_table(df: pd.DataFrame, columns: list[str], params: list[str]) -> list[str]:
    rows = [[*(_CELLS[c](r) for c in columns), params_text(r, params, quote="`") or "–"] for _, r in df.iterrows()]
    return _table([*columns, "parameters"], rows) + [""]


def _best(reached: pd.DataFrame, by: str, params: list[str]) -> list[str]:
    lines = [f"## Best configurations (by {by})", ""]
    if reached.empty:
        return lines + ["No sparse trial reached the target yet.", ""]
    columns = [
        "trial",
        "method",
        "sparsity",
        "net time",
        "speedup",
        "frontier speedup",
        "net FLOPs",
        "FLOP speedup",
        "frontier FLOP speedup",
        "steps",
        "FLOP ratio",
    ]
    return (
        lines
        + _trials_table(reached.head(5), columns, params)
        + [
            "Speedups against the same-size dense and against the dense frontier, as explained above. Net time is "
            "wall-clock and noisy on a shared machine; net FLOPs are deterministic.",
            "",
        ]
    )


def _pareto(fr: pd.DataFrame, by: str, params: list[str]) -> list[str]:
    lines = [
        "## Pareto front: sparsity vs. " + ("net time" if by == "net_time" else "net FLOPs"),
        "",
        "![Pareto front](pareto.png)",
        "",
        "Dots: sparse trials that reached the target, one colour per method; crosses: trials that did not (their "
        "projected value, never on the front); black squares: the dense family's other sizes and configurations, "
        "the best of each size labelled with its size; black line: the dense frontier (the best dense model of any "
        "size); red star and dashed line: the best same-size dense; dotted line: half of it; blue rings and line: "
        "the non-dominated trials (less net time, more sparsity). Interactive version: [pareto.html](pareto.html).",
        "",
    ]
    if len(fr):
        lines += _trials_table(fr, ["trial", "method", "sparsity", "net time", "speedup", "net FLOPs"], params)
    return lines


def _curves(df: pd.DataFrame, fr: pd.DataFrame, history: pd.DataFrame, out: Path) -> list[str]:
    ids = list(fr["trial_id"])
    ref = df[df["reference"]]
    if len(ref) and ref.iloc[0]["trial_id"] not in ids:
        ids = [ref.iloc[0]["trial_id"], *ids]
    if not ids or history.empty:
        return []
    labels = {
        r["trial_id"]: (
            "best same-size dense" if r["reference"] else f"trial {r['trial']}: {r['method']} {r['avg_sparsity']:.2f}"
        )
        for _, r in df.iterrows()
    }
    plots.curves_png(history, ids, labels, df.attrs.get("target_loss"), out / "curves.png")
    return [
        "## Loss against compute",
        "",
        "![Loss against FLOPs](curves.png)",
        "",
        "Held-out loss at each evaluation against the FLOPs each run actually needed so far (sparse "
        "matmuls at their density, method overheads included). A curve left of the dense one reaches a "
        "loss with less compute.",
        "",
    ]


def _who(row: pd.Series) -> str:
    if row["role"] == DENSE_FAMILY:
        return f"dense size {int(row['size'])} (trial {row['trial']})"
    return f"trial {row['trial']} ({row['method']} {row['avg_sparsity']:.2f})"


def _envelope(df: pd.DataFrame, history: pd.DataFrame, out: Path) -> list[str]:
    env = envelopes(history)
    if env.common_range() is None:
        return []
    reached = df[df["status"] == REACHED]
    plots.envelope_png(history, env, list(reached["trial_id"]), out / "envelope.png")
    lines = [
        "## Frontier against frontier",
        "",
        "![Dense and sparse frontiers](envelope.png)",
        "",
        "The black line is the best loss any dense size and configuration had reached with a given number of "
        "training FLOPs (the dense frontier), the blue one the same over the sparse trials; where blue is below "
        "black, some sparse configuration was ahead of every dense model at that budget. Each curve is a trial's "
        "best held-out loss so far; early-stopped trials count for the budgets they reached.",
        "",
    ]
    if env.crossings:
        lines += [
            "Crossings: " + "; ".join(f"{who} ahead after {f:.3g} FLOPs" for f, who in env.crossings) + ".",
            "",
        ]
    else:
        d, s_ = env.at(env.common_range()[1])  # type: ignore[index]
        lines += [f"The frontiers do not cross: {'sparse' if s_ < d else 'dense'} is ahead wherever both exist.", ""]
    losses = df.attrs.get("target_losses", [])
    rows = []
    for i, loss in enumerate(losses):
        col = rung_key(i, "net_flops")
        if col not in df:
            continue
        sides = []
        for role in (SPARSE, DENSE_FAMILY):
            g = df[(df["role"] == role) & df[col].notna()]
            sides.append(g.loc[g[col].idxmin()] if len(g) else None)
        sp, de = sides
        gap = de[col] / sp[col] if sp is not None and de is not None else math.nan
        rows.append(
            [
                f"{loss:.3f}",
                "–" if sp is None else f"{sp[col]:.3g}: {_who(sp)}",
                "–" if de is None else f"{de[col]:.3g}: {_who(de)}",
                number(gap, ".2f", "x"),
            ]
        )
    if rows:
        lines += ["FLOPs to each rung (gap: dense FLOPs over sparse; above 1x sparse needs fewer):", ""]
        lines += _table(["rung loss", "best sparse", "best dense", "gap"], rows) + [""]
    rows = [[f"{b:.3g}", f"{d:.4f}", f"{s_:.4f}", f"{d - s_:+.4f}"] for b in budgets(env) for d, s_ in [env.at(b)]]
    lines += ["Best loss at a few budgets (gap: dense loss minus sparse; positive: sparse is ahead):", ""]
    return lines + _table(["FLOPs", "dense frontier", "sparse frontier", "gap"], rows) + [""]


_STUDY_TARGET = {"net_time": "net time to target (s)", "net_flops": "net FLOPs to target"}


def _importances(record: StudyRecord | None, problem: str, objective: str, out: Path) -> list[str]:
    lines = ["## Parameter importances", ""]
    if record is None:
        return lines + [f"Not computed: {problem}.", ""]
    imp, note = importances(record)
    if not imp:
        return lines + [f"Not computed: {note}.", ""]
    imp = {k: float(v) for k, v in imp.items()}
    n = len(record.complete)
    few = n < RELIABLE_TRIALS
    title = f"What drives {objective}: fANOVA over {n} completed trials" + (" (too few: unreliable)" if few else "")
    plots.importances_png(imp, out / "importances.png", title)
    if few:
        lines += [
            f"**Unreliable: only {n} completed trials** (fewer than {RELIABLE_TRIALS}). fANOVA fits a random forest "
            "to them; with so few, one more trial can reorder the parameters. Read the ranking as a hint, not a "
            "finding.",
            "",
        ]
    lines += ["![Parameter importances](importances.png)", ""]
    lines += _table(["parameter", "importance"], [[f"`{k}`", f"{v:.3f}"] for k, v in imp.items()]) + [""]
    if record.legacy:
        how = (
            "This study predates pruning: trials stopped early entered it as completed, with their projected "
            "objective, so importances describe the search's ranking, not measured times."
        )
    else:
        how = (
            "Only trials that reached the target are completed in the study (those stopped early or out of budget "
            "are pruned), so importances describe what drives the objective among them."
        )
    return lines + [f"{note}. {how}", ""]


def _study_views(record: StudyRecord | None, problem: str, objective: str, out: Path) -> list[str]:
    """Optuna's views of the study, as HTML files beside the report, or one line saying why there are none."""
    lines = ["## The Optuna study", ""]
    if record is None:
        return lines + [f"Not drawn: {problem}.", ""]
    n = len(record.complete)
    if n < MIN_TRIALS:
        return lines + [
            f"Not drawn: {n} completed trials with a finite objective; the views need at least {MIN_TRIALS}.",
            "",
        ]
    files, problems = plots.study_views(
        record.study, out, target_name=_STUDY_TARGET.get(objective, objective), params=varying_params(record.complete)
    )
    lines += [
        f"Optuna's own views of the {n} completed trials (trials that reached the target), interactive: "
        + ", ".join(f"[{name}]({path.name})" for name, path in files.items())
        + ". The history shows the objective by trial number (pruned trials have none), the parallel coordinate "
        "plot each completed trial's parameters against its objective, the slice plots the objective against each "
        "parameter. The dense family is not part of the study.",
        "",
    ]
    return lines + [f"- {p}" for p in problems] + ([""] if problems else [])


def _per_method(df: pd.DataFrame) -> list[str]:
    rows = []
    for m, g in df.groupby("method", dropna=False, sort=True):
        ok = g[g["status"] == REACHED]
        some = len(ok) > 0
        rows.append(
            [
                str(m),
                str(len(g)),
                str(len(ok)),
                number(ok["net_time_s"].min() if some else None, ".1f", " s"),
                number(ok["net_time_s"].median() if some else None, ".1f", " s"),
                number(ok["speedup"].max() if some else None, ".2f", "x"),
                number(ok["flop_speedup"].max() if some else None, ".2f", "x"),
                number(ok["avg_sparsity"].mean() if some else None, ".2f"),
            ]
        )
    return (
        ["## Per method", ""]
        + _table(
            [
                "method",
                "trials",
                "reached",
                "best net time",
                "median net time",
                "best speedup",
                "best FLOP speedup",
                "mean sparsity (reached)",
            ],
            rows,
        )
        + [""]
    )


def _flops_section(state: dict, best: pd.Series | None, config: dict) -> list[str]:
    if not state.get("model_shape"):
        return ["The model shape was not stored with this experiment (it predates that), so this section is left out."]
    shape, n_masked = ModelShape(**state["model_shape"]), float(state["expected_masked"])
    batch = spec_from_dict(base_raw(state["raw"])).train.batch_size
    dense = step_flops(shape, batch, n_masked)
    sparse = None
    if best is not None and not best["reference"]:
        sparsity = trial_spec(state["raw"], config).sparsity
        dens = layer_densities(
            shape.weight_shapes(),
            sparsity.level,
            sparsity.distribution,
            dense_groups=sparsity.dense_groups,
            group_levels=sparsity.group_levels,
        )
        sparse = step_flops(shape, batch, n_masked, dens)
    lines = [
        f"Matmul FLOPs of one training step (forward and backward, batch {batch} x {shape.seq_len} tokens, "
        f"~{n_masked:.0f} masked positions), from the analytic FLOP model."
    ]
    if sparse is not None:
        lines[0] += (
            " The best trial's column uses the layer densities its sparsity settings give (no "
            "method overhead such as RigL's dense gradient on update steps; the trial's FLOP ratio "
            "in the tables above includes it; methods that move density between layers, such as "
            "snfs and flop_rigl, end with other per-layer densities)."
        )
    lines += [""] + _flops_table(dense, sparse, best) + [""]
    fixed = dense.total - dense.sparsifiable
    lines.append(
        f"{fixed / dense.total:.1%} of a dense step cannot be made sparse here (the tied "
        f"{'trainable' if shape.embedding_trainable else 'frozen'} {shape.vocab:,}-token decoder, "
        "attention scores and values), so even a fully sparse model needs a FLOP ratio of at least "
        f"{fixed / dense.total:.2f}: at most {dense.total / fixed:.2f}x fewer FLOPs than dense."
    )
    return lines


def _flops_table(dense: StepFlops, sparse: StepFlops | None, best: pd.Series | None) -> list[str]:
    cols = ["component", "dense GFLOP/step", "share of dense"]
    if sparse is not None and best is not None:
        cols += [f"best trial {best['trial']} GFLOP/step", "its density"]
    sg = sparse.by_group() if sparse is not None else {}
    rows = []
    for g, v in dense.by_group().items():
        r = [g, f"{v / 1e9:.2f}", f"{v / dense.total:.1%}"]
        if sparse is not None:
            r += [f"{sg[g] / 1e9:.2f}", f"{sg[g] / v:.2f}"]
        rows.append(r)
    total = ["**total**", f"**{dense.total / 1e9:.2f}**", "100%"]
    if sparse is not None:
        total += [f"**{sparse.total / 1e9:.2f}**", f"**{sparse.total / dense.total:.2f}**"]
    return _table(cols, [*rows, total])


def _precisions(df: pd.DataFrame) -> str:
    """The precisions trials ran at (older experiments did not record it)."""
    if "precision" not in df.columns:
        return "not recorded"
    found = sorted({str(p) for p in df["precision"].dropna() if str(p)})
    return ", ".join(found) if found else "not recorded"
