"""The two frontiers of an experiment: the lower envelope of the dense family's loss-against-FLOPs curves (the best
dense loss at every budget, over every size and configuration) and that of the sparse trials, where they cross,
and their gap at each rung and at a few budgets.

A trial's curve is its best held-out loss so far against the FLOPs it had spent (a run can always stop at its best
evaluation), linear between evaluations and flat after its last one (stopping early is allowed at any budget).
An envelope at a budget is the lowest of those curves there; undefined before any trial of its side has been
evaluated with that few FLOPs. Every evaluated point is real evidence, so early-stopped trials count too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..experiment import DENSE_FAMILY, SPARSE

Curve = tuple[np.ndarray, np.ndarray]  # FLOPs (increasing), best loss so far


def best_so_far(flops: Sequence[float], losses: Sequence[float]) -> Curve:
    """A trial's curve: its evaluations sorted by FLOPs, finite ones only, the loss replaced by its running
    minimum."""
    f = np.asarray(flops, dtype=float)
    lo = np.asarray(losses, dtype=float)
    keep = np.isfinite(f) & np.isfinite(lo)
    order = np.argsort(f[keep], kind="stable")
    f, lo = f[keep][order], lo[keep][order]
    return f, np.minimum.accumulate(lo) if len(lo) else lo


def curve_at(curve: Curve, grid: np.ndarray) -> np.ndarray:
    """The curve at each budget of ``grid``: interpolated between evaluations, its last value after them, NaN
    before its first."""
    f, lo = curve
    if not len(f):
        return np.full(len(grid), np.nan)
    out = np.interp(grid, f, lo)
    out[grid < f[0]] = np.nan
    return out


def lower_envelope(curves: Sequence[Curve], grid: np.ndarray) -> np.ndarray:
    """The lowest of ``curves`` at each budget of ``grid`` (NaN where none is defined)."""
    if not curves:
        return np.full(len(grid), np.nan)
    values = np.vstack([curve_at(c, grid) for c in curves])
    out = np.full(len(grid), np.nan)
    defined = ~np.isnan(values).all(axis=0)
    out[defined] = np.nanmin(values[:, defined], axis=0)
    return out


def crossings(grid: np.ndarray, sparse: np.ndarray, dense: np.ndarray) -> list[tuple[float, str]]:
    """Budgets where the sparse envelope passes the dense one, each with who is ahead after it ('sparse' or
    'dense'); the budget is interpolated linearly between the two grid points around the change."""
    d = sparse - dense
    ok = ~np.isnan(d)
    x, d = grid[ok], d[ok]
    out: list[tuple[float, str]] = []
    last = 0.0  # the sign of the gap before (0: level so far)
    for i in range(len(d)):
        s = float(np.sign(d[i]))
        if s == 0 or s == last:
            continue
        if last != 0:
            j = i - 1
            while j > 0 and d[j] == 0:  # level over a stretch: the crossing is where the gap last had a sign
                j -= 1
            x0, x1, d0, d1 = x[j], x[i], d[j], d[i]
            out.append((float(x0 + (x1 - x0) * d0 / (d0 - d1)), "sparse" if s < 0 else "dense"))
        last = s
    return out


@dataclass(frozen=True)
class Envelopes:
    """Both frontiers on one grid of budgets (every evaluated FLOP count of either side, zero excluded)."""

    grid: np.ndarray
    dense: np.ndarray
    sparse: np.ndarray
    crossings: list[tuple[float, str]]

    def at(self, budget: float) -> tuple[float, float]:
        """(best dense loss, best sparse loss) at ``budget`` FLOPs."""
        d = float(np.interp(budget, self.grid, self.dense)) if len(self.grid) else math.nan
        s = float(np.interp(budget, self.grid, self.sparse)) if len(self.grid) else math.nan
        return d, s

    def common_range(self) -> tuple[float, float] | None:
        """The budgets where both envelopes are defined: (first, last), or None."""
        both = ~np.isnan(self.dense) & ~np.isnan(self.sparse)
        if not both.any():
            return None
        return float(self.grid[both][0]), float(self.grid[both][-1])

    def last_gain(self, side: str) -> float:
        """The budget where one side's envelope ('dense' or 'sparse') last got lower (nan if never defined):
        past it the envelope only carries stopped trials' best losses forward."""
        values = self.dense if side == "dense" else self.sparse
        ok = ~np.isnan(values)
        if not ok.any():
            return math.nan
        x, v = self.grid[ok], values[ok]
        drops = np.nonzero(np.diff(v) < 0)[0]
        return float(x[drops[-1] + 1]) if len(drops) else float(x[0])

    def to_json(self) -> dict:
        """Both envelopes as [FLOPs, loss] points where defined, and the crossings."""

        def points(values: np.ndarray) -> list[list[float]]:
            return [[float(f), float(v)] for f, v in zip(self.grid, values) if not math.isnan(v)]

        return {
            "dense": points(self.dense),
            "sparse": points(self.sparse),
            "crossings": [{"flops": f, "ahead_after": who} for f, who in self.crossings],
        }


def trial_curves(history: pd.DataFrame, role: str) -> dict[str, Curve]:
    """Every trial's curve of one role (``DENSE_FAMILY`` or ``SPARSE``), by trial id."""
    if history.empty or "flops" not in history:
        return {}
    h = history[history["role"] == role]
    return {str(tid): best_so_far(g["flops"], g["eval_loss"]) for tid, g in h.groupby("trial_id", sort=False)}


def envelopes(history: pd.DataFrame) -> Envelopes:
    """The dense family's and the sparse trials' lower envelopes, and their crossings, from ``load_history``."""
    dense = list(trial_curves(history, DENSE_FAMILY).values())
    sparse = list(trial_curves(history, SPARSE).values())
    grid = np.unique(np.concatenate([c[0] for c in dense + sparse] or [np.zeros(0)]))
    grid = grid[grid > 0]
    d, s = lower_envelope(dense, grid), lower_envelope(sparse, grid)
    return Envelopes(grid, d, s, crossings(grid, s, d))


def budgets(env: Envelopes, count: int = 4) -> list[float]:
    """A few budgets where both sides are defined and still improving: the last budget where both envelopes had
    yet to make their last gain, and its halvings (``count`` in all, from the smallest)."""
    span = env.common_range()
    if span is None:
        return []
    first = span[0]
    last = max(first, min(span[1], env.last_gain("dense"), env.last_gain("sparse")))
    out = [last / 2**k for k in range(count) if last / 2**k >= first]
    return sorted(out)
