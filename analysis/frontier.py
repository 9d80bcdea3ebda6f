"""Tables and figure of the runs to a FLOP budget (``run_frontier.py``): each recipe against the best dense model.

For each target loss, a run's cost is the training FLOPs where its held-out loss first reached it, interpolated
between evaluations (the trainer's rule). The *dense frontier* at a target is the one dense configuration with the
fewest mean FLOPs among those that reach it on every seed (chosen once per target, then compared seed by seed); the
*same-size dense* is chosen alike among the 256-wide dense configurations. Speedups are paired by seed: geometric
means with log-scale 95% t intervals and the worst seed (``sparsesearch.results.stats.ratio_ci``). Targets: the
losses given, and the lowest loss the dense frontier reaches on every seed within the budget ("hardest").

Every number comes in two evaluation rules, from the same runs: the weight average (``ema``, the study's
anytime-fair rule) and the current weights (``current``); and in two accountings: all training FLOPs (the
headline) and FLOPs without the frozen decoder's matmuls.

    python analysis/frontier.py                          # markdown tables to stdout
    python analysis/frontier.py --figure analysis/figures/recipes.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analysis"))

from fair import flops_to  # the trainer's crossing rule, as the old study reads it

from sparsesearch.results.stats import mean_ci, ratio_ci

RESULTS = ROOT / "analysis" / "results" / "frontier_runs.jsonl"
TARGETS = (6.0, 5.9, 5.85, 5.80)
BUDGETS = (1e13, 2e13, 3e13)
RULES = {"ema": "eval_loss", "current": "eval_loss_current"}


def load(path: Path) -> pd.DataFrame:
    """One row per (configuration, seed, horizon): the last one stored."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows).drop_duplicates(["config", "seed", "horizon"], keep="last").reset_index(drop=True)
    corpora = set(df["corpus"])
    if len(corpora) > 1:
        print(
            f"warning: {path.name} mixes runs on {len(corpora)} corpora ({', '.join(sorted(corpora))})", file=sys.stderr
        )
    df["dense"] = [s["sparsity"]["method"] == "dense" for s in df["spec"]]
    df["hidden"] = [s["model"]["hidden_size"] for s in df["spec"]]
    df["lr"] = [s["train"]["lr"] for s in df["spec"]]
    return df


def final_loss(row: dict) -> float:
    """A run's loss at its budget, smoothed: the mean evaluated (EMA) loss over its last tenth of FLOPs (inf if the
    run diverged there); the study's rule for choosing a family's learning rate."""
    hist = row["history"]
    last = [h["eval_loss"] for h in hist if h["flops"] >= 0.9 * hist[-1]["flops"]]
    return sum(last) / len(last) if all(map(math.isfinite, last)) else math.inf


def curve(history: list[dict], rule: str, decoder: bool = True) -> list[dict]:
    """(flops, loss) points of one run under an evaluation rule; ``decoder`` False: FLOPs without the decoder."""
    key = RULES[rule]
    return [
        {"flops": h["flops"] - (0.0 if decoder else h["decoder_flops"]), "eval_loss": h[key]}
        for h in history
        if key in h
    ]


def loss_at(points: list[dict], flops: float) -> float:
    """The loss at ``flops``, linear between evaluations (nan past the last one)."""
    for a, b in itertools.pairwise(points):
        if a["flops"] <= flops <= b["flops"]:
            t = (flops - a["flops"]) / (b["flops"] - a["flops"]) if b["flops"] > a["flops"] else 1.0
            return a["eval_loss"] + t * (b["eval_loss"] - a["eval_loss"])
    return math.nan


def costs(df: pd.DataFrame, loss: float, rule: str, decoder: bool = True) -> pd.DataFrame:
    """configuration x seed -> FLOPs to ``loss``."""
    f = [flops_to(curve(h, rule, decoder), loss) for h in df["history"]]
    return df.assign(f=f).pivot(index="config", columns="seed", values="f")


def best_dense(c: pd.DataFrame, df: pd.DataFrame, hidden: int | None = None) -> str | None:
    """The dense configuration (of ``hidden``, or any width) with the fewest mean FLOPs among those that reach
    the target on every seed."""
    pick = df["dense"] & ((df["hidden"] == hidden) if hidden is not None else True)
    dense = c.loc[sorted(set(df.loc[pick, "config"]) & set(c.index))]
    full = dense[dense.notna().all(axis=1)]
    return None if full.empty else str(full.mean(axis=1).idxmin())


def hardest(df: pd.DataFrame, rule: str) -> float:
    """The lowest loss some dense configuration reaches on every seed within the budget."""
    dense = df[df["dense"]]
    lows = [min(p["eval_loss"] for p in curve(h, rule)) for h in dense["history"]]
    return float(dense.assign(low=lows).groupby("config")["low"].max().min())


def ci_text(ratios: pd.Series) -> str:
    """Geometric mean [95% interval] (worst seed) of speedups over seeds."""
    x = [v for v in ratios if v == v]
    if not x:
        return "–"
    if len(x) == 1:
        return f"{x[0]:.2f}"
    mean, lo, hi = ratio_ci(x)
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}] (worst {min(x):.2f})"


