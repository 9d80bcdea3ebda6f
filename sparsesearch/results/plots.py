"""Figures of an experiment: the Pareto front (PNG and interactive HTML), loss curves, parameter importances.

Each function takes the tables of ``results`` and writes one file; none reads the experiment itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..definitions import REACHED, is_finite
from ..experiment import DENSE_FAMILY
from .format import missing, value
from .pareto import OBJECTIVES

_AXIS = {"net_time": ("net time to target (s)", 1.0), "net_flops": ("net FLOPs to target (TFLOP)", 1e-12)}
_FRONT, _REF, _DENSE = "#1f77b4", "#d62728", "black"
# One colour per sparse method: tab10 and its light shades without the front's blue, the reference's red and the
# greys, so that no method reads as one of the roles drawn in those colours.
_METHODS = (
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#ffbb78",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
)
PLOTLY_JS = "plotly.min.js"  # the one plotly.js bundle of a folder, beside the HTML files that load it


def _subplots(figsize: tuple[float, float], dpi: int = 120):
    """A figure and its axes, made without pyplot: no backend is chosen or switched (a notebook keeps its own),
    and a figure saved without a display needs none."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.add_subplot()


def _dense_family(df: pd.DataFrame) -> pd.Series:
    """Rows of dense family trials (tables of older experiments have no role column)."""
    if "role" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["role"] == DENSE_FAMILY


def _ref(df: pd.DataFrame) -> pd.Series | None:
    r = df[df["reference"] & (df["status"] == REACHED)]
    return r.iloc[0] if len(r) else None


def _method(m) -> str:
    return "unknown" if missing(m) else str(m)


def _dense(df: pd.DataFrame) -> pd.Series:
    """Rows of dense trials: the family, the reference, and (tables without roles) any trial of method dense."""
    return _dense_family(df) | df["reference"].astype(bool) | (df["method"] == "dense")


def method_colours(df: pd.DataFrame) -> dict[str, str]:
    """One colour per sparse method of a trial table, by name, so that the PNG and the HTML agree."""
    sparse = df[~_dense(df)]
    names = sorted({_method(m) for m in sparse["method"]})
    return {m: _METHODS[i % len(_METHODS)] for i, m in enumerate(names)}


class _Parts:
    """The groups every Pareto figure draws, from one trial table: plotted (finite) points only."""

    def __init__(self, df: pd.DataFrame, col: str):
        finite = df[col].map(is_finite) & df["avg_sparsity"].map(is_finite)
        reached = finite & (df["status"] == REACHED)
        dense = _dense(df)
        methods = df["method"].map(_method)
        self.colours = method_colours(df)
        self.methods = {
            m: (df[~dense & reached & (methods == m)], df[~dense & finite & ~reached & (methods == m)])
            for m in self.colours
        }
        self.family = df[dense & reached & ~df["reference"].astype(bool)]
        self.family_not = df[dense & finite & ~reached]
        self.ref = _ref(df)
        ok = df[dense & reached]
        self.frontier = ok.loc[ok[col].idxmin()] if len(ok) else None
        # The best point of each size carries its size label (the other configurations of a size sit near it).
        sized = ok[ok["size"].notna()] if "size" in ok.columns else ok.iloc[:0]
        self.sized = sized.sort_values(col, kind="stable").drop_duplicates("size")
        self.top = max(df.loc[finite, col].tolist(), default=math.nan)

    def frontier_label(self, value: str) -> str:
        f = self.frontier
        assert f is not None
        if f["reference"]:
            return f"dense frontier = the same-size dense ({value})"
        size = "" if missing(f.get("size")) else f"size {int(f['size'])}, "
        return f"dense frontier: best dense of any size ({size}{value})"


def _size(r: pd.Series) -> str:
    return f"size {int(r['size'])}"


@dataclass
class Layer:
    """One thing a Pareto figure draws, with its legend entry: the same for the PNG and the HTML.

    ``kind``: ``points`` (``rows`` of the trial table at x = sparsity, y = the objective), ``hline`` (at ``y``) or
    ``front`` (``rows`` joined by a line, ringed). ``marker``: ``o``, ``x``, ``s`` (square) or ``*``; ``dash``:
    ``solid``, ``dash`` or ``dot``. ``labels``: text beside each point (its size, or its speedup on the front)."""

    kind: str
    name: str
    colour: str
    rows: pd.DataFrame | None = None
    y: float = math.nan
    marker: str = "o"
    size: float = 9.0
    dash: str = "solid"
    width: float = 1.0
    faint: bool = False
    labels: list[str] = field(default_factory=list)


