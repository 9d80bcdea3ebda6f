"""The registry of sparse training methods (a plain dict) and the rules of the spec's sparsity section."""

from __future__ import annotations

from ..model.shape import SPARSIFIABLE_GROUPS
from ..spec import SparsitySpec, SpecError
from .method import Method
from .methods import GMP, SET, SNFS, CoreFlopRigL, CoreGrow, Dense, FlopRigL, Grow, RigL, Static, TopKAST

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Dense, Static, SET, RigL, SNFS, GMP, TopKAST, FlopRigL, Grow, CoreGrow, CoreFlopRigL)
}


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``; a ``SpecError`` listing the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise SpecError(f"sparsity.method: unknown method {name!r} (choices: {', '.join(METHODS)})") from None


def check_value(name: str, value: object, path: str) -> None:
    """The registry's rules for one value of a sparsity key, e.g. a searched method: it must be registered,
    and weight groups must exist (other keys have none)."""
    if name == "method" and value not in METHODS:
        raise SpecError(f"{path}: unknown method {value!r} (choices: {', '.join(METHODS)})")
    groups: list[tuple[str, object]] = []
    if name == "dense_groups" and isinstance(value, (list, tuple)):
        groups = [(f"{path}[{i}]", g) for i, g in enumerate(value)]
    elif name == "group_levels" and isinstance(value, dict):
        groups = [(f"{path}.{g}", g) for g in value]
    for where, g in groups:
        if g not in SPARSIFIABLE_GROUPS:
            raise SpecError(f"{where}: unknown group {g!r} (groups: {', '.join(SPARSIFIABLE_GROUPS)})")


def check_sparsity(sparsity: SparsitySpec, path: str = "sparsity") -> None:
    """The rules of the sparsity section that the schema alone cannot check: the method is registered, the
    weight groups exist, and the method's own rules hold."""
    for name in ("method", "dense_groups", "group_levels"):
        check_value(name, getattr(sparsity, name), f"{path}.{name}")
    METHODS[sparsity.method].check_spec(sparsity, path)
