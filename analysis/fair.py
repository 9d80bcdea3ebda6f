"""The study's fair comparison: sparse runs against the best dense model of any size, at every target loss.

Reads ``results/fair_runs.jsonl`` (written by run_fair.py: every run trained its whole budget, with the held-out
loss and cumulative FLOPs at each evaluation). A target is the loss the seed-0 ``dense_256_lr0.002`` run (the
spec's own model and configuration) had after N steps, as rigl.yaml's ``target.dense_steps`` defines its ladder.
A run's cost to a target is the cumulative FLOPs actually needed where its loss first reached it, interpolated
between the evaluations around it: the trainer's own rule.
For each target the *dense frontier* is the one dense configuration (width and learning rate) with the fewest
mean FLOPs over seeds among those that reach it on every seed: chosen once per target, then compared seed by
seed, so picking the luckiest seed of several dense configurations does not flatter dense. The *same-size dense*
is chosen the same way among the dense configurations of the spec's own width (its learning rates). Below the
*hardest* target (the lowest loss some dense configuration reaches on every seed) there is no frontier.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from sparsesearch.definitions import at_target
from sparsesearch.results.stats import ratio_ci

REFERENCE = "dense_256_lr0.002"  # the spec's own model and configuration: it defines the targets
LADDER = (200, 500, 1000, 1200)  # rigl.yaml's rungs (1000 is its objective) and the end of its budget


def load(path: Path) -> pd.DataFrame:
    """One row per (configuration, seed), the last one stored when a pair was run twice."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows).drop_duplicates(["config", "seed"], keep="last").reset_index(drop=True)
    corpora = {r.get("corpus", "not recorded") for r in rows}
    if len(corpora) > 1:  # runs on different token ids: compared all the same, but not silently
        print(
            f"warning: {path.name} mixes runs on {len(corpora)} corpora ({', '.join(sorted(corpora))})", file=sys.stderr
        )
    df["dense"] = [r["sparsity"]["method"] == "dense" for r in df["spec"]]
    df["hidden"] = [r["model"]["hidden_size"] for r in df["spec"]]
    return df


def flops_to(history: list[dict], loss: float) -> float:
    """Cumulative FLOPs where the held-out loss first reached ``loss``, interpolated between the two evaluations
    around it as the trainer does for its targets (nan if the run never got there)."""
    prev = None
    for h in history:
        if h["eval_loss"] <= loss:
            return float(at_target(prev, h, loss, ("flops",))["flops"])
        prev = h
    return math.nan


def targets(df: pd.DataFrame, steps: tuple[int, ...] = LADDER) -> dict[int, float]:
    """Dense steps -> the seed-0 reference run's held-out loss after that many steps."""
    ref = df[(df["config"] == REFERENCE) & (df["seed"] == 0)]
    if ref.empty:
        raise SystemExit(f"fair_runs.jsonl has no {REFERENCE} run on seed 0: it defines the targets")
    at = {h["step"]: h["eval_loss"] for h in ref.iloc[0]["history"]}
    return {n: at[n] for n in steps if n in at}


def hardest(df: pd.DataFrame) -> float:
    """The lowest loss some dense configuration reaches on every seed within the budget: the hardest target at
    which the comparison with the dense frontier is still defined."""
    dense = df[df["dense"]]
    worst = dense.assign(best=[min(h["eval_loss"] for h in hist) for hist in dense["history"]])
    return float(worst.groupby("config")["best"].max().min())


def ladder(df: pd.DataFrame) -> list[tuple[str, float]]:
    """(label, loss) of every target the study reports: the reference run's rungs, then the hardest target."""
    rungs = [(str(n), loss) for n, loss in targets(df).items()]
    return rungs + [("hardest dense-reachable", hardest(df))]


def cost_table(df: pd.DataFrame, loss: float) -> pd.DataFrame:
    """configuration x seed -> FLOPs to ``loss``."""
    return df.assign(f=[flops_to(h, loss) for h in df["history"]]).pivot(index="config", columns="seed", values="f")


