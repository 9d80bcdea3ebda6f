"""Per-layer densities for an overall sparsity level: uniform, Erdos-Renyi (er) and ER with dense capping (erk).

Pure Python. ``er`` scales a layer's density by (n_in + n_out) / (n_in * n_out) (Mocanu et al. 2018, "Scalable
training of artificial neural networks with adaptive sparse connectivity", SET) and caps densities at 1, so a
level that needs some layer denser than dense is not met exactly. ``erk`` (Evci et al. 2020, RigL, appendix) caps
such layers at density 1 and re-solves the scale over the others until the budget holds exactly. For the 2-D
weights of this model the ER and ERK scaling formulas coincide (ERK adds kernel sizes, which linear layers lack);
the two differ only in the capping.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model.shape import weight_group
from ..spec import SpecError


def layer_densities(
    shapes: Mapping[str, tuple[int, int]],
    level: float,
    distribution: str,
    *,
    dense_groups: tuple[str, ...] = (),
    group_levels: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Density of each weight so that the overall fraction of zeros over all of ``shapes`` is ``level``.

    Args:
        shapes: (out_features, in_features) per weight name.
        dense_groups / group_levels: weight groups fixed dense or at their own sparsity; the remaining
            ("free") weights share what is left of the budget according to ``distribution``.
    """
    group_levels = group_levels or {}
    sizes = {n: o * i for n, (o, i) in shapes.items()}
    total = sum(sizes.values())
    dens: dict[str, float] = {}
    for name in shapes:
        group = weight_group(name)
        if group in dense_groups:
            dens[name] = 1.0
        elif group in group_levels:
            dens[name] = 1.0 - group_levels[group]
    free = [n for n in shapes if n not in dens]
    budget = (1.0 - level) * total - sum(dens[n] * sizes[n] for n in dens)
    free_size = sum(sizes[n] for n in free)
    if budget < -1e-9 or budget > free_size + 1e-9 or (not free and abs(budget) > 1e-6 * total):
        fixed = 1.0 - sum(dens[n] * sizes[n] for n in dens) / total if dens else 0.0
        raise SpecError(
            f"sparsity.level: {level:g} cannot be met with the fixed groups (dense_groups and "
            f"group_levels alone give {fixed:.3f} of all weights zero, the free groups "
            f"{free_size / total:.3f} of the weights)"
        )
    if not free:
        return dens
    if distribution == "uniform":
        dens.update({n: budget / free_size for n in free})
        return dens
    if distribution not in ("er", "erk"):
        raise SpecError(f"sparsity.distribution: unknown distribution {distribution!r} (choices: uniform, er, erk)")
    raw = {n: (shapes[n][0] + shapes[n][1]) / (shapes[n][0] * shapes[n][1]) for n in free}
    capped: set[str] = set()
    while True:
        rest = [n for n in free if n not in capped]
        rest_budget = budget - sum(sizes[n] for n in capped)
        scale = rest_budget / sum(raw[n] * sizes[n] for n in rest)
        over = {n for n in rest if scale * raw[n] > 1.0}
        if distribution == "er" or not over:
            break
        capped |= over  # ERK: these become dense; re-solve the scale for the rest
    dens.update({n: 1.0 for n in capped})
    dens.update({n: min(1.0, scale * raw[n]) for n in rest})
    return dens
