"""The search-space language of ``search.params``: distributions, steps, grids, conditions (``when``), Weights &
Biases spellings and ``search.start_from``, each parsed into a ``SearchParam`` and checked against the rest of
the spec."""

from __future__ import annotations

import decimal
import math
import re
import typing
from typing import Any

from .build import build
from .edit import with_values
from .schema import DISTRIBUTIONS, GRID, STEPPED, WANDB_DISTRIBUTIONS, WANDB_KEYS, SearchParam, Spec, SpecError

SEARCHABLE_SECTIONS = ("model", "data", "train", "target", "sparsity")


def _field_type(dotted: str) -> Any:
    """Type of a searchable spec key, or None if there is no such key."""
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in SEARCHABLE_SECTIONS:
        return None
    section = typing.get_type_hints(Spec)[parts[0]]
    return typing.get_type_hints(section).get(parts[1])


_PARAM_KEYS = (*DISTRIBUTIONS, GRID, "step", *WANDB_KEYS, "when")
_FORMS = f"{', '.join((*DISTRIBUTIONS, GRID))} or W&B's values, value, min/max"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _decimal(v: int | float) -> decimal.Decimal:
    """A number as written (0.1 is one tenth, not its binary neighbour), so steps divide ranges as the file says."""
    return decimal.Decimal(v) if isinstance(v, int) else decimal.Decimal(repr(v))


def _off_step(value: int | float, low: int | float, step: int | float) -> decimal.Decimal | None:
    """How far ``value`` lies from the grid low, low + step, ...: in [0, step / 2]; None when not finite."""
    try:
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            r = (_decimal(value) - _decimal(low)) % _decimal(step)
            return min(abs(r), _decimal(step) - abs(r))
    except (decimal.InvalidOperation, ValueError, OverflowError):
        return None


def _parse_param(key: str, value: Any, path: str) -> SearchParam:
    """One entry of ``search.params``: a constant, or a mapping with one distribution (native or W&B spelling),
    an optional step (or W&B's q) and an optional condition."""
    if not isinstance(value, dict):
        return SearchParam(key, "const", (value,))
    unknown = [k for k in value if k not in _PARAM_KEYS]
    if unknown:
        raise SpecError(
            f"{path}.{unknown[0]}: unknown key (use one of {', '.join((*DISTRIBUTIONS, GRID))} with an optional "
            f"step, or W&B's {', '.join(WANDB_KEYS)}; and when)"
        )
    native = [k for k in (*DISTRIBUTIONS, GRID) if k in value]
    givers = native + [k for k in ("values", "value", "min", "max", "distribution") if k in value][:1]
    if len(givers) != 1:
        got = f"both {givers[0]} and {givers[1]}" if givers else "none"
        raise SpecError(f"{path}: needs exactly one distribution ({_FORMS}), got {got}")
    step_keys = [k for k in ("step", "q") if k in value]
    if len(step_keys) > 1:
        raise SpecError(f"{path}: step and q are the same setting (q is W&B's name); keep one")
    step_key = step_keys[0] if step_keys else None
    step = value.get(step_key) if step_key else None
    if native:
        kind, arg, where = native[0], value[native[0]], f"{path}.{native[0]}"
    else:
        kind, arg, default_step = _wandb_form(value, path, step)
        where = f"{path}.values" if kind == "choice" else f"{path}.min/max"
        if kind == "int_log":  # q_log_uniform_values' q 1: the integers themselves
            step = None
        elif step is None and default_step is not None:
            step, step_key = default_step, "q"
    if kind in ("choice", GRID):
        if not isinstance(arg, list) or not arg:
            raise SpecError(f"{where}: must be a non-empty list of values")
        if len({repr(v) for v in arg}) != len(arg):
            raise SpecError(f"{where}: values must be distinct")
        values = tuple(tuple(v) if isinstance(v, list) else v for v in arg)
    elif kind == "const":
        values = (arg,)
    else:
        if not isinstance(arg, list) or len(arg) != 2 or not all(_is_number(v) for v in arg):
            raise SpecError(f"{where}: must be [low, high] (two numbers)")
        lo, hi = arg
        if kind in ("int", "int_log") and not all(isinstance(v, int) for v in arg):
            raise SpecError(f"{where}: bounds must be integers, got {arg}")
        if not lo < hi:
            raise SpecError(f"{where}: low must be < high, got [{lo}, {hi}]")
        if kind in ("loguniform", "int_log") and lo <= 0:
            raise SpecError(f"{where}: low must be > 0 for a log scale, got {lo}")
        values = (lo, hi)
    if step is not None:
        _check_step(kind, values, step, f"{path}.{step_key}")
    when = value.get("when", {})
    if "when" in value and (not isinstance(when, dict) or not when):
        raise SpecError(f"{path}.when: must be a non-empty mapping of other.key: [values]")
    if "when" in value and kind in (GRID, "const"):
        what = "a grid key (the grid tries every combination)" if kind == GRID else "a constant"
        raise SpecError(f"{path}.when: {what} cannot be conditional")
    conds = tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in (when or {}).items())
    return SearchParam(key, kind, values, conds, step)


