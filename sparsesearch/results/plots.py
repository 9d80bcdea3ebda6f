"""Figures of an experiment: the Pareto front (PNG and interactive HTML), loss curves, parameter importances.

Each function takes the tables of ``results`` and writes one file; none reads the experiment itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..definitions import REACHED
from ..experiment import DENSE_FAMILY
from .format import missing, value
from .pareto import OBJECTIVES

_AXIS = {"net_time": ("net time to target (s)", 1.0), "net_flops": ("net FLOPs to target (TFLOP)", 1e-12)}
_FRONT, _REF, _GREY = "#1f77b4", "#d62728", "#9a9a9a"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _dense_family(df: pd.DataFrame) -> pd.Series:
    """Rows of dense family trials (tables of older experiments have no role column)."""
    if "role" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["role"] == DENSE_FAMILY


def _ref(df: pd.DataFrame) -> pd.Series | None:
    r = df[df["reference"] & (df["status"] == REACHED)]
    return r.iloc[0] if len(r) else None


def pareto_png(df: pd.DataFrame, front_df: pd.DataFrame, path: Path, *, by: str = "net_time", title: str = "") -> Path:
    """Every trial in grey, the front highlighted and connected, the dense family (other sizes and configurations)
    as squares, the best same-size dense (the reference) marked."""
    plt = _plt()
    col, (ylabel, scale) = OBJECTIVES[by], _AXIS[by]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    family = _dense_family(df) & (df["status"] == REACHED) & ~df["reference"]
    reached = df[(df["status"] == REACHED) & ~df["reference"] & ~family]
    if family.any():
        ax.scatter(
            100 * df.loc[family, "avg_sparsity"],
            df.loc[family, col] * scale,
            s=34,
            marker="s",
            color="#444444",
            label=f"dense family: other sizes and configurations ({int(family.sum())})",
            zorder=2,
        )
    others = df[(df["status"] != REACHED) & df[col].map(lambda v: not missing(v) and math.isfinite(v))]
    ax.scatter(
        100 * reached["avg_sparsity"],
        reached[col] * scale,
        s=28,
        color=_GREY,
        alpha=0.8,
        label=f"reached the target ({len(reached)})",
        zorder=2,
    )
    if len(others):
        ax.scatter(
            100 * others["avg_sparsity"],
            others[col] * scale,
            s=26,
            marker="x",
            color="#c8c8c8",
            label=f"not reached: projected, never on the front ({len(others)})",
            zorder=1,
        )
    if len(front_df):
        ax.plot(
            100 * front_df["avg_sparsity"],
            front_df[col] * scale,
            "-o",
            color=_FRONT,
            lw=2,
            ms=7,
            label=f"Pareto front ({len(front_df)})",
            zorder=3,
        )
    ref = _ref(df)
    if ref is not None:
        y = ref[col] * scale
        ax.axhline(y, color=_REF, ls="--", lw=1, zorder=0)
        ax.axhline(y / 2, color=_REF, ls=":", lw=1, zorder=0)
        ax.scatter([0], [y], marker="*", s=220, color=_REF, label="best same-size dense", zorder=4)
        ax.annotate("dense", (0, y), xytext=(4, 4), textcoords="offset points", color=_REF, fontsize=9)
        ax.annotate(
            "2x faster than dense", (0, y / 2), xytext=(4, 4), textcoords="offset points", color=_REF, fontsize=9
        )
        for _, r in front_df.iterrows():
            if not r["reference"]:
                ax.annotate(
                    f"{ref[col] / r[col]:.2f}x",
                    (100 * r["avg_sparsity"], r[col] * scale),
                    xytext=(5, -12),
                    textcoords="offset points",
                    color=_FRONT,
                    fontsize=8,
                )
    ax.set_xlabel("average sparsity of the sparsifiable weights (%)")
    ax.set_ylabel(ylabel + ("  (lower is better)"))
    ax.set_xlim(-3, 100)
    top = max([v for v in (df[col] * scale).tolist() if not missing(v) and math.isfinite(v)], default=1.0)
    ax.set_ylim(0, top * 1.12)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_title(title or "Pareto front: sparsity vs. " + ylabel.split(" (")[0], fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def curves_png(
    history: pd.DataFrame, trial_ids: list[str], labels: dict[str, str], target: float | None, path: Path
) -> Path:
    """Held-out loss against cumulative FLOPs actually spent, one line per trial."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
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
            color=_REF if ref else plt.cm.viridis(i / max(1, len(trial_ids))),
            lw=2 if ref else 1.5,
            label=labels.get(tid, tid),
        )
    if target is not None:
        ax.axhline(target, color="black", lw=0.8, ls=":")
        ax.annotate(f"target {target:.3f}", (0, target), xytext=(2, 3), textcoords="offset points", fontsize=8)
    ax.set_xlabel("cumulative training FLOPs actually needed (TFLOP)")
    ax.set_ylabel("held-out MLM loss")
    ax.grid(alpha=0.3)
    if target is not None:
        lo = min(history["eval_loss"].min(), target)
        ax.set_ylim(lo - 0.1, target + 1.5)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Held-out loss against compute: the front and the best same-size dense", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def rungs_png(points: list[tuple[float, float, float]], path: Path) -> Path:
    """FLOP speedup over the same-size dense against the target loss of each rung: the best sparse trial, the
    dense frontier (the best dense model of any size) and the same-size dense itself (1).

    Args:
        points: per rung, (target loss, best sparse trial's FLOP speedup over the same-size dense, the same
            trial's FLOP speedup over the frontier)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
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
    fig.savefig(path)
    plt.close(fig)
    return path


def importances_png(importances: dict[str, float], path: Path, title: str) -> Path:
    """A bar chart of parameter importances."""
    plt = _plt()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4), dpi=120)
    ax.barh(names, [importances[n] for n in names], color=_FRONT)
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pareto_html(df: pd.DataFrame, front_df: pd.DataFrame, path: Path, *, by: str = "net_time", title: str = "") -> Path:
    """The same plot, interactive: hover shows a trial's parameters and metrics. plotly.js is embedded, so
    the file opens offline."""
    import plotly.graph_objects as go

    col, (ylabel, scale) = OBJECTIVES[by], _AXIS[by]
    params = [c for c in df.attrs.get("params", []) if c in df.columns]
    on_front = set(front_df["trial_id"])

    def hover(r: pd.Series) -> str:
        lines = [
            f"<b>trial {r['trial']} ({r['trial_id']})</b>",
            f"status: {r['status']}",
            f"method: {r['method']}",
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
    finite = df[df[col].map(lambda v: not missing(v) and math.isfinite(v))]
    groups = [
        (
            "reached the target",
            finite[
                (finite["status"] == REACHED)
                & ~finite["reference"]
                & ~finite["trial_id"].isin(on_front)
                & ~_dense_family(finite)
            ],
            dict(color=_GREY, size=8),
        ),
        (
            "dense family: other sizes and configurations",
            finite[(finite["status"] == REACHED) & ~finite["reference"] & _dense_family(finite)],
            dict(color="#444444", size=9, symbol="square"),
        ),
        ("not reached (projected)", finite[finite["status"] != REACHED], dict(color="#c8c8c8", size=8, symbol="x")),
        (
            "best same-size dense",
            finite[finite["reference"] & (finite["status"] == REACHED)],
            dict(color=_REF, size=16, symbol="star"),
        ),
    ]
    for name, part, marker in groups:
        if len(part):
            fig.add_trace(
                go.Scatter(
                    x=100 * part["avg_sparsity"],
                    y=part[col] * scale,
                    mode="markers",
                    name=f"{name} ({len(part)})",
                    marker=marker,
                    text=[hover(r) for _, r in part.iterrows()],
                    hoverinfo="text",
                )
            )
    if len(front_df):
        fig.add_trace(
            go.Scatter(
                x=100 * front_df["avg_sparsity"],
                y=front_df[col] * scale,
                mode="lines+markers",
                name=f"Pareto front ({len(front_df)})",
                marker=dict(color=_FRONT, size=10),
                line=dict(color=_FRONT, width=2),
                text=[hover(r) for _, r in front_df.iterrows()],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title or "Pareto front",
        template="plotly_white",
        xaxis_title="average sparsity of the sparsifiable weights (%)",
        yaxis_title=ylabel + " (lower is better)",
        xaxis=dict(range=[-3, 100]),
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


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