def frontier(costs: pd.DataFrame, df: pd.DataFrame, hidden: int | None = None) -> str | None:
    """The dense configuration (of width ``hidden``, or any) with the fewest mean FLOPs among those reaching the
    target on every seed."""
    pick = df["dense"] & (df["hidden"] == hidden if hidden is not None else True)
    dense = costs.loc[sorted(set(df.loc[pick, "config"]) & set(costs.index))]
    full = dense[dense.notna().all(axis=1)]
    return None if full.empty else str(full.mean(axis=1).idxmin())


def _ms(x: pd.Series) -> str:
    """Geometric mean of speedups over seeds with its 95% t confidence interval (taken on the log scale, where a
    ratio's noise is symmetric and the interval stays positive), and the worst seed."""
    x = x.dropna()
    if x.empty:
        return "–"
    if len(x) == 1:
        return f"{x.iloc[0]:.2f}"
    mean, lo, hi = ratio_ci(list(x))
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}] (worst {x.min():.2f})"


def gmean(x: pd.Series) -> float:
    """Geometric mean over the seeds that have a value (nan if none)."""
    return ratio_ci(list(x.dropna()))[0]


def paired_p(speedup: pd.Series) -> float:
    """Two-sided paired t-test, over seeds, of log FLOPs against the comparison's (a one-sample test of the log
    speedup against 0); nan with fewer than two seeds or when every seed gives the same speedup."""
    x = [math.log(v) for v in speedup.dropna()]
    if len(x) < 2 or max(x) == min(x):
        return math.nan
    return float(stats.ttest_1samp(x, 0.0).pvalue)


def speedups(df: pd.DataFrame, loss: float) -> tuple[pd.DataFrame, str | None]:
    """Per configuration: seeds reached, mean FLOPs, and its speedup over the same-size dense and over the
    frontier, paired by seed (nan where either side missed the target on that seed)."""
    costs = cost_table(df, loss)
    best = frontier(costs, df)
    same = frontier(costs, df, hidden=int(df["hidden"].max()))
    rows = []
    for config, c in costs.iterrows():
        rows.append(
            {
                "config": config,
                "dense": bool(df.loc[df["config"] == config, "dense"].iloc[0]),
                "reached": int(c.notna().sum()),
                "seeds": int((df["config"] == config).sum()),
                "flops": c.mean(),
                "vs_same": costs.loc[same] / c if same else c * math.nan,
                "vs_frontier": costs.loc[best] / c if best else c * math.nan,
            }
        )
    return pd.DataFrame(rows).assign(same=same), best


