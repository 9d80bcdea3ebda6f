"""``sparsesearch report``: a markdown report of an experiment, with its figures, from stored results."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import pandas as pd

from . import plots
from .export import export
from .flops import ModelShape, step_flops, weight_shapes
from .pareto import OBJECTIVES, front
from .results import STATUS_HELP, STATUSES, STUDY_FILE, experiment_dir, load_history, load_results, load_state


def _f(v, spec: str = ".3g", unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:{spec}}{unit}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _params_text(row: pd.Series, params: list[str]) -> str:
    vals = [f"`{k}`={plots._fmt(row[k])}" for k in params
            if k in row and not plots._missing(row[k]) and k != "sparsity.method"]
    return ", ".join(vals) or "–"


def _shape(state: dict, spec) -> tuple[ModelShape, float] | None:
    if "model_shape" in state:
        return ModelShape(**state["model_shape"]), float(state["expected_masked"])
    try:  # experiments from before the shape was stored: read it from the tokenizer files
        from .embedding import embedding_dim, resolve_model_dir, tokenizer_info
        from .flops import expected_masked
        d = resolve_model_dir(spec.model.embedding)
        shape = ModelShape.from_spec(spec.model, tokenizer_info(str(d)).vocab_size, embedding_dim(d))
        return shape, expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
    except Exception:  # noqa: BLE001 - the report goes on without this section
        return None


def _trial_spec(state: dict, config: dict):
    from .space import trial_overrides
    from .spec import spec_from_dict
    base = {k: v for k, v in state["raw"].items() if k not in ("search", "tune")}
    if config.get("reference"):
        return spec_from_dict({**base, "sparsity": {"method": "dense"}})
    return spec_from_dict(base, trial_overrides(config))


def _flops_section(state: dict, best: pd.Series | None, config: dict) -> list[str]:
    from .sparsity.distributions import layer_densities
    from .spec import spec_from_dict
    base = spec_from_dict({k: v for k, v in state["raw"].items() if k not in ("search", "tune")})
    got = _shape(state, base)
    if got is None:
        return ["The model shape could not be read (neither stored with the experiment nor its embedding "
                "installed here), so this section is left out."]
    shape, n_masked = got
    dense = step_flops(shape, base.train.batch_size, n_masked)
    cols = ["component", "dense GFLOP/step", "share of dense"]
    sparse = None
    if best is not None and not best["reference"]:
        sp = _trial_spec(state, config).sparsity
        dens = layer_densities(weight_shapes(shape), sp.level, sp.distribution, dense_groups=sp.dense_groups,
                               group_levels=sp.group_levels)
        sparse = step_flops(shape, base.train.batch_size, n_masked, dens)
        cols += [f"best trial {best['trial']} GFLOP/step", "its density"]
    rows = []
    dg = dense.by_group()
    sg = sparse.by_group() if sparse else {}
    for g, v in dg.items():
        r = [g, f"{v / 1e9:.2f}", f"{v / dense.total:.1%}"]
        if sparse:
            r += [f"{sg[g] / 1e9:.2f}", f"{sg[g] / v:.2f}"]
        rows.append(r)
    total = ["**total**", f"**{dense.total / 1e9:.2f}**", "100%"]
    if sparse:
        total += [f"**{sparse.total / 1e9:.2f}**", f"**{sparse.total / dense.total:.2f}**"]
    rows.append(total)
    fixed = dense.total - dense.sparsifiable
    lines = [f"Matmul FLOPs of one training step (forward and backward, batch {base.train.batch_size} x "
             f"{shape.seq_len} tokens, ~{n_masked:.0f} masked positions), from the analytic FLOP model."]
    if sparse:
        lines[0] += (" The best trial's column uses the layer densities its sparsity settings give (no "
                     "method overhead such as RigL's dense gradient on update steps; the trial's FLOP ratio "
                     "in the tables above includes it; methods that move density between layers, such as "
                     "snfs and flop_rigl, end with other per-layer densities).")
    lines += [""] + _table(cols, rows) + [""]
    lines.append(f"{fixed / dense.total:.1%} of a dense step cannot be made sparse here (the tied "
                 f"{'trainable' if shape.embedding_trainable else 'frozen'} {shape.vocab:,}-token decoder, "
                 "attention scores and values), so even a fully sparse model needs a FLOP ratio of at least "
                 f"{fixed / dense.total:.2f}: at most {dense.total / fixed:.2f}x fewer FLOPs than dense.")
    return lines


def report(path: str | Path, out: str | Path | None = None, *, by: str | None = None) -> Path:
    """Write ``report.md`` and its figures for the experiment at ``path`` into ``out`` (default
    ``<experiment>/report``); returns the report's path. ``by``: net_time or net_flops (default: the
    search's objective)."""
    exp = experiment_dir(path)
    state = load_state(exp)
    df = load_results(exp)
    by = by or df.attrs.get("objective", "net_time")
    col = OBJECTIVES[by]
    out = Path(out) if out is not None else exp / "report"
    out.mkdir(parents=True, exist_ok=True)
    files = export(exp, out, by=by)
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    history = load_history(exp)
    fr = front(df, by)
    raw = state.get("raw", {})
    search = raw.get("search") or {}
    target = df.attrs.get("target_loss")
    ref_rows = df[df["reference"]]
    ref = ref_rows.iloc[0] if len(ref_rows) else None
    reached = df[(df["status"] == "reached") & ~df["reference"]].sort_values(col)

    L = [f"# Experiment `{df.attrs['name']}`", "",
         f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from `{exp}` by `sparsesearch report`. "
         "Every number comes from the stored trial results; nothing was re-trained.", ""]
    # -- summary
    counts = df["status"].value_counts()
    L += ["## Summary", "",
          f"- Spec: `{state.get('spec_path', '?')}`; objective `{by}` (net time = time to target x FLOP ratio;"
          " net FLOPs = FLOPs actually needed to the target); sampler "
          f"`{search.get('sampler', 'tpe')}`, {search.get('num_samples', '?')} sampled trials + the dense "
          "reference.",
          f"- Target: held-out MLM loss **{_f(target, '.4f')}** "
          f"({'the loss a dense run reaches in ' + str((raw.get('target') or {}).get('dense_steps', 200)) + ' steps' if (raw.get('target') or {}).get('loss', 'auto') == 'auto' else 'given in the spec'}).",
          f"- {len(df)} trials: " + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES
                                              if counts.get(s, 0)) + ".",
          f"- Compute spent: {_f(df['train_time_s'].sum(), '.0f')} s of training, "
          f"{_f(df['flops'].sum(), '.3g')} FLOPs; nodes used: {df['node'].dropna().nunique()}; precision: "
          f"{_precisions(df)}.", ""]
    L += _table(["status", "trials", "meaning"],
                [[s, str(counts.get(s, 0)), STATUS_HELP[s]] for s in STATUSES if counts.get(s, 0)]) + [""]
    if counts.get("unfinished", 0):
        L += [f"**{counts['unfinished']} trial(s) are unfinished**: the search is still running or was "
              "interrupted; their numbers are the latest reports.", ""]
    # -- reference
    L += ["## Dense reference", ""]
    if ref is None:
        L += ["No dense reference trial has reported yet; speedups cannot be computed.", ""]
    else:
        L += _table(["status", "steps to target", "time to target", "net time", "net FLOPs", "final loss"],
                    [[ref["status"], _f(ref["steps_to_target"], ".1f"), _f(ref["time_to_target_s"], ".1f", " s"),
                      _f(ref["net_time_s"], ".1f", " s"), _f(ref["net_flops"], ".3g"),
                      _f(ref["final_eval_loss"], ".4f")]]) + [""]
    # -- best
    L += [f"## Best configurations (by {by})", ""]
    if reached.empty:
        L += ["No sparse trial reached the target yet.", ""]
    else:
        rows = [[str(r["trial"]), r["method"], _f(r["avg_sparsity"], ".3f"), _f(r["net_time_s"], ".1f", " s"),
                 _f(r["speedup"], ".2f", "x"), _f(r["net_flops"], ".3g"), _f(r["flop_speedup"], ".2f", "x"),
                 _f(r["steps_to_target"], ".0f"), _f(r["flop_ratio"], ".3f"), _params_text(r, params)]
                for _, r in reached.head(5).iterrows()]
        L += _table(["trial", "method", "sparsity", "net time", "speedup", "net FLOPs", "FLOP speedup",
                     "steps", "FLOP ratio", "parameters"], rows) + [""]
        L += ["Speedups are the dense reference's net time (or net FLOPs) over the trial's, at the same target "
              "loss. Net time is wall-clock and noisy on a shared machine; net FLOPs are deterministic.", ""]
    # -- pareto
    L += ["## Pareto front: sparsity vs. " + ("net time" if by == "net_time" else "net FLOPs"), "",
          "![Pareto front](pareto.png)", "",
          "Grey: trials that reached the target; crosses: trials that did not (their projected value, never on "
          "the front); blue: the non-dominated trials (less net time, more sparsity); red star and dashed line:"
          " the dense reference; dotted line: half of it. Interactive version: [pareto.html](pareto.html).", ""]
    if len(fr):
        L += _table(["trial", "method", "sparsity", "net time", "speedup", "net FLOPs", "parameters"],
                    [[str(r["trial"]), r["method"], _f(r["avg_sparsity"], ".3f"), _f(r["net_time_s"], ".1f", " s"),
                      _f(r["speedup"], ".2f", "x"), _f(r["net_flops"], ".3g"), _params_text(r, params)]
                     for _, r in fr.iterrows()]) + [""]
    # -- curves
    ids = list(fr["trial_id"])
    if ref is not None and ref["trial_id"] not in ids:
        ids = [ref["trial_id"], *ids]
    if ids and not history.empty:
        labels = {r["trial_id"]: ("dense reference" if r["reference"] else
                                  f"trial {r['trial']}: {r['method']} {r['avg_sparsity']:.2f}")
                  for _, r in df.iterrows()}
        plots.curves_png(history, ids, labels, target, out / "curves.png")
        L += ["## Loss against compute", "", "![Loss against FLOPs](curves.png)", "",
              "Held-out loss at each evaluation against the FLOPs each run actually needed so far (sparse "
              "matmuls at their density, method overheads included). A curve left of the dense one reaches a "
              "loss with less compute.", ""]
    # -- importances
    from .space import param_importances
    imp, note = param_importances(exp / STUDY_FILE)
    L += ["## Parameter importances", ""]
    if imp:
        imp = {k: float(v) for k, v in imp.items()}
        plots.importances_png(imp, out / "importances.png", f"What drives {by} (fANOVA on the Optuna study)")
        L += ["![Parameter importances](importances.png)", ""]
        L += _table(["parameter", "importance"], [[f"`{k}`", f"{v:.3f}"] for k, v in imp.items()]) + [""]
        L += [note + ". Trials stopped early enter with their projected objective, so importances describe "
              "the search's ranking, not measured times.", ""]
    else:
        L += [f"Not computed: {note}.", ""]
    # -- per method
    L += ["## Per method", ""]
    rows = []
    for m, g in df.groupby("method", dropna=False, sort=True):
        ok = g[g["status"] == "reached"]
        rows.append([str(m), str(len(g)), str(len(ok)), _f(ok["net_time_s"].min() if len(ok) else None, ".1f", " s"),
                     _f(ok["net_time_s"].median() if len(ok) else None, ".1f", " s"),
                     _f(ok["speedup"].max() if len(ok) else None, ".2f", "x"),
                     _f(ok["flop_speedup"].max() if len(ok) else None, ".2f", "x"),
                     _f(ok["avg_sparsity"].mean() if len(ok) else None, ".2f")])
    L += _table(["method", "trials", "reached", "best net time", "median net time", "best speedup",
                 "best FLOP speedup", "mean sparsity (reached)"], rows) + [""]
    # -- flops
    L += ["## Where the FLOPs go", ""]
    best = reached.iloc[0] if len(reached) else None
    cfg = df.attrs["configs"].get(best["trial_id"], {}) if best is not None else {}
    L += _flops_section(state, best, cfg) + [""]
    L += ["## Files", "", "- `trials.csv`: every trial, its parameters, status and metrics",
          "- `pareto.csv`, `pareto.json`: the front", "- `pareto.png`, `pareto.html`: the front, static and "
          "interactive", ""]
    path_md = out / "report.md"
    path_md.write_text("\n".join(L))
    return path_md


def _precisions(df) -> str:
    """The precisions trials ran at (older experiments did not record it)."""
    if "precision" not in df.columns:
        return "not recorded"
    found = sorted({str(p) for p in df["precision"].dropna() if str(p)})
    return ", ".join(found) if found else "not recorded"
