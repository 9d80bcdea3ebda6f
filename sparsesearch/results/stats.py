"""Spread of repeated runs: the mean with a t-based confidence interval, and for ratios (speedups) the
geometric mean with its interval taken on the log scale. The one home of both: the confirmation runs and the
study's scripts use these."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its ``level`` confidence interval from Student's t
    distribution with n - 1 degrees of freedom (NaN bounds for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def ratio_ci(ratios: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(geometric mean, low, high) of ratios such as speedups paired by seed: the t interval of their logs,
    mapped back, so that 2x and 0.5x average to 1x and the interval stays positive (a ratio's noise is
    multiplicative). NaN for an empty input or a ratio that is not positive and finite; NaN bounds for one."""
    if any(not (math.isfinite(r) and r > 0) for r in ratios):
        return math.nan, math.nan, math.nan
    mean, lo, hi = mean_ci([math.log(r) for r in ratios], level)
    return tuple(math.exp(v) if v == v else math.nan for v in (mean, lo, hi))  # type: ignore[return-value]