def pareto_layers(df: pd.DataFrame, front_df: pd.DataFrame, *, by: str = "net_time") -> list[Layer]:
    """The Pareto figure, described once: sparse trials by method (reached, and not reached with their projected
    objective), the dense family labelled by size with its frontier (the best dense of any size) as a line, the
    best same-size dense as a red star and dashed line (and half of it dotted), the front ringed and connected,
    labelled with its speedups over the same-size dense."""
    col = OBJECTIVES[by]
    parts = _Parts(df, col)
    sized = set(parts.sized["trial_id"])

    def size_labels(part: pd.DataFrame) -> list[str]:
        return [_size(r) if r["trial_id"] in sized else "" for _, r in part.iterrows()]

    layers = []
    for m, colour in parts.colours.items():
        ok, other = parts.methods[m]
        if len(ok):
            layers.append(Layer("points", f"{m}: reached ({len(ok)})", colour, ok))
        if len(other):
            name = f"{m}: not reached, projected ({len(other)})"
            layers.append(Layer("points", name, colour, other, marker="x", size=8, faint=True))
    if len(parts.family):
        name = f"dense family, labelled by size ({len(parts.family)}; size 0 = the spec's model)"
        layers.append(Layer("points", name, _DENSE, parts.family, marker="s", labels=size_labels(parts.family)))
    if len(parts.family_not):
        name = f"dense family: not reached, projected ({len(parts.family_not)})"
        layers.append(Layer("points", name, _DENSE, parts.family_not, marker="x", size=8, faint=True))
    if parts.frontier is not None:
        fy = parts.frontier[col] * _AXIS[by][1]
        layers.append(Layer("hline", parts.frontier_label(f"{fy:.3g}"), _DENSE, y=fy, width=1.5))
    ref = parts.ref
    if ref is not None:
        y = ref[col] * _AXIS[by][1]
        layers.append(Layer("hline", f"same-size dense ({y:.3g})", _REF, y=y, dash="dash"))
        layers.append(Layer("hline", "2x faster than the same-size dense", _REF, y=y / 2, dash="dot"))
        star = df[df["trial_id"] == ref["trial_id"]]
        name = "best same-size dense (size 0)"
        layers.append(Layer("points", name, _REF, star, marker="*", size=16, labels=size_labels(star)))
    if len(front_df):
        speedups = [
            f"{ref[col] / r[col]:.2f}x" if ref is not None and not r["reference"] else ""
            for _, r in front_df.iterrows()
        ]
        name = f"Pareto front ({len(front_df)}), ringed; labels: speedup over the same-size dense"
        layers.append(Layer("front", name, _FRONT, front_df, size=16, width=2, labels=speedups))
    return layers


_MPL_MARKERS = {"o": "o", "x": "x", "s": "s", "*": "*"}
_MPL_DASH = {"solid": "-", "dash": "--", "dot": ":"}
_PLOTLY_MARKERS = {"o": "circle", "x": "x", "s": "square", "*": "star"}


def pareto_figure(df: pd.DataFrame, front_df: pd.DataFrame, *, by: str = "net_time", title: str = ""):
    """The Pareto front (``pareto_layers``) as a matplotlib Figure (the caller saves it)."""
    col, (ylabel, scale) = OBJECTIVES[by], _AXIS[by]
    fig, ax = _subplots((10.5, 5.4))
    handles = []  # in the layers' order (matplotlib would list lines before points)
    for layer in pareto_layers(df, front_df, by=by):
        if layer.kind == "hline":
            ls = _MPL_DASH[layer.dash]
            handles.append(ax.axhline(layer.y, color=layer.colour, ls=ls, lw=layer.width, zorder=0, label=layer.name))
            continue
        assert layer.rows is not None
        x, y = 100 * layer.rows["avg_sparsity"], layer.rows[col] * scale
        if layer.kind == "front":
            style = dict(color=layer.colour, lw=layer.width, ms=11, mfc="none", mew=1.8, zorder=3)
            handles += ax.plot(x, y, "-o", label=layer.name, **style)
            offset: tuple[float, float] = (7, -13)
        else:
            star = layer.marker == "*"
            handles.append(
                ax.scatter(
                    x,
                    y,
                    s=(layer.size * 14 if star else layer.size * 3.5),
                    marker=_MPL_MARKERS[layer.marker],
                    color=layer.colour,
                    alpha=0.6 if layer.faint else 1.0,
                    label=layer.name,
                    zorder=4 if star else (1 if layer.faint else 2),
                )
            )
            offset = (9, -3)
        for xi, yi, text in zip(x, y, layer.labels):
            if text:
                colour = layer.colour if layer.kind == "front" else "black"
                ax.annotate(text, (xi, yi), xytext=offset, textcoords="offset points", fontsize=7, color=colour)
    top = _Parts(df, col).top
    ax.set_xlabel("average sparsity of the sparsifiable weights (%)")
    ax.set_ylabel(ylabel + "  (lower is better)")
    ax.set_xlim(-3, 100)
    ax.set_ylim(0, 1.12 * (top * scale if is_finite(top) else 1.0))
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    ax.set_title(title or "Pareto front: sparsity vs. " + ylabel.split(" (")[0], fontsize=11)
    fig.tight_layout()
    return fig


