"""Raw spec dict -> a frozen ``Spec``: each value coerced to its field's type and checked against its bounds, then
the rules that span fields; every error names the dotted path of the field and the rule it broke."""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from typing import Any, Literal

from .schema import (
    MAX_INT,
    MAX_LAYERS,
    AshaSpec,
    DenseFamilySpec,
    ModelSpec,
    SparsitySpec,
    Spec,
    SpecError,
    TargetSpec,
    TrainSpec,
    TuneSpec,
    percent,
)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:  # noqa: C901  (a branch per kind of field type)
    """Convert a YAML value to the field type ``tp`` or raise SpecError naming ``path``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and origin.__name__ == "UnionType"):
        errors = []
        # Literal alternatives first, so that "auto" is not tried as a float.
        for alt in sorted(typing.get_args(tp), key=lambda a: typing.get_origin(a) is not Literal):
            try:
                return _coerce(value, alt, path)
            except SpecError as e:
                errors.append(e)
        raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)[:1]
            return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
        raise SpecError(f"{path}: must be a list, got {value!r}")
    if origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {str(k): _coerce(v, item, f"{path}.{k}") for k, v in value.items()}
        raise SpecError(f"{path}: must be a mapping, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise SpecError(f"{path}: must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:  # beyond what a float holds exactly: no count, size or seed here is that big
                raise SpecError(
                    f"{path}: must be at most {MAX_INT} in size, got an integer of {len(str(value))} digits"
                )
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float
                raise SpecError(
                    f"{path}: must be a finite number, got an integer of {len(str(value))} digits"
                ) from None
            if not math.isfinite(value):
                raise SpecError(f"{path}: must be a finite number, got {value!r}")
            return value
        # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as the number it plainly is.
        if isinstance(value, str):
            try:
                return _coerce(float(value), float, path)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, str):
            raise SpecError(f"{path}: must be a non-empty string")
    raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")


def _check_bounds(value: Any, meta: dict, path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        raise SpecError(f"{path}: must be {'>' if meta.get('lo_open') else '>='} {lo:g}, got {value!r}")
    if hi is not None and (value >= hi if meta.get("hi_open") else value > hi):
        raise SpecError(f"{path}: must be {'<' if meta.get('hi_open') else '<='} {hi:g}, got {value!r}")


def build(cls: type, raw: Any, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path or 'spec'}: must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            known = ", ".join(fields) or "none yet"
            raise SpecError(f"{where}: unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, raw.get(name), where)
        elif name in raw:
            value = _coerce(raw[name], tp, where)
            _check_bounds(value, dict(f.metadata), where)
            kwargs[name] = value
    spec = cls(**kwargs)
    if isinstance(spec, ModelSpec) and spec.ffn_ratio is not None:
        spec = dataclasses.replace(spec, ffn_size=max(1, round(spec.ffn_ratio * spec.hidden_size)))
    _check_cross_field(spec, path)
    return spec


def _check_cross_field(obj: Any, path: str) -> None:
    if isinstance(obj, ModelSpec) and obj.hidden_size % obj.num_heads:
        raise SpecError(f"{path}.num_heads: must divide model.hidden_size ({obj.hidden_size}), got {obj.num_heads}")
    if isinstance(obj, SparsitySpec):
        _check_sparsity(obj, path)
    if isinstance(obj, TargetSpec):
        _check_target(obj, path)
    if isinstance(obj, Spec):
        _check_rungs_reachable(obj)
        core = obj.sparsity.core_width
        if core is not None and core >= obj.model.hidden_size:
            raise SpecError(
                f"sparsity.core_width: the dense core must be narrower than model.hidden_size "
                f"({obj.model.hidden_size}), got {core}"
            )
    if isinstance(obj, TuneSpec):
        _check_tune(obj, path)
    if isinstance(obj, DenseFamilySpec):
        for i, d in enumerate(obj.depths or ()):
            if not 1 <= d <= MAX_LAYERS:
                raise SpecError(f"{path}.depths[{i}]: must be a depth from 1 to {MAX_LAYERS}, got {d}")
    if isinstance(obj, AshaSpec) and isinstance(obj.grace_period, str):
        share = percent(obj.grace_period)
        if share is None or not 0 < share <= 100:
            raise SpecError(
                f"{path}.grace_period: must be a number, or a percentage of the objective rung's dense steps "
                f"between 0 and 100 such as '20%', got {obj.grace_period!r}"
            )
    if isinstance(obj, TrainSpec):
        if obj.device != "auto" and not (
            obj.device == "cpu" or obj.device == "cuda" or (obj.device.startswith("cuda:") and obj.device[5:].isdigit())
        ):
            raise SpecError(f"{path}.device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {obj.device!r}")
        if obj.precision == "fp16" and obj.device == "cpu":
            raise SpecError(f"{path}.precision: fp16 needs a CUDA device (train.device is 'cpu'); use bf16 or auto")


def _check_tune(tune: TuneSpec, path: str) -> None:
    """An experiment name is one folder inside the storage directory, never a path out of it."""
    name = tune.name
    if name is not None and (
        not name.strip()
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or name.startswith("~")
        or name != name.strip()
        or len(name.encode("utf-8", "replace")) > 200
    ):
        raise SpecError(
            f"{path}.name: must be a plain folder name of at most 200 bytes (no '/', '\\', '..', leading '~' or "
            f"surrounding spaces), got {name!r}"
        )
    if "://" in tune.storage:  # the experiment state and the SQLite study are files next to Ray's results
        raise SpecError(
            f"{path}.storage: URIs are not supported, got {tune.storage!r}; use a directory every node can reach "
            "(e.g. on NFS)"
        )
    if not tune.storage.strip() or "\0" in tune.storage:
        raise SpecError(f"{path}.storage: must be a directory path, got {tune.storage!r}")


def _check_target(target: TargetSpec, path: str) -> None:
    """Rungs in order (easiest first) and an objective rung that exists."""
    steps = target.rung_steps
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise SpecError(f"{path}.dense_steps: rungs must increase (easiest first), got {list(steps)}")
    if isinstance(target.loss, tuple):
        losses = target.loss
        if not losses or any(v <= 0 for v in losses):
            raise SpecError(f"{path}.loss: a list of rungs must hold losses > 0, got {list(losses)}")
        if any(b >= a for a, b in itertools.pairwise(losses)):
            raise SpecError(f"{path}.loss: rungs must decrease (easiest, highest loss first), got {list(losses)}")
    n = target.rung_count
    if not -n <= target.objective_rung < n:
        raise SpecError(
            f"{path}.objective_rung: must index one of the {n} rung(s) (0..{n - 1}, or -1 for the last), "
            f"got {target.objective_rung}"
        )


def _check_rungs_reachable(spec: Spec) -> None:
    last = spec.target.rung_steps[-1]
    if spec.target.loss == "auto" and spec.train.max_steps < last:
        raise SpecError(
            f"target.dense_steps: the last rung ({last} steps) needs train.max_steps >= {last}, got "
            f"{spec.train.max_steps}: no run could reach it"
        )


MATCHABLE_KEYS = ("hidden_size", "ffn_size", "num_layers", "num_heads")  # sparsity.match_flops_of: a dense size


def _check_sparsity(sparsity: SparsitySpec, path: str) -> None:
    """The rules of the sparsity section that need no method: those of each method, the method names and the
    weight groups are checked by ``sparsesearch.sparsity.registry.check_sparsity``."""
    for key, value in sparsity.match_flops_of.items():
        if key not in MATCHABLE_KEYS:
            raise SpecError(f"{path}.match_flops_of.{key}: not a model size key (choices: {', '.join(MATCHABLE_KEYS)})")
        if value < 1:
            raise SpecError(f"{path}.match_flops_of.{key}: must be >= 1, got {value!r}")
    for g, level in sparsity.group_levels.items():
        if g in sparsity.dense_groups:
            raise SpecError(f"{path}.group_levels.{g}: group is also in dense_groups")
        if not 0.0 <= level < 1.0:
            raise SpecError(f"{path}.group_levels.{g}: must be >= 0 and < 1, got {level!r}")
    if sparsity.update_end <= sparsity.update_start:
        raise SpecError(
            f"{path}.update_end: must be > update_start ({sparsity.update_start:g}), got {sparsity.update_end:g}"
        )
