"""Sparse training methods: each is its drop score, grow score and how many to drop and grow, on top of the
one shared update mechanism in ``sparsifier.py``. The registry ``METHODS`` is a plain dict."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .schedules import gmp_sparsity

if TYPE_CHECKING:
    from .sparsifier import Sparsifier


class Method:
    """Base: magnitude drop, per-layer counts conserved. Subclasses set the grow score."""

    name = "base"
    sparse_from_start = True  # random sparse masks at step 0 (False: start dense and prune, as gmp)
    updates_masks = True
    dense_weight_grad_every_step = False  # e.g. snfs' dense momentum
    dense_weight_grad_on_update = False  # e.g. rigl's growth by dense gradient

    def __init__(self, spec):
        self.spec = spec

    def drop_score(self, sp: "Sparsifier", name: str, weight: torch.Tensor) -> torch.Tensor:
        """Lower scores are dropped first (among active weights)."""
        return weight.abs()

    def grow_score(self, sp: "Sparsifier", name: str, weight: torch.Tensor) -> torch.Tensor:
        """Higher scores are grown first (among inactive weights). Base: uniformly at random."""
        return torch.rand(weight.shape, generator=sp.generator).to(weight.device)

    def counts(self, sp: "Sparsifier", step: int) -> dict[str, tuple[int, int]]:
        """(n_drop, n_grow) per sparse layer for the update at ``step``: drop the scheduled fraction of active
        weights and regrow as many in the same layer."""
        frac = sp.schedule.drop_fraction_at(step)
        out = {}
        for name, mask in sp.masks.items():
            active = int(mask.sum())
            n = min(round(frac * active), mask.numel() - active)
            out[name] = (n, n)
        return out

    def observe_gradients(self, sp: "Sparsifier", update: bool) -> None:
        """Called with the dense gradients of a step, before they are masked."""


class Dense(Method):
    """No sparsity: every weight trains (the reference)."""

    name = "dense"
    updates_masks = False


class Static(Method):
    """A fixed random mask drawn at initialisation and never changed (the static sparse baseline of
    Evci et al. 2020, section 4)."""

    name = "static"
    updates_masks = False


class SET(Method):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop the smallest-magnitude weights, regrow at random."""

    name = "set"


class RigL(Method):
    """Rigging the Lottery (Evci et al. 2020): drop the smallest-magnitude weights, regrow where the dense
    gradient is largest. The dense gradient is needed on update steps only (and charged then)."""

    name = "rigl"
    dense_weight_grad_on_update = True

    def observe_gradients(self, sp, update):
        if update:
            sp.scores = {n: sp.weights[n].grad.detach().abs() for n in sp.masks}

    def grow_score(self, sp, name, weight):
        return sp.scores[name]


class SNFS(Method):
    """Sparse Networks From Scratch / sparse momentum (Dettmers & Zettlemoyer 2019): drop the smallest-magnitude
    weights, redistribute the regrowth over layers in proportion to the mean momentum magnitude of their active
    weights, and regrow where the momentum is largest. The momentum of every weight (dense) is kept every step,
    so the dense weight gradient is charged every step."""

    name = "snfs"
    dense_weight_grad_every_step = True

    def observe_gradients(self, sp, update):
        beta = self.spec.momentum
        for n in sp.masks:
            g = sp.weights[n].grad.detach()
            buf = sp.momentum.get(n)
            sp.momentum[n] = g.clone() if buf is None else buf.mul_(beta).add_(g, alpha=1.0 - beta)

    def grow_score(self, sp, name, weight):
        return sp.momentum[name].abs()

    def counts(self, sp, step):
        base = super().counts(sp, step)
        total = sum(d for d, _ in base.values())
        names = list(sp.masks)
        # Capacity after the drop: inactive slots a layer can regrow into.
        cap = {n: sp.masks[n].numel() - int(sp.masks[n].sum()) + base[n][0] for n in names}
        mean_m = {n: float(sp.momentum[n][sp.masks[n]].abs().mean()) if sp.masks[n].any() else 0.0
                  for n in names}
        grow = _allocate(total, mean_m, cap)
        return {n: (base[n][0], grow[n]) for n in names}


class GMP(Method):
    """Gradual magnitude pruning (Zhu & Gupta 2017): start dense and prune the smallest-magnitude weights on
    a cubic schedule from update_start to update_end until each layer reaches its final density. No regrowth;
    the dense phase costs dense FLOPs while it lasts."""

    name = "gmp"
    sparse_from_start = False

    def counts(self, sp, step):
        out = {}
        for name, mask in sp.masks.items():
            final_sparsity = 1.0 - sp.target_density[name]
            s = gmp_sparsity(step, final=final_sparsity, start=sp.schedule.start, end=sp.schedule.end)
            keep = mask.numel() - round(s * mask.numel())
            out[name] = (max(0, int(mask.sum()) - keep), 0)
        return out


def _allocate(total: int, weights: dict[str, float], cap: dict[str, int]) -> dict[str, int]:
    """Split ``total`` into integers proportional to ``weights`` without exceeding ``cap`` (largest remainder;
    what a capped layer cannot take goes to the others)."""
    out = {n: 0 for n in weights}
    left, open_ = total, [n for n in weights if cap[n] > 0]
    while left > 0 and open_:
        w = {n: max(weights[n], 0.0) for n in open_}
        norm = sum(w.values())
        share = {n: (w[n] / norm if norm > 0 else 1.0 / len(open_)) * left for n in open_}
        give = {n: min(int(math.floor(share[n])), cap[n] - out[n]) for n in open_}
        rest = left - sum(give.values())
        for n in sorted(open_, key=lambda n: share[n] - math.floor(share[n]), reverse=True):
            if rest <= 0:
                break
            if out[n] + give[n] < cap[n]:
                give[n] += 1
                rest -= 1
        for n in open_:
            out[n] += give[n]
        left = total - sum(out.values())
        open_ = [n for n in open_ if out[n] < cap[n]]
        if sum(give.values()) == 0:
            break
    return out


METHODS: dict[str, type[Method]] = {m.name: m for m in (Dense, Static, SET, RigL, SNFS, GMP)}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"sparsity.method: unknown method {name!r} (choices: {', '.join(METHODS)})") from None
