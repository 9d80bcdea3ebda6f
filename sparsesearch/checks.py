"""Every rule of a spec, checked before anything runs: the schema's (``spec``), the method registry's
(``sparsity.registry``) on the spec and on each searched value."""

from __future__ import annotations

from .sparsity.registry import check_sparsity, check_value
from .spec import SearchParam, Spec, SpecError, search_params


def check_spec(spec: Spec, raw: dict | None = None) -> tuple[SearchParam, ...]:
    """Raise ``SpecError`` when ``spec`` (read from ``raw``) breaks a rule the schema alone cannot check;
    returns its validated search parameters."""
    check_sparsity(spec.sparsity)
    return check_space(spec, raw if raw is not None else {})


def check_space(spec: Spec, raw: dict) -> tuple[SearchParam, ...]:
    """The validated search parameters of ``spec`` (``spec.search_params``), each searched sparsity value also
    checked by the method registry (a method or weight group that does not exist)."""
    params = search_params(spec, raw)
    for p in params:
        section, name = p.key.split(".")
        if section != "sparsity" or p.kind not in ("choice", "const"):
            continue
        for value in p.values:
            try:
                check_value(name, value, p.key)
            except SpecError as e:
                raise SpecError(f"search.params.{p.key}: value {value!r} is invalid: {e}") from None
    return params