def pareto_png(df: pd.DataFrame, front_df: pd.DataFrame, path: Path, *, by: str = "net_time", title: str = "") -> Path:
    """The Pareto front (``pareto_figure``) as a PNG."""
    fig = pareto_figure(df, front_df, by=by, title=title)
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    # "tight" keeps a legend placed beside the axes inside the image
    fig.savefig(path, bbox_inches="tight")


def curves_png(
    history: pd.DataFrame, trial_ids: list[str], labels: dict[str, str], target: float | None, path: Path
) -> Path:
    """Held-out loss against cumulative FLOPs actually spent, one line per trial (``curves_figure``), as a PNG."""
    _save(curves_figure(history, trial_ids, labels, target), path)
    return path


def curves_figure(history: pd.DataFrame, trial_ids: list[str], labels: dict[str, str], target: float | None):
    """Held-out loss against cumulative FLOPs actually spent as a matplotlib Figure: one labelled line per trial
    (``labels`` by trial id), the best same-size dense dashed in red, the target a dotted black line."""
    from matplotlib import colormaps

    fig, ax = _subplots((8, 5))
    for i, tid in enumerate(trial_ids):
        h = history[history["trial_id"] == tid].sort_values("step")
        if h.empty:
            continue
        ref = bool(h["reference"].iloc[0])
        ax.plot(
            h["flops"] * 1e-12,
            h["eval_loss"],
            "-" if not ref else "--",
            marker=".",
            color=_REF if ref else colormaps["viridis"](i / max(1, len(trial_ids))),
            lw=2 if ref else 1.5,
            label=labels.get(tid, tid),
        )
    if target is not None:
        ax.axhline(target, color="black", lw=0.8, ls=":", label=f"target loss {target:.3f}")
    ax.set_xlabel("cumulative training FLOPs actually needed (TFLOP)")
    ax.set_ylabel("held-out MLM loss")
    ax.grid(alpha=0.3)
    if target is not None:
        lo = min(history["eval_loss"].min(), target)
        ax.set_ylim(lo - 0.1, target + 1.5)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Held-out loss against compute: the front and the best same-size dense", fontsize=11)
    fig.tight_layout()
    return fig


def envelope_png(history: pd.DataFrame, env: Any, shown: list[str], path: Path) -> Path:
    """``envelope_figure`` written to ``path``."""
    _save(envelope_figure(history, env, shown), path)
    return path