def ladder_table(df: pd.DataFrame, sparse: list[str]) -> str:
    """One row per target: the frontier, and each sparse configuration's speedups over same-size and frontier."""
    head = ["target (dense-256 steps)", "loss", "dense frontier", "frontier FLOPs", "same-size dense", "its FLOPs"]
    head += [f"`{c}`: vs same-size / vs frontier" for c in sparse]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, loss in ladder(df):
        s, best = speedups(df, loss)
        same = s["same"].iloc[0]
        s = s.set_index("config")
        cells = [label, f"{loss:.4f}", f"`{best}`" if best else "none on every seed"]
        cells += [f"{s.loc[best, 'flops']:.3g}" if best else "–"]
        cells += [f"`{same}`", f"{s.loc[same, 'flops']:.3g}"] if same else ["none on every seed", "–"]
        for c in sparse:
            if c not in s.index:
                cells.append("–")
                continue
            r = s.loc[c]
            cells.append(f"{_ms(r['vs_same'])} / {_ms(r['vs_frontier'])} ({r['reached']}/{r['seeds']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def config_table(df: pd.DataFrame, steps: int) -> str:
    """Every configuration at one target: seeds reached, FLOPs to it, loss at the end of the budget."""
    loss = targets(df)[steps]
    s, best = speedups(df, loss)
    final = {(c, sd): h[-1]["eval_loss"] for c, sd, h in zip(df["config"], df["seed"], df["history"])}
    head = [
        "configuration",
        "hidden",
        "sparsity",
        "seeds reached",
        "FLOPs to target (mean)",
        "speedup vs same-size dense",
        "speedup vs frontier",
        "paired t-test vs frontier (p)",
        "loss after the budget",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in s.sort_values(["dense", "flops"], ascending=[False, True]).iterrows():
        g = df[df["config"] == r["config"]]
        ends = pd.Series([final[(r["config"], sd)] for sd in g["seed"]])
        mark = " (frontier)" if r["config"] == best else " (same-size)" if r["config"] == r["same"] else ""
        lines.append(
            f"| `{r['config']}`{mark} | {g['hidden'].iloc[0]} | {g['avg_sparsity'].mean():.2f} | "
            f"{r['reached']}/{r['seeds']} | {r['flops']:.3g} | {_ms(r['vs_same'])} | {_ms(r['vs_frontier'])} | "
            f"{_p(paired_p(r['vs_frontier']))} | {ends.mean():.4f} |"
        )
    return "\n".join(lines)


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3f}"


def figure(df: pd.DataFrame, sparse: list[str], path: Path) -> None:
    """Left: loss against FLOPs, every run. Right: each sparse configuration's speedup over the frontier and
    over the same-size dense (mean over seeds) against the target's difficulty (dense-256 steps to it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), dpi=120)
    cmap = plt.get_cmap("tab20")
    configs = list(dict.fromkeys(df.sort_values(["dense", "hidden"], ascending=[False, False])["config"]))
    for i, c in enumerate(configs):
        g = df[df["config"] == c]
        dense = bool(g["dense"].iloc[0])
        for j, (_, r) in enumerate(g.iterrows()):
            h = pd.DataFrame(r["history"])
            left.plot(
                h["flops"] * 1e-12,
                h["eval_loss"],
                color=cmap(i % 20),
                lw=1.0,
                alpha=0.8,
                ls="--" if dense else "-",
                label=c if j == 0 else None,
            )
    marks = targets(df)
    for steps, loss in marks.items():
        left.axhline(loss, color="black", lw=0.6, ls=":")
        left.annotate(f"dense-256 @ {steps}", (0, loss), xytext=(2, 2), textcoords="offset points", fontsize=7)
    lo = min(marks.values())
    left.set_ylim(lo - 0.25, lo + 1.3)
    left.set_xlabel("cumulative training FLOPs actually needed (TFLOP)")
    left.set_ylabel("held-out MLM loss")
    left.set_title("Loss against compute (dashed: dense widths; every seed)", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=7)

    # Targets on an even grid of losses from the first rung to the hardest one a dense configuration reaches on
    # every seed (the reference curve itself is noisy, so a grid of its steps would zigzag); harder to the right.
    first, last = max(marks.values()), hardest(df)
    grid = [first + (last - first) * k / 40 for k in range(41)]
    for c in sparse:
        xs, front_mean, same_mean = [], [], []
        for loss in grid:
            s, _ = speedups(df, loss)
            row = s[s["config"] == c]
            if row.empty:
                continue
            xs.append(loss)
            front_mean.append(gmean(row.iloc[0]["vs_frontier"]))
            same_mean.append(gmean(row.iloc[0]["vs_same"]))
        color = cmap(configs.index(c) % 20)
        right.plot(xs, front_mean, color=color, marker="o", ms=3, label=f"{c}: vs dense frontier")
        right.plot(xs, same_mean, color=color, ls=":", label=f"{c}: vs same-size dense")
    for steps, loss in marks.items():
        right.axvline(loss, color="black", lw=0.6, ls=":")
        right.annotate(f"@{steps}", (loss, 1.0), xytext=(2, -12), textcoords="offset points", fontsize=7)
    right.invert_xaxis()
    right.axhline(1.0, color="#d62728", ls="--", lw=1)
    right.set_xlabel("target loss, harder to the right (dotted: dense-256's loss after N steps)")
    right.set_ylabel("FLOP speedup (dense / sparse, geometric mean over seeds)")
    right.set_title("Does sparse beat dense? Above the red line it does", fontsize=10)
    right.grid(alpha=0.3)
    bottom, top = right.get_ylim()
    right.set_ylim(bottom, top + 0.45 * (top - bottom))  # room for the legend above the curves
    right.legend(fontsize=7, ncol=2, loc="upper center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