def speedup_table(df: pd.DataFrame, rule: str, decoder: bool = True) -> str:
    """Per target and configuration: seeds that reached it, mean FLOPs, and the speedups over the dense frontier
    and over the same-size dense (dense FLOPs over the configuration's, paired by seed)."""
    head = ["target loss", "configuration", "reached", "FLOPs (mean)", "vs dense frontier", "vs same-size dense"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for loss in [*TARGETS, hardest(df, rule)]:
        c = costs(df, loss, rule, decoder)
        front, same = best_dense(c, df), best_dense(c, df, hidden=256)
        for name in dict.fromkeys(df["config"]):
            row = c.loc[name]
            mark = " (frontier)" if name == front else " (same-size)" if name == same else ""
            cells = [f"{loss:.4f}", f"`{name}`{mark}", f"{int(row.notna().sum())}/{len(row)}"]
            cells.append(f"{row.mean():.3g}" if row.notna().all() else "–")
            cells.append(ci_text(c.loc[front] / row) if front and name != front else "–")
            cells.append(ci_text(c.loc[same] / row) if same and name != same else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_table(df: pd.DataFrame) -> str:
    """Mean loss [95% t interval] at each budget, under both evaluation rules."""
    head = ["configuration", "seeds", "steps"] + [f"{rule} @ {b:.0e}" for rule in RULES for b in BUDGETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, g in df.groupby("config", sort=False):
        cells = [f"`{name}`", str(len(g)), f"{int(g['history'].map(lambda h: h[-1]['step']).mean())}"]
        for rule in RULES:
            for b in BUDGETS:
                m, lo, hi = mean_ci([loss_at(curve(h, rule), b) for h in g["history"]])
                cells.append("–" if m != m else f"{m:.4f}" + ("" if lo != lo else f" ±{(hi - lo) / 2:.4f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def edge_lines(df: pd.DataFrame, rule: str, loss: float) -> list[str]:
    """Configurations that differ only in the learning rate: a warning where the best rate (fewest mean FLOPs to
    ``loss``) is the lowest or highest one tried (the optimum may lie outside)."""
    c = costs(df, loss, rule)
    out = []
    family = df.assign(key=[json.dumps({**s, "train": {**s["train"], "lr": None, "seed": None}}) for s in df["spec"]])
    for _, g in family.groupby("key"):
        rates = sorted(set(g["lr"]))
        if len(rates) < 2:
            continue
        mean = {lr: c.loc[sorted(set(g.loc[g["lr"] == lr, "config"]))].mean(axis=1).min() for lr in rates}
        best = min(mean, key=lambda lr: mean[lr] if mean[lr] == mean[lr] else math.inf)
        if best in (rates[0], rates[-1]):
            out.append(f"warning: {sorted(set(g['config']))}: the best rate {best:g} is at the edge of {rates}")
    return out


def figure(df: pd.DataFrame, path: Path) -> None:
    """Mean held-out loss (weight average) against training FLOPs per configuration, with the seeds' range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    grid = np.linspace(2e12, df["history"].map(lambda h: h[-1]["flops"]).min(), 120)
    cmap = plt.get_cmap("tab10")
    for i, (name, g) in enumerate(df.groupby("config", sort=False)):
        ys = np.array([[loss_at(curve(h, "ema"), x) for x in grid] for h in g["history"]])
        dense = bool(g["dense"].iloc[0])
        ax.plot(grid * 1e-12, np.nanmean(ys, axis=0), color=cmap(i % 10), ls="--" if dense else "-", label=name)
        ax.fill_between(grid * 1e-12, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), color=cmap(i % 10), alpha=0.15)
    for t in TARGETS:
        ax.axhline(t, color="black", lw=0.6, ls=":")
    ax.set_ylim(5.2, 6.4)
    ax.set_xlabel("training FLOPs (TFLOP)")
    ax.set_ylabel("held-out MLM loss of the weight average")
    ax.set_title("Recipes against dense at equal FLOPs (mean over seeds, band: min-max; dashed: dense)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--figure", type=Path, help="also draw the loss-against-FLOPs figure here")
    args = p.parse_args(argv)
    df = load(args.results)
    print(f"{len(df)} runs on corpus {', '.join(sorted(set(df['corpus'])))}\n")
    print("## Held-out loss at equal FLOPs (mean ± 95% half-interval)\n")
    print(loss_table(df) + "\n")
    for rule in RULES:
        print(f"## FLOPs to target, {rule} weights (all training FLOPs)\n")
        print(speedup_table(df, rule) + "\n")
    print("## FLOPs to target, ema weights, without the frozen decoder's FLOPs\n")
    print(speedup_table(df, "ema", decoder=False) + "\n")
    for line in edge_lines(df, "ema", TARGETS[-1]) or [
        "no configuration group tried more than one rate, or none at an edge"
    ]:
        print(line)
    if args.figure:
        figure(df, args.figure)
        print(f"\nfigure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