def envelope_figure(history: pd.DataFrame, env: Any, shown: list[str]):
    """Loss against FLOPs: thin curves of the trials in ``shown`` (dense grey, sparse light blue), the two lower
    envelopes (``results.envelope.Envelopes``) thick, and a vertical line at each crossing."""
    from .envelope import best_so_far

    fig, ax = _subplots((8, 5))
    for tid in shown:
        h = history[history["trial_id"] == tid]
        if h.empty:
            continue
        dense = h["role"].iloc[0] == DENSE_FAMILY
        f, lo = best_so_far(h["flops"], h["eval_loss"])
        ax.plot(f * 1e-12, lo, color="0.7" if dense else "#9ecae1", lw=0.8, zorder=1)
    ax.plot(env.grid * 1e-12, env.dense, color=_DENSE, lw=2.2, label="dense frontier (family envelope)", zorder=3)
    ax.plot(env.grid * 1e-12, env.sparse, color=_FRONT, lw=2.2, label="sparse frontier (trials' envelope)", zorder=3)
    for x, who in env.crossings:
        ax.axvline(x * 1e-12, color=_REF, lw=1, ls="--", zorder=2)
        ax.annotate(
            f"{who} ahead after {x:.3g}",
            (x * 1e-12, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )
    gains = [g for g in (env.last_gain("dense"), env.last_gain("sparse")) if g == g]
    if gains:  # past both last gains the envelopes are flat: show a little of that, not all of it
        ax.set_xlim(0, 1.25 * max(gains) * 1e-12)
    finite = np.concatenate([env.dense[~np.isnan(env.dense)], env.sparse[~np.isnan(env.sparse)]])
    if len(finite):
        bottom, top = float(finite.min()), float(np.percentile(finite, 90))
        pad = 0.05 * max(top - bottom, 0.1)
        ax.set_ylim(bottom - pad, top + pad)
    ax.set_xlabel("training FLOPs spent (TFLOP)")
    ax.set_ylabel("best held-out MLM loss so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Dense frontier against sparse frontier (grey/blue: each reached trial)", fontsize=11)
    fig.tight_layout()
    return fig


def rungs_png(points: list[tuple[float, float, float]], path: Path) -> Path:
    """FLOP speedup over the same-size dense against the target loss of each rung: the best sparse trial, the
    dense frontier (the best dense model of any size) and the same-size dense itself (1).

    Args:
        points: per rung, (target loss, best sparse trial's FLOP speedup over the same-size dense, the same
            trial's FLOP speedup over the frontier)."""
    fig, ax = _subplots((7, 4.5))
    losses = [p[0] for p in points]
    ax.plot(losses, [p[1] for p in points], "-o", color=_FRONT, lw=2, label="best sparse trial")
    ax.plot(losses, [p[1] / p[2] for p in points], "-s", color="#444444", lw=1.5, label="dense frontier (any size)")
    ax.axhline(1.0, color=_REF, ls="--", lw=1, label="same-size dense")
    ax.invert_xaxis()  # harder targets to the right
    ax.set_xlabel("target held-out loss (rung; harder to the right)")
    ax.set_ylabel("FLOP speedup over the same-size dense")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Speedup per target rung (net FLOPs)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    return path


def importances_png(importances: dict[str, float], path: Path, title: str) -> Path:
    """A bar chart of parameter importances; ``title`` should say how many trials they come from."""
    names = list(importances)[::-1]
    fig, ax = _subplots((7, 0.45 * len(names) + 1.4))
    ax.barh(names, [importances[n] for n in names], color=_FRONT)
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    _save(fig, path)
    return path


def pareto_html(df: pd.DataFrame, front_df: pd.DataFrame, path: Path, *, by: str = "net_time", title: str = "") -> Path:
    """The Pareto front, interactive (``pareto_plotly``), as HTML that loads the folder's plotly.min.js."""
    return write_html(pareto_plotly(df, front_df, by=by, title=title), path)


def pareto_plotly(df: pd.DataFrame, front_df: pd.DataFrame, *, by: str = "net_time", title: str = ""):
    """The Pareto front (``pareto_layers``) as a plotly Figure: the same layers and legend as the PNG; hover shows a
    trial's parameters and metrics, a click on a legend entry hides a layer."""
    import plotly.graph_objects as go

    col, (ylabel, scale) = OBJECTIVES[by], _AXIS[by]
    params = [c for c in df.attrs.get("params", []) if c in df.columns]

    def hover(r: pd.Series) -> str:
        lines = [
            f"<b>trial {r['trial']} ({r['trial_id']})</b>",
            f"status: {r['status']}",
            f"method: {r['method']}" + ("" if missing(r.get("size")) else f" (dense family size {int(r['size'])})"),
            f"sparsity: {r['avg_sparsity']:.3f}",
            f"net time: {r['net_time_s']:.1f} s" + (" (projected)" if r["projected"] else ""),
            f"net FLOPs: {r['net_flops']:.3g}",
            f"FLOP ratio: {r['flop_ratio']:.3f}",
            f"final eval loss: {r['final_eval_loss']:.4f}",
        ]
        if not missing(r.get("speedup")):
            lines.append(f"speedup vs same-size dense: {r['speedup']:.2f}x (FLOPs {r['flop_speedup']:.2f}x)")
        if not missing(r.get("frontier_speedup")):
            lines.append(
                f"speedup vs dense frontier: {r['frontier_speedup']:.2f}x (FLOPs {r['frontier_flop_speedup']:.2f}x)"
            )
        lines += [f"{k} = {value(r[k])}" for k in params if not missing(r[k])]
        return "<br>".join(lines)

    fig = go.Figure()
    for layer in pareto_layers(df, front_df, by=by):
        if layer.kind == "hline":
            style = dict(color=layer.colour, width=layer.width, dash=layer.dash)
            fig.add_trace(
                go.Scatter(x=[-3, 100], y=[layer.y] * 2, mode="lines", name=layer.name, line=style, hoverinfo="name")
            )
            continue
        assert layer.rows is not None
        front = layer.kind == "front"
        symbol = "circle-open" if front else _PLOTLY_MARKERS[layer.marker]
        marker = dict(color=layer.colour, size=layer.size, symbol=symbol, opacity=0.6 if layer.faint else 1.0)
        if front:
            marker["line"] = dict(width=2)
        mode = ("lines+markers" if front else "markers") + ("+text" if any(layer.labels) else "")
        fig.add_trace(
            go.Scatter(
                x=100 * layer.rows["avg_sparsity"],
                y=layer.rows[col] * scale,
                mode=mode,
                name=layer.name,
                marker=marker,
                line=dict(color=layer.colour, width=layer.width) if front else None,
                text=[hover(r) for _, r in layer.rows.iterrows()],
                hoverinfo="text",
                texttemplate=layer.labels or None,
                textposition="bottom right" if front else "middle right",
            )
        )
    fig.update_layout(
        title=title or "Pareto front",
        template="plotly_white",
        xaxis_title="average sparsity of the sparsifiable weights (%)",
        yaxis_title=ylabel + " (lower is better)",
        xaxis=dict(range=[-3, 100]),
    )
    return fig


def write_html(fig, path: Path) -> Path:
    """Write a plotly Figure as an HTML file that loads plotly.js from ``plotly.min.js`` beside it: one bundle per
    folder, however many figures, so each file stays small and still opens offline."""
    from plotly.offline import get_plotlyjs

    bundle, js = path.parent / PLOTLY_JS, get_plotlyjs().encode("utf-8")
    # plotly writes the bundle only when none is there: refresh one an older plotly left, which may not draw
    # figures of this version
    if not bundle.is_file() or bundle.read_bytes() != js:
        bundle.write_bytes(js)
    fig.write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path


def study_views(study, folder: Path, *, target_name: str, params: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Optuna's own views of a study's completed trials, as HTML files in ``folder`` sharing its plotly.min.js:
    the optimization history, a parallel coordinate plot (of ``params``: the parameters every completed trial
    has, so that no trial drops out) and slice plots (of every parameter). The first objective is drawn, named
    ``target_name``. Returns the files by view title, and one line per view that could not be drawn."""
    import optuna.visualization as vis

    multi = len(study.directions) > 1
    # Optuna draws the best-so-far line only for its own target, and needs a target for several objectives.
    target = (lambda t: t.values[0]) if multi else None
    kw: dict[str, Any] = dict(target=target, target_name=target_name)
    common = params or None  # none in common: Optuna's default, every parameter
    views = (
        ("optimization history", "study_history.html", lambda: vis.plot_optimization_history(study, **kw)),
        ("parallel coordinate", "study_parallel.html", lambda: vis.plot_parallel_coordinate(study, common, **kw)),
        ("slice", "study_slice.html", lambda: vis.plot_slice(study, **kw)),
    )
    files, problems = {}, []
    for name, file, draw in views:
        try:
            files[name] = write_html(draw(), folder / file)
        except Exception as e:  # one view Optuna cannot draw for this study is a note, not a failed report
            problems.append(f"{name}: not drawn ({type(e).__name__}: {e})")
    return files, problems


def front_json(front_df: pd.DataFrame, params: list[str], *, by: str, experiment: str, target) -> dict:
    """The front as plain JSON: experiment, objective, and one entry per trial with metrics and parameters."""
    metrics = (
        "avg_sparsity",
        "net_time_s",
        "net_flops",
        "flop_ratio",
        "time_to_target_s",
        "steps_to_target",
        "final_eval_loss",
        "speedup",
        "flop_speedup",
        "frontier_speedup",
        "frontier_flop_speedup",
    )
    points = []
    for _, r in front_df.iterrows():
        points.append(
            {
                "trial": int(r["trial"]),
                "trial_id": r["trial_id"],
                "reference": bool(r["reference"]),
                "method": r["method"],
                **{m: (None if missing(r[m]) else float(r[m])) for m in metrics},
                "params": {k: _plain(r[k]) for k in params if not missing(r[k])},
            }
        )
    return json.loads(
        json.dumps(
            {
                "experiment": experiment,
                "objective": by,
                "maximise": "avg_sparsity",
                "minimise": OBJECTIVES[by],
                "target_loss": target,
                "front": points,
            }
        )
    )


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    return v
