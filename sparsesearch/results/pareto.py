"""The Pareto front of net time (or net FLOPs) vs. average sparsity over trials that reached the target."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..definitions import is_finite

OBJECTIVES = {"net_time": "net_time_s", "net_flops": "net_flops"}


def non_dominated(cost: Sequence[float], gain: Sequence[float]) -> list[bool]:
    """Which points no other point dominates, minimising ``cost`` and maximising ``gain``.

    A point is dominated when another is at least as good in both and strictly better in one; identical
    points do not dominate each other, so ties on the front are all kept. O(n log n): sweep by increasing
    cost, keeping the best gain seen at strictly lower cost.
    """
    n = len(cost)
    if len(gain) != n:
        raise ValueError(f"cost and gain differ in length ({n} vs {len(gain)})")
    order = sorted(range(n), key=lambda i: (cost[i], -gain[i]))
    keep = [False] * n
    best_below = -math.inf  # best gain among points of strictly lower cost
    i = 0
    while i < n:
        j = i
        while j < n and cost[order[j]] == cost[order[i]]:
            j += 1
        group = order[i:j]  # equal cost: only the highest gain can survive, and only if it beats lower cost
        top = gain[group[0]]
        for k in group:
            keep[k] = gain[k] == top and top > best_below
        best_below = max(best_below, top)
        i = j
    return keep


def front_mask(df: pd.DataFrame, by: str = "net_time") -> pd.Series:
    """Rows of a trial table (``results.load_results``) on the front; only reached, finite trials qualify."""
    col = _column(by)
    ok = (df["status"] == "reached") & df[col].map(is_finite) & df["avg_sparsity"].map(is_finite)
    mask = pd.Series(False, index=df.index)
    if ok.any():
        sub = df[ok]
        mask.loc[sub.index] = non_dominated(sub[col].tolist(), sub["avg_sparsity"].tolist())
    return mask


def front(df: pd.DataFrame, by: str = "net_time") -> pd.DataFrame:
    """The front's trials, by increasing sparsity."""
    return df[front_mask(df, by)].sort_values(["avg_sparsity", _column(by)], kind="stable")


def _column(by: str) -> str:
    if by not in OBJECTIVES:
        raise ValueError(f"by: unknown objective {by!r}; choices: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[by]
