"""``sparsesearch export``: the trial table, the Pareto front and its plots, written from stored results."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import plots
from .confirm import confirmation_table, load_confirmation
from .envelope import envelopes
from .pareto import front
from .table import COLUMNS, experiment_dir, load_history, load_reported

# trials.csv: identity and status first, then the sampled parameters, then the metrics.
_ID = ("trial", "trial_id", "role", "size", "reference", "status", "method")


def trial_table(df: pd.DataFrame) -> pd.DataFrame:
    """The trial table in the column order of trials.csv."""
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    metrics = [c for c in COLUMNS if c not in _ID]
    return df[[*_ID, *params, *metrics, *df.attrs.get("rung_columns", [])]]


def export(path: str | Path, out: str | Path | None = None, *, by: str = "net_time") -> dict[str, Path]:
    """Write trials.csv, pareto.csv, pareto.json, pareto.png and pareto.html (with the plotly.min.js it loads) for
    the experiment at ``path`` into ``out`` (default: ``<experiment>/export``); returns the files by name."""
    exp = experiment_dir(path)
    df = load_reported(exp)
    out = Path(out) if out is not None else exp / "export"
    out.mkdir(parents=True, exist_ok=True)
    fr = front(df, by)
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    files = {
        "trials.csv": out / "trials.csv",
        "pareto.csv": out / "pareto.csv",
        "pareto.json": out / "pareto.json",
        "pareto.png": out / "pareto.png",
        "pareto.html": out / "pareto.html",
        plots.PLOTLY_JS: out / plots.PLOTLY_JS,
    }
    trial_table(df).to_csv(files["trials.csv"], index=False)
    trial_table(fr).to_csv(files["pareto.csv"], index=False)
    payload = plots.front_json(fr, params, by=by, experiment=df.attrs["name"], target=df.attrs["target_loss"])
    payload["envelopes"] = envelopes(load_history(exp)).to_json()  # the dense and the sparse frontier
    files["pareto.json"].write_text(json.dumps(payload, indent=1))
    title = (
        f"{df.attrs['name']}: sparsity vs. {'net time' if by == 'net_time' else 'net FLOPs'} to loss "
        f"{df.attrs['target_loss']:.3f}"
        if df.attrs.get("target_loss")
        else df.attrs["name"]
    )
    plots.pareto_png(df, fr, files["pareto.png"], by=by, title=title)
    plots.pareto_html(df, fr, files["pareto.html"], by=by, title=title)
    confirmed = confirmation_table(load_confirmation(exp), df)
    if not confirmed.empty:
        files["confirm.csv"] = out / "confirm.csv"
        confirmed.to_csv(files["confirm.csv"], index=False)
    return files
