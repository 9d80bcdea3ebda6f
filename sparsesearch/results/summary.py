"""The console summary of an experiment after ``run`` and ``resume``: counts, the dense reference, the best."""

from __future__ import annotations

from pathlib import Path

from ..definitions import DIVERGED, REACHED
from ..experiment import STUDY_FILE
from .format import params_text
from .pareto import OBJECTIVES
from .table import load_results


def summarize(path: str | Path, top: int = 5) -> list[str]:
    """The best configurations (reached the target, lowest objective) and where the results are."""
    df = load_results(path)
    exp = Path(df.attrs["experiment"])
    if df.empty:
        return [f"no trial results in {exp}"]
    objective = df.attrs.get("objective", "net_time")
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    ref = df[df["reference"]]
    reached = df[(df["status"] == REACHED) & ~df["reference"]].sort_values(OBJECTIVES[objective])
    n_reached, n_diverged = int((df["status"] == REACHED).sum()), int((df["status"] == DIVERGED).sum())
    lines = [
        f"{len(df)} trials: {n_reached} reached the target, {n_diverged} diverged, "
        f"{len(df) - n_reached - n_diverged} stopped early, out of budget or not run"
    ]
    if not ref.empty:
        r = ref.iloc[0]
        lines.append(
            f"dense reference: net time {r['net_time_s']:.1f}s, net FLOPs {r['net_flops']:.3g}"
            + ("" if r["status"] == REACHED else " (did not reach the target)")
        )
    lines.append(f"best configurations by {objective}:")
    for _, row in reached.head(top).iterrows():
        cfg = params_text(row, params)
        lines.append(
            f"  trial {row['trial']} ({row['trial_id']})  net time {row['net_time_s']:.1f}s  net FLOPs "
            f"{row['net_flops']:.3g}  sparsity {row['avg_sparsity']:.3f}  method={row['method']}"
            + (f", {cfg}" if cfg else "")
        )
    if reached.empty:
        lines.append("  (no sparse trial reached the target)")
    lines.append(f"results: {exp}  (Optuna study: {exp / STUDY_FILE})")
    lines.append(f"report:  sparsesearch report {exp}   (Pareto front, plots, importances)")
    return lines
