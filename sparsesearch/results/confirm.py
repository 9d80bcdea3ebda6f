"""Confirmation on more seeds: which search trials to repeat, and what the repeats say.

After a search, the ``search.confirm.top`` best sparse configurations and the best dense configuration of each
family size run again on ``search.confirm.seeds`` further seeds (``train.seed`` + 1, + 2, ...): the search
picked its winners on one seed, so their numbers there are biased upwards. Per configuration: the mean and the
95% t-based confidence interval of net FLOPs and net time over the seeds that reached the target; per sparse
configuration: its speedups over the same-size dense and over the dense frontier, *paired by seed* (each seed's
sparse run against the dense runs of the same seed), with their mean and confidence interval. An interval that
excludes 1 is a difference at the 5% level.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..definitions import REACHED
from ..experiment import CONFIRM_DIR, CONFIRM_OF, DENSE_FAMILY, SPARSE
from .pareto import OBJECTIVES
from .stats import mean_ci, ratio_ci
from .table import experiment_dir, load_results


def confirm_picks(df: pd.DataFrame, top: int, objective: str) -> list[str]:
    """Trial ids to confirm: the ``top`` best sparse trials that reached the target, and the best dense trial of
    each family size that did (by the search's objective)."""
    col = OBJECTIVES[objective]
    reached = df[df["status"] == REACHED]
    picks = list(reached[reached["role"] == SPARSE].sort_values(col)["trial_id"].head(top))
    dense = reached[reached["role"] == DENSE_FAMILY]
    for _, g in dense.groupby("size", sort=True):
        picks.append(str(g.sort_values(col)["trial_id"].iloc[0]))
    return picks


def confirm_configs(df: pd.DataFrame, picks: list[str], seed: int, seeds: int) -> list[dict[str, Any]]:
    """The confirmation runs: each pick's configuration on the seeds after ``seed``."""
    configs = df.attrs["configs"]
    return [{**configs[t], "train.seed": seed + k, CONFIRM_OF: t} for t in picks for k in range(1, seeds + 1)]


def load_confirmation(path: str | Path) -> pd.DataFrame:
    """One row per confirmation run (empty when the experiment has none): the search trial it repeats
    (``confirm_of``), its seed, and the columns of the trial table."""
    exp = experiment_dir(path)
    if not (exp / CONFIRM_DIR).is_dir():
        return pd.DataFrame()
    df = load_results(exp / CONFIRM_DIR)
    configs = df.attrs["configs"]
    df[CONFIRM_OF] = df["trial_id"].map(lambda t: configs.get(t, {}).get(CONFIRM_OF))
    df["seed"] = df["trial_id"].map(lambda t: configs.get(t, {}).get("train.seed"))
    return df


def confirmation_table(runs: pd.DataFrame, search: pd.DataFrame) -> pd.DataFrame:
    """Per confirmed configuration: seeds reached, mean and 95% CI of net FLOPs and net time, and for sparse
    ones the speedups paired by seed over the same-size dense and the dense frontier (their geometric mean and
    95% CI on the log scale: ``stats.ratio_ci``)."""
    if runs.empty:
        return pd.DataFrame()
    ok = runs[runs["status"] == REACHED]
    dense = ok[ok["role"] == DENSE_FAMILY]
    same = dense[dense["size"] == 0].groupby("seed")[["net_time_s", "net_flops"]].min()
    frontier = dense.groupby("seed")[["net_time_s", "net_flops"]].min()
    trials = search.drop_duplicates("trial_id").set_index("trial_id")
    rows = []
    for pick, g in runs.groupby(CONFIRM_OF, sort=False):
        if pick not in trials.index:  # the search trial it repeats is gone from the experiment: nothing to name
            continue
        info = trials.loc[pick]
        reached = g[g["status"] == REACHED]
        row: dict[str, Any] = {
            "trial": info["trial"],
            "trial_id": pick,
            "role": info["role"],
            "size": info["size"],
            "method": info["method"],
            "avg_sparsity": info["avg_sparsity"],
            "seeds": len(g),
            "reached": len(reached),
        }
        for col in ("net_flops", "net_time_s"):
            row[col], row[col + "_lo"], row[col + "_hi"] = mean_ci(list(reached[col]))
        if info["role"] == SPARSE:
            by_seed = reached.groupby("seed")[["net_time_s", "net_flops"]].min()
            for ref, name in ((same, ""), (frontier, "frontier_")):
                for col, out in (("net_time_s", "speedup"), ("net_flops", "flop_speedup")):
                    both = by_seed.index.intersection(ref.index)
                    paired = [float(ref.loc[s, col] / by_seed.loc[s, col]) for s in both]
                    key = name + out
                    row[key], row[key + "_lo"], row[key + "_hi"] = ratio_ci(paired)
                    row[key + "_pairs"] = len(paired)
        rows.append(row)
    return pd.DataFrame(rows)


def confirmation_lines(table: pd.DataFrame) -> list[str]:
    """The confirmation in readable lines: one per configuration."""
    if table.empty:
        return []
    out = [
        f"confirmation on {int(table['seeds'].max())} more seeds (mean [95% CI]; speedups paired by seed, their "
        "geometric mean):"
    ]
    for _, r in table.iterrows():
        what = f"dense size {int(r['size'])}" if r["role"] == DENSE_FAMILY else f"{r['method']} {r['avg_sparsity']:.2f}"
        line = (
            f"  trial {r['trial']} ({what}): {r['reached']}/{r['seeds']} reached; net FLOPs "
            f"{ci_text(r, 'net_flops', '.3g')}, net time {ci_text(r, 'net_time_s', '.1f')} s"
        )
        if r["role"] == SPARSE:
            same, frontier = ci_text(r, "flop_speedup", ".2f"), ci_text(r, "frontier_flop_speedup", ".2f")
            line += f"; FLOP speedup {same} same-size, {frontier} frontier"
        out.append(line)
    return out


def ci_text(row: pd.Series, key: str, spec: str) -> str:
    """A mean with its confidence interval, e.g. 1.32 [1.10, 1.54]; '–' without a value."""
    mean, lo, hi = row.get(key, math.nan), row.get(key + "_lo", math.nan), row.get(key + "_hi", math.nan)
    if mean != mean:
        return "–"
    return f"{mean:{spec}}" + ("" if lo != lo else f" [{lo:{spec}}, {hi:{spec}}]")
