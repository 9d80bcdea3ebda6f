"""How results show numbers and values, in tables, labels and the console (one rounding everywhere)."""

from __future__ import annotations

import math
from typing import Any


def missing(v: Any) -> bool:
    """No value: None or NaN (a parameter a conditional trial did not sample, a metric never reached)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def value(v: Any) -> str:
    """A parameter value: floats to 3 significant digits, everything else as it is."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def number(v: Any, spec: str = ".3g", unit: str = "") -> str:
    """A metric in a table: '–' when missing, 'inf' when infinite, else formatted by ``spec`` with ``unit``."""
    if missing(v):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:{spec}}{unit}"


def plural(n: int, noun: str) -> str:
    """'1 layer', '2 layers'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def params_text(row: Any, params: list[str], *, short: bool = False, quote: str = "") -> str:
    """A trial's sampled values (the method left out: tables show it in its own column). ``short``: the key's
    last part only, e.g. level=0.8; ``quote``: around each key (markdown code: a backtick)."""
    parts = []
    for k in params:
        if k in row and not missing(row[k]) and k != "sparsity.method":
            parts.append(f"{quote}{k.split('.')[-1] if short else k}{quote}={value(row[k])}")
    return ", ".join(parts)
