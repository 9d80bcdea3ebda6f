"""The spec file: YAML -> validated, frozen spec objects.

Every key has a default and a one-line description (``sparsesearch defaults`` prints them all). Unknown keys,
wrong types and out-of-range values raise :class:`SpecError` whose message names the dotted path of the field
and the rule it broke, e.g. ``train.lr: must be > 0, got -1``. The package: ``schema`` (the sections and keys),
``edit`` (raw dicts, overrides, files), ``build`` (raw -> Spec), ``space`` (the search-space language). The rules
of registered methods are checked one layer up (``checks.load_checked``).
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from .build import build
from .edit import apply_override, deep_copy, describe_defaults, load_raw, set_value, with_values
from .schema import (
    DISTRIBUTIONS,
    GRID,
    MAX_INT,
    MAX_LAYERS,
    MAX_SEED,
    MAX_TRIALS,
    MAX_WIDTH,
    STEPPED,
    AshaSpec,
    ConfirmSpec,
    DataSpec,
    DenseFamilySpec,
    ModelSpec,
    SearchParam,
    SearchSpec,
    SparsitySpec,
    Spec,
    SpecError,
    TargetSpec,
    TrainSpec,
    TuneSpec,
    percent,
)
from .space import SEARCHABLE_SECTIONS, blames, grid_size, search_params

__all__ = [
    "DISTRIBUTIONS",
    "GRID",
    "MAX_INT",
    "MAX_LAYERS",
    "MAX_SEED",
    "MAX_TRIALS",
    "MAX_WIDTH",
    "SEARCHABLE_SECTIONS",
    "STEPPED",
    "AshaSpec",
    "ConfirmSpec",
    "DataSpec",
    "DenseFamilySpec",
    "ModelSpec",
    "SearchParam",
    "SearchSpec",
    "SparsitySpec",
    "Spec",
    "SpecError",
    "TargetSpec",
    "TrainSpec",
    "TuneSpec",
    "apply_override",
    "blames",
    "describe_defaults",
    "grid_size",
    "load_raw",
    "load_spec",
    "percent",
    "search_params",
    "set_value",
    "spec_from_dict",
    "with_values",
]


def spec_from_dict(raw: Any, overrides: typing.Sequence[str] = ()) -> Spec:
    """Validate a raw mapping (plus ``KEY=VALUE`` overrides) into a frozen Spec."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SpecError(f"spec: must be a mapping with sections such as model, data, train; got {type(raw).__name__}")
    raw = deep_copy(raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    spec = build(Spec, raw, "")
    search_params(spec)  # validates every searched value against the rest of the spec
    return spec


def load_spec(path: str | Path, overrides: typing.Sequence[str] = ()) -> Spec:
    """Read a YAML spec file, apply overrides and validate it."""
    return spec_from_dict(load_raw(path), overrides)