def _wandb_form(value: dict, path: str, step: Any) -> tuple[str, Any, Any]:
    """The native (kind, argument, default step) of a W&B sweep spelling: {values}, {value}, {min, max} (int when
    both are integers, else uniform), each with an optional distribution."""
    dist = value.get("distribution")
    forms = [k for k in ("values", "value") if k in value] + (["min/max"] if "min" in value or "max" in value else [])
    if len(forms) > 1:
        raise SpecError(f"{path}: needs exactly one distribution ({_FORMS}), got both {forms[0]} and {forms[1]}")
    if dist is None:
        if not forms:
            raise SpecError(f"{path}.distribution: needs values, value or min and max beside it")
        if forms[0] == "min/max":
            ints = all(isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in ("min", "max"))
            dist = "int_uniform" if ints and (step is None or isinstance(step, int)) else "uniform"
        else:
            dist = "categorical" if forms[0] == "values" else "constant"
    elif not isinstance(dist, str) or dist not in WANDB_DISTRIBUTIONS:
        raise SpecError(
            f"{path}.distribution: {dist!r} is not supported (supported: {', '.join(WANDB_DISTRIBUTIONS)}, "
            "the last with q 1 and integer bounds only)"
        )
    needs = {"constant": ("value",), "categorical": ("values",)}.get(dist, ("min", "max"))
    for k in ("values", "value", "min", "max"):
        if k in value and k not in needs:
            raise SpecError(f"{path}.{k}: not used by distribution {dist} (it takes {' and '.join(needs)})")
    for k in needs:
        if k not in value:
            raise SpecError(f"{path}.{k}: required ({dist} takes {' and '.join(needs)})")
    kind = WANDB_DISTRIBUTIONS[dist]
    if dist == "constant":
        return kind, value["value"], None
    if dist == "categorical":
        return kind, value["values"], None
    bounds = [value["min"], value["max"]]
    if dist == "q_uniform":  # W&B's q defaults to 1; integers throughout make an int key
        q = 1 if step is None else step
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (*bounds, q))
        return ("int" if ints else "uniform"), bounds, 1 if step is None else None
    if dist == "q_log_uniform_values":  # Optuna steps no log scale: only q 1 on integers (int_log) maps
        q_one = step is None or (_is_number(step) and step == 1)
        if not (q_one and all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)):
            raise SpecError(
                f"{path}.distribution: q_log_uniform_values is supported with integer min and max and q 1 only "
                "(Optuna has no step on a log scale)"
            )
        return kind, bounds, None
    if dist == "log_uniform":  # min and max are natural logs of the bounds
        if not all(_is_number(v) for v in bounds):
            raise SpecError(f"{path}.min/max: must be [low, high] (two numbers)")
        try:
            return kind, [math.exp(v) for v in bounds], None
        except OverflowError:
            raise SpecError(f"{path}.min/max: exponents too large for log_uniform, got {bounds}") from None
    return kind, bounds, None


