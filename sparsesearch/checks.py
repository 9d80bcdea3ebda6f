"""Every rule of a spec, checked before anything runs: the schema's (``spec``), the method registry's
(``sparsity.registry``) on the spec and on each searched value, and the early-stopping bounds, which need the
model's FLOPs."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .experiment import base_raw, trial_spec
from .model.embedding import model_shape
from .model.flops import expected_masked, step_flops
from .model.shape import ModelShape
from .sparsity.registry import check_sparsity, check_value, get_method
from .spec import (
    SearchParam,
    Spec,
    SpecError,
    apply_override,
    blames,
    load_raw,
    percent,
    search_params,
    spec_from_dict,
    with_values,
)


@dataclass(frozen=True)
class Checked:
    """User input made a spec, every rule checked: the raw dict (with the overrides applied), the ``Spec`` and its
    validated search parameters (empty when it searches nothing)."""

    raw: dict
    spec: Spec
    params: tuple[SearchParam, ...]


def load_checked(source: str | os.PathLike | Mapping[str, Any] | Any, overrides: Sequence[str] = ()) -> Checked:
    """The one way user input becomes a spec: a YAML file's path or a mapping (copied, never changed), the
    ``KEY=VALUE`` overrides applied, built by the schema and checked by every rule (``check_spec``). Raises
    ``SpecError`` naming the field and the rule, before any data, target, Ray or file work."""
    raw = load_raw(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else source
    if not isinstance(raw, Mapping):
        spec_from_dict(raw)  # says what a spec must be
    raw = copy.deepcopy(dict(raw))
    for assignment in overrides:
        apply_override(raw, assignment)
    spec = spec_from_dict(raw)
    params = check_spec(spec)
    return Checked(raw, matched_level(spec), params)


def checked_trial_spec(raw: dict, config: dict) -> Spec:
    """One trial's spec (``experiment.trial_spec``) with the method registry's rules checked too (a combination
    of values that are each valid may still clash: ``SpecError``) and an iso-FLOP level resolved."""
    spec = trial_spec(raw, config)
    check_sparsity(spec.sparsity)
    return matched_level(spec)


def step_cost(spec: Spec) -> float:
    """Matmul FLOPs of one training step without a mask update, every mask at its target density and the
    method's own charges applied (``Method.step_densities``): what the ``flops`` command estimates."""
    return _step_cost(spec, model_shape(spec.model))


def _step_cost(spec: Spec, shape: ModelShape) -> float:
    batch = spec.train.batch_size
    method = get_method(spec.sparsity.method)(spec.sparsity)
    masked = expected_masked(shape, batch, spec.data.mask_prob)
    return step_flops(shape, batch, masked, method.step_densities(shape.weight_shapes(), False)).total


def matched_level(spec: Spec) -> Spec:
    """The spec with ``sparsity.level`` set by ``sparsity.match_flops_of`` (unchanged without it): the level at
    which a step costs a dense step of the named model size, found by bisection (cost falls as the level rises).
    ``SpecError`` when no level can: the named model costs more than the spec's dense model, or less than the
    part of a step no sparsity removes."""
    match = spec.sparsity.match_flops_of
    if not match:
        return spec
    path = "sparsity.match_flops_of"
    try:
        dense = spec_from_dict(with_values(base_raw(spec.to_dict()), {f"model.{k}": v for k, v in match.items()}))
    except SpecError as e:
        raise SpecError(f"{path}: {dict(match)} is not a valid model of this spec ({e})") from None
    goal = dense_step_flops(dense)

    shape = model_shape(spec.model)  # the embedding's header is read once, not at every bisection step

    def cost(level: float) -> float:
        return _step_cost(dataclasses.replace(spec, sparsity=dataclasses.replace(spec.sparsity, level=level)), shape)

    lo, hi = 0.0, 1.0 - 1e-9
    if cost(lo) < goal * (1 - 1e-3):
        raise SpecError(
            f"{path}: a dense step of {dict(match)} ({goal / 1e9:.4g} GFLOP) costs more than one of this spec's model"
        )
    if cost(hi) > goal * (1 + 1e-3):
        raise SpecError(
            f"{path}: a dense step of {dict(match)} ({goal / 1e9:.4g} GFLOP) costs less than this spec's model at "
            f"any sparsity ({cost(hi) / 1e9:.4g} GFLOP: the part no sparsity removes)"
        )
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) > goal else (lo, mid)
    level = (lo + hi) / 2
    return dataclasses.replace(spec, sparsity=dataclasses.replace(spec.sparsity, level=level))


def check_spec(spec: Spec) -> tuple[SearchParam, ...]:
    """Raise ``SpecError`` when ``spec`` breaks a rule the schema alone cannot check; returns its validated
    search parameters."""
    check_sparsity(spec.sparsity)
    params = check_space(spec)
    if spec.sparsity.match_flops_of and any(p.key == "sparsity.level" for p in params):
        raise SpecError("search.params.sparsity.level: sparsity.match_flops_of sets the level; search one or the other")
    if params:  # a spec that searches nothing (e.g. one `train` runs with its defaults) never meets ASHA
        check_asha(spec)
        check_loggers(spec)
    return params


