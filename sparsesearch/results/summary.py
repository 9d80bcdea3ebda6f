"""The console summary of an experiment after ``run`` and ``resume``: counts, the dense family, the best sparse
trials with both speedups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..definitions import DIVERGED, REACHED
from ..experiment import DENSE_FAMILY, SPARSE, STUDY_FILE
from .confirm import confirmation_lines, confirmation_table, load_confirmation
from .edges import edge_warnings
from .format import number, params_text, plural
from .pareto import OBJECTIVES
from .table import load_results, load_state


def summarize(path: str | Path, top: int = 5) -> list[str]:
    """The dense family, the best sparse configurations (reached the target, lowest objective) with their
    speedups over the same-size dense and over the dense frontier, and where the results are."""
    df = load_results(path)
    exp = Path(df.attrs["experiment"])
    if df.empty:
        return [f"no trial results in {exp}"]
    objective = df.attrs.get("objective", "net_time")
    n_reached, n_diverged = int((df["status"] == REACHED).sum()), int((df["status"] == DIVERGED).sum())
    lines = [
        f"{len(df)} trials: {n_reached} reached the target, {n_diverged} diverged, "
        f"{len(df) - n_reached - n_diverged} stopped early, out of budget or not run",
        *family_lines(df),
        *(f"warning: {w}" for w in edge_warnings(df, load_state(exp), objective)),
        f"best sparse configurations by {objective} (speedup = the best dense model's net time, or net FLOPs, "
        "over the trial's: same-size dense | dense frontier of every size):",
    ]
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    sparse = df[(df["role"] == SPARSE) & (df["status"] == REACHED)].sort_values(OBJECTIVES[objective])
    for _, r in sparse.head(top).iterrows():
        cfg = params_text(r, params)
        lines.append(
            f"  trial {r['trial']} ({r['trial_id']})  {r['method']} sparsity {r['avg_sparsity']:.3f}  "
            f"net time {r['net_time_s']:.1f}s  net FLOPs {r['net_flops']:.3g}  time speedup "
            f"{number(r['speedup'], '.2f', 'x')} | {number(r['frontier_speedup'], '.2f', 'x')}  FLOP speedup "
            f"{number(r['flop_speedup'], '.2f', 'x')} | {number(r['frontier_flop_speedup'], '.2f', 'x')}"
            + (f"  {cfg}" if cfg else "")
        )
    if sparse.empty:
        lines.append("  (no sparse trial reached the target)")
    lines += confirmation_lines(confirmation_table(load_confirmation(exp), df))
    lines.append(f"results: {exp}  (Optuna study: {exp / STUDY_FILE})")
    lines.append(f"report:  sparsesearch report {exp}   (Pareto front, plots, importances)")
    return lines


def family_lines(df: pd.DataFrame) -> list[str]:
    """One line per dense size: its width, and its best configuration's net time and net FLOPs to the target."""
    dense = df[df["role"] == DENSE_FAMILY]
    if dense.empty:
        return ["dense family: none has reported yet"]
    lines = ["dense family (best configuration of each size; size 0 is the same-size dense):"]
    for size, g in dense.groupby("size", sort=True):
        ok = g[g["status"] == REACHED]
        width = (
            g["model.hidden_size"].dropna().iloc[0]
            if "model.hidden_size" in g and g["model.hidden_size"].notna().any()
            else None
        )
        what = f"hidden {int(width)}" if width is not None else "the spec's model"
        if "model.num_layers" in g and g["model.num_layers"].notna().any():  # a size of another depth
            what = f"{plural(int(g['model.num_layers'].dropna().iloc[0]), 'layer')}, {what}"
        if ok.empty:
            lines.append(f"  size {int(size)} ({what}): {len(g)} configuration(s), none reached the target")
            continue
        best = ok.loc[ok["net_flops"].idxmin()]
        lines.append(
            f"  size {int(size)} ({what}): {len(ok)}/{len(g)} reached; best net time {ok['net_time_s'].min():.1f}s, "
            f"net FLOPs {best['net_flops']:.3g} ({best['steps_to_target']:.0f} steps)"
        )
    return lines