def _check_step(kind: str, values: tuple, step: Any, where: str) -> None:
    """A step: on uniform and int only, a number > 0 (an integer on int) that divides high - low exactly."""
    if kind not in STEPPED:
        if kind in ("loguniform", "int_log"):
            raise SpecError(f"{where}: not with a log scale ({kind}); a step applies to uniform and int only")
        raise SpecError(f"{where}: applies to uniform and int only, not to {'a constant' if kind == 'const' else kind}")
    if not _is_number(step) or not step > 0 or not _decimal(step).is_finite():
        raise SpecError(f"{where}: must be a number > 0, got {step!r}")
    if kind == "int" and not isinstance(step, int):
        raise SpecError(f"{where}: must be an integer for int, got {step!r}")
    lo, hi = values
    if _off_step(hi, lo, step) != 0:
        span = _decimal(hi) - _decimal(lo) if _decimal(hi).is_finite() and _decimal(lo).is_finite() else hi - lo
        raise SpecError(f"{where}: high - low ({span}) must be a multiple of the step {step}")


def blames(message: str, key: str, others: typing.Iterable[str] = ()) -> bool:
    """Whether a validation ``message`` is about ``key`` alone: it names ``key`` and none of ``others`` (keys that
    vary too, so the clash may belong to a combination that no trial draws)."""

    def names(k: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", message) is not None

    return names(key) and not any(names(k) for k in others if k != key)


def _check_value(path: str, key: str, value: Any, base: dict, varying: typing.Collection[str]) -> None:
    """Check one searched value against the rest of the spec file (``base``, the searched constants applied):
    its own field's rules (type, bounds, choices) and every rule it shares with keys the file fixes. A clash with
    a key that is searched too (``varying``) is left to each trial's full spec (--dry-run shows samples)."""
    try:
        build(Spec, with_values(base, {key: value}), "")
    except SpecError as e:
        if blames(str(e), key, varying):
            raise SpecError(f"{path}: value {value!r} is invalid: {e}") from None


def search_params(spec: Spec) -> tuple[SearchParam, ...]:
    """The validated search parameters of a spec, in file order.

    Every choice, every range endpoint and every constant is checked by the rules of its field; conditions
    must refer to earlier searched keys or to spec keys, with values those keys can take."""
    out: list[SearchParam] = []
    by_key: dict[str, SearchParam] = {}
    parsed = []
    for key, value in (spec.search.params or {}).items():
        path = f"search.params.{key}"
        if _field_type(key) is None:
            raise SpecError(
                f"{path}: not a searchable spec key (use section.key in "
                f"{', '.join(SEARCHABLE_SECTIONS)}, e.g. train.lr)"
            )
        parsed.append((path, _parse_param(key, value, path)))
    base = with_values(spec.to_dict(), {p.key: p.values[0] for _, p in parsed if p.kind == "const"})
    varying = {p.key for _, p in parsed if p.kind != "const"}
    for path, p in parsed:
        key = p.key
        for v in p.values:
            _check_value(path, key, v, base, varying)
        for cond_key, allowed in p.when:
            where = f"{path}.when.{cond_key}"
            if cond_key == key:
                raise SpecError(f"{where}: a key cannot be conditional on itself")
            if cond_key in by_key:
                ref = by_key[cond_key]
                if ref.kind in ("choice", GRID, "const"):
                    bad = [a for a in allowed if a not in ref.values]
                    if bad:
                        raise SpecError(
                            f"{where}: {bad[0]!r} is not a value of {cond_key} "
                            f"(values: {', '.join(map(repr, ref.values))})"
                        )
            elif cond_key in spec.search.params:
                raise SpecError(f"{where}: {cond_key} must be listed before {key}")
            elif _field_type(cond_key) is None:
                raise SpecError(f"{where}: unknown key {cond_key!r} (not a searched parameter nor a spec key)")
        out.append(p)
        by_key[key] = p
    _check_grid(spec, out)
    _check_start_from(spec.search.start_from, by_key, base)
    return tuple(out)


def grid_size(params: typing.Iterable[SearchParam]) -> int:
    """The number of combinations of the grid keys (1 without any)."""
    return math.prod(len(p.values) for p in params if p.kind == GRID)


def _check_grid(spec: Spec, params: list[SearchParam]) -> None:
    """A grid search (``search.sampler: grid``) searches grid keys and constants only, and runs each combination
    once: num_samples is the number of combinations, and no start_from (every point is tried anyway)."""
    grid = [p for p in params if p.kind == GRID]
    sampled = [p for p in params if p.kind not in (GRID, "const")]
    sampler = spec.search.sampler
    if grid and sampled:
        raise SpecError(
            f"search.params.{sampled[0].key}: a {sampled[0].kind} key cannot be mixed with grid keys "
            f"({grid[0].key}); make every searched key a grid or a constant"
        )
    if grid and sampler != "grid":
        raise SpecError(f"search.sampler: grid keys ({grid[0].key}) need sampler: grid, got {sampler}")
    if sampler != "grid" or not params:
        return
    if sampled:
        raise SpecError(
            f"search.params.{sampled[0].key}: sampler grid tries every combination of {{grid: [...]}} keys; "
            f"make this {sampled[0].kind} key a grid or a constant"
        )
    n = grid_size(grid)
    if spec.search.num_samples != n:
        sizes = " x ".join(f"{len(p.values)} {p.key}" for p in grid) or "no grid keys"
        raise SpecError(
            f"search.num_samples: a grid search runs each of its {n} combinations ({sizes}) once; "
            f"set num_samples: {n}, got {spec.search.num_samples}"
        )
    if spec.search.start_from:
        raise SpecError("search.start_from: a grid search tries every combination anyway; remove start_from")


def _in_distribution(p: SearchParam, value: Any) -> bool:
    if p.kind in ("choice", GRID):
        return (tuple(value) if isinstance(value, list) else value) in p.values
    if not _is_number(value):
        return False
    if p.kind in ("int", "int_log") and not isinstance(value, int):
        return False
    lo, hi = p.values
    if not lo <= value <= hi:
        return False
    if p.step is None:
        return True
    off = _off_step(value, lo, p.step)  # a float point may miss the step by its rounding
    return off is not None and off <= _decimal(p.step) * decimal.Decimal("1e-9")


def _check_start_from(points: tuple[dict[str, Any], ...], params: dict[str, SearchParam], base: dict) -> None:
    """Each starting configuration names searched keys only, with values their distributions can draw, only
    where their conditions hold, and makes a valid spec with the rest of the file."""
    searched = {k: p for k, p in params.items() if p.kind != "const"}
    for i, point in enumerate(points):
        where = f"search.start_from[{i}]"
        for key, value in point.items():
            p = searched.get(key)
            if p is None:
                raise SpecError(f"{where}.{key}: not a searched key (searched: {', '.join(searched) or 'none'})")
            if not _in_distribution(p, value):
                shown = str(list(p.values)) if p.kind in ("choice", GRID) else f"{p.kind} {list(p.values)}"
                shown += f" step {p.step}" if p.step is not None else ""
                raise SpecError(f"{where}.{key}: {value!r} is not a value of its distribution ({shown})")
        values = {k: v for k, p in params.items() if p.kind == "const" for v in p.values}
        values.update(point)
        config = with_values(base, values)
        for key in point:
            for cond_key, allowed in params[key].when:
                section, name = cond_key.split(".")
                current = values.get(cond_key, config.get(section, {}).get(name))
                if (tuple(current) if isinstance(current, list) else current) not in allowed:
                    raise SpecError(
                        f"{where}.{key}: searched only when {cond_key} is in {list(allowed)}, here it is {current!r}"
                    )
        try:
            build(Spec, config, "")
        except SpecError as e:
            raise SpecError(f"{where}: not a valid configuration: {e}") from None