def check_loggers(spec: Spec) -> None:
    """Each logger named in ``tune.callbacks`` has its package installed (found, not imported: they are heavy)."""
    for name in spec.tune.callbacks:
        if name != "tensorboard" and importlib.util.find_spec(name) is None:
            raise SpecError(f"tune.callbacks: {name} is not installed (pip install {name}), or remove it")


def check_space(spec: Spec) -> tuple[SearchParam, ...]:
    """The validated search parameters of ``spec`` (``spec.search_params``), each searched sparsity value also
    checked by the method registry: its name or weight group exists, and the method's own rules hold with the
    file's other settings (a clash with another searched key is left to each trial's full spec)."""
    params = search_params(spec)
    base = with_values(spec.to_dict(), {p.key: p.values[0] for p in params if p.kind == "const"})
    varying = [p.key for p in params if p.kind != "const"]
    for p in params:
        section, name = p.key.split(".")
        if section != "sparsity" or p.kind not in ("choice", "grid", "const"):
            continue
        for value in p.values:
            try:
                check_value(name, value, p.key)
            except SpecError as e:
                raise SpecError(f"search.params.{p.key}: value {value!r} is invalid: {e}") from None
            try:
                check_sparsity(spec_from_dict(with_values(base, {p.key: value})).sparsity)
            except SpecError as e:
                if blames(str(e), p.key, varying):
                    raise SpecError(f"search.params.{p.key}: value {value!r} is invalid: {e}") from None
    return params


def dense_step_flops(spec: Spec) -> float:
    """Matmul FLOPs of one dense training step (expected masked positions): the unit of ASHA's budget."""
    shape = model_shape(spec.model)
    return step_flops(
        shape, spec.train.batch_size, expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
    ).total


def asha_max_t(spec: Spec, unit_flops: float) -> float:
    """ASHA's largest budget in its unit: ``search.asha.max_t``, or ``train.max_steps`` dense steps (their
    FLOPs when the unit is flops)."""
    a = spec.search.asha
    if a.max_t is not None:
        return a.max_t
    return spec.train.max_steps * (unit_flops if a.unit == "flops" else 1.0)


DEFAULT_GRACE_PERCENT = 20.0  # the search-efficiency benchmark's best first decision (analysis/README.md)


def asha_grace(spec: Spec, unit_flops: float) -> float:
    """ASHA's grace period in its unit: ``search.asha.grace_period``; a percentage ('20%') is that share of the
    objective rung's dense steps (``target.horizon``), times one dense step's FLOPs when the unit is flops; unset,
    ``DEFAULT_GRACE_PERCENT`` of them, kept between one dense step and max_t."""
    a = spec.search.asha
    unit = unit_flops if a.unit == "flops" else 1.0
    if a.grace_period is None:  # the default adapts to the spec: never an error the user did not write
        default = DEFAULT_GRACE_PERCENT / 100 * spec.target.horizon * unit
        return min(max(default, unit), asha_max_t(spec, unit_flops))
    if isinstance(a.grace_period, str):
        share = percent(a.grace_period)
        assert share is not None  # checked with the spec
        return share / 100 * spec.target.horizon * unit
    return a.grace_period


def asha_rungs(spec: Spec, unit_flops: float) -> list[float]:
    """The budgets at which ASHA decides, in its unit: grace x factor^k below max_t (Li et al. 2020, ASHA; the
    milestones Ray's single-bracket ASHAScheduler uses)."""
    a = spec.search.asha
    grace, max_t = asha_grace(spec, unit_flops), asha_max_t(spec, unit_flops)
    count = int(math.log(max_t / grace) / math.log(a.reduction_factor) + 1)
    return [grace * a.reduction_factor**k for k in range(count)]


def check_asha(spec: Spec) -> None:
    """Early-stopping bounds: every trial gets its grace period, so it must fit in the largest budget."""
    a = spec.search.asha
    if a.grace_period is None:
        return  # the default keeps within the bounds by itself
    unit_flops = dense_step_flops(spec) if a.unit == "flops" else 1.0
    max_t = asha_max_t(spec, unit_flops)
    grace = asha_grace(spec, unit_flops)
    given = f"{a.grace_period} = {grace:g}" if isinstance(a.grace_period, str) else f"{grace:g}"
    if grace < unit_flops:
        raise SpecError(
            f"search.asha.grace_period: with unit {a.unit} it counts {a.unit}, and must be at least one dense "
            f"step's budget ({unit_flops:g}), got {given}"
        )
    if grace > max_t:
        source = (
            "search.asha.max_t"
            if a.max_t is not None
            else "train.max_steps" + (" x one dense step's FLOPs" if a.unit == "flops" else " (dense-equivalent steps)")
        )
        raise SpecError(
            f"search.asha.grace_period: must be <= the largest budget max_t ({max_t:g}, from {source}), got {given}"
        )
