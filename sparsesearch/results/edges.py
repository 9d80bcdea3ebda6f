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

LR_KEY = "train.lr"

EDGE = 0.05  # the share of a range, at either end, that counts as its edge
RANGES = ("uniform", "loguniform", "int", "int_log")


def edge_share(value: float, low: float, high: float, log: bool) -> float:
    """Where ``value`` sits in [low, high], from 0 to 1 (on the log scale when ``log``)."""
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low) if high > low else 0.5


def _grid_edge(value: object, grid: list[float]) -> str | None:
    """'lower' or 'upper' when ``value`` is the smallest or largest of a grid of two or more values, else None."""
    if len(grid) < 2 or not is_finite(value):
        return None
    v = float(value)  # type: ignore[arg-type]
    if math.isclose(v, grid[0], rel_tol=1e-6):
        return "lower"
    return "upper" if math.isclose(v, grid[-1], rel_tol=1e-6) else None


def edge_warnings(df: pd.DataFrame, state: dict, by: str = "net_time") -> list[str]:
    """One line per searched value at an edge of its range in the best configuration of each dense size (the
    keys its family is tuned on) and of the sparse search (every key); empty when every optimum is inside."""
    try:
        spec = spec_from_dict(state["raw"])
        ranges = {p.key: p for p in search_params(spec) if p.kind in RANGES}
    except (SpecError, KeyError, TypeError):  # a stored spec this version cannot read: nothing to check
        return []
    if df.empty:
        return []
    col = OBJECTIVES[by]
    base = spec_from_dict(base_raw(state["raw"]))
    ok = df[(df["status"] == REACHED) & df[col].map(is_finite)]
    best: list[tuple[str, pd.Series, list[str]]] = []
    sparse = ok[ok["role"] == SPARSE]
    if len(sparse):
        best.append(("the best sparse trial", sparse.loc[sparse[col].idxmin()], list(ranges)))
    tuned = [k for k in ranges if not k.startswith("sparsity.") and k != LR_KEY]
    grids = {int(s["index"]): s.get("lrs") or [] for s in state.get("dense_family") or []}
    lines = []
    for size, g in ok[ok["role"] == DENSE_FAMILY].groupby("size", sort=True):
        who, row = f"the best dense size {int(size)} configuration", g.loc[g[col].idxmin()]
        grid = sorted(set(grids.get(int(size), [])))
        # A family planned before the grids drew its rates from the searched range: checked against that.
        best.append((who, row, tuned if grid or LR_KEY not in ranges else [*tuned, LR_KEY]))
        lr = spec_value(row, LR_KEY, base)
        edge = _grid_edge(lr, grid)
        if edge:
            lines.append(
                f"{who} (trial {row['trial']}) has {LR_KEY}={float(lr):.4g} at the {edge} edge of its grid of "  # type: ignore[arg-type]
                "learning rates: the optimum may lie outside it; raise search.dense_family.configs or lr_spread"
            )
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
