"""Optima at the edge of a searched range: the best configuration of each dense size and of the sparse search,
checked for a searched value within 5% of a bound of its range (on the log scale for log distributions), where
the optimum may lie outside and the comparison is not yet fair."""

from __future__ import annotations

import math

import pandas as pd

from ..definitions import REACHED, is_finite
from ..experiment import DENSE_FAMILY, SPARSE, base_raw
from ..spec import SpecError, search_params, spec_from_dict
from .pareto import OBJECTIVES
from .table import spec_value

EDGE = 0.05  # the share of a range, at either end, that counts as its edge
RANGES = ("uniform", "loguniform", "int", "int_log")


def edge_share(value: float, low: float, high: float, log: bool) -> float:
    """Where ``value`` sits in [low, high], from 0 to 1 (on the log scale when ``log``)."""
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low) if high > low else 0.5


def edge_warnings(df: pd.DataFrame, state: dict, by: str = "net_time") -> list[str]:
    """One line per searched value at an edge of its range in the best configuration of each dense size (the
    keys its family is tuned on) and of the sparse search (every key); empty when every optimum is inside."""
    try:
        spec = spec_from_dict(state["raw"])
        ranges = {p.key: p for p in search_params(spec) if p.kind in RANGES}
    except (SpecError, KeyError, TypeError):  # a stored spec this version cannot read: nothing to check
        return []
    if not ranges or df.empty:
        return []
    col = OBJECTIVES[by]
    base = spec_from_dict(base_raw(state["raw"]))
    ok = df[(df["status"] == REACHED) & df[col].map(is_finite)]
    best: list[tuple[str, pd.Series, list[str]]] = []
    sparse = ok[ok["role"] == SPARSE]
    if len(sparse):
        best.append(("the best sparse trial", sparse.loc[sparse[col].idxmin()], list(ranges)))
    tuned = [k for k in ranges if not k.startswith("sparsity.")]
    for size, g in ok[ok["role"] == DENSE_FAMILY].groupby("size", sort=True):
        best.append((f"the best dense size {int(size)} configuration", g.loc[g[col].idxmin()], tuned))
    lines = []
    for who, row, keys in best:
        for key in keys:
            raw_value = spec_value(row, key, base)
            p = ranges[key]
            log = p.kind in ("loguniform", "int_log")
            if not is_finite(raw_value) or (log and float(raw_value) <= 0):  # type: ignore[arg-type]
                continue
            value = float(raw_value)  # type: ignore[arg-type]
            share = edge_share(value, float(p.values[0]), float(p.values[1]), log)
            if share <= EDGE or share >= 1 - EDGE:
                side = "lower" if share <= EDGE else "upper"
                lines.append(
                    f"{who} (trial {row['trial']}) has {key}={value:.4g} at the {side} edge of its range "
                    f"[{p.values[0]:g}, {p.values[1]:g}]: the optimum may lie outside it; widen the range"
                )
    return lines
