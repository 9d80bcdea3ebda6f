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
    redistributes = False  # per-layer counts may change (the total is conserved), e.g. snfs

    def __init__(self, spec):
        self.spec = spec

    # ----- masks and their lifecycle (defaults serve every drop-and-grow method) ------------------------------
    def mask_density(self, density: float) -> float:
        """Density the mask of a weight holds, given the weight's density in the forward pass."""
        return density

    def initial_mask(self, sp: "Sparsifier", weight: torch.Tensor, density: float) -> torch.Tensor:
        """Random with exactly round(density * numel) entries (Evci et al. 2020 start all methods so), or all
        ones for methods that start dense."""
        from .sparsifier import random_mask
        if not self.sparse_from_start:
            return torch.ones(weight.shape, dtype=torch.bool)
        return random_mask(weight.shape, density, sp.generator)

    def prepare(self, sp: "Sparsifier") -> None:
        """After the masks are made, before the first step."""

    def before_optimizer_step(self, sp: "Sparsifier") -> None:
        """After the gradients are masked, right before the optimizer step."""

    def after_optimizer_step(self, sp: "Sparsifier") -> None:
        """After the optimizer step and the masks are re-applied, before a scheduled update."""

    def update(self, sp: "Sparsifier", step: int) -> None:
        """A scheduled mask update: the shared drop-and-grow."""
        sp.drop_and_grow_update(step)

    def after_update(self, sp: "Sparsifier") -> None:
        """Last thing of every step (and after a checkpoint is loaded)."""

    def forward_masks(self, sp: "Sparsifier") -> dict[str, torch.Tensor]:
        """The masks the forward pass uses (the masks themselves, except for Top-KAST)."""
        return sp.masks

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sp: "Sparsifier", state: dict) -> None:
        pass

    # ----- scores and counts ----------------------------------------------------------------------------------

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

    def logged_drop_fraction(self, sp: "Sparsifier", step: int) -> float | None:
        """The drop fraction an update used, for the log (None where the method has none)."""
        return sp.schedule.drop_fraction_at(step)

    def pending(self, sp: "Sparsifier") -> bool:
        """An update is still owed outside the schedule (gmp's final prune)."""
        return False

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
    redistributes = True

    def observe_gradients(self, sp, update):
        beta = self.spec.momentum
        for n in sp.masks:
            g = sp.weights[n].grad.detach()
            buf = sp.momentum.get(n)
            sp.momentum[n] = g.clone() if buf is None else buf.mul_(beta).add_(g, alpha=1.0 - beta)

    def grow_score(self, sp, name, weight):
        return sp.momentum[name].abs()

    def counts(self, sp, step):
        frac = sp.schedule.drop_fraction_at(step)
        # Unlike the per-layer methods, the drop is not capped by the layer's own free slots: regrowth may go
        # elsewhere (a layer that filled up must still be able to shed weights).
        drops = {n: round(frac * int(m.sum())) for n, m in sp.masks.items()}
        total = sum(drops.values())
        names = list(sp.masks)
        # Capacity after the drop: inactive slots a layer can regrow into.
        cap = {n: sp.masks[n].numel() - int(sp.masks[n].sum()) + drops[n] for n in names}
        mean_m = {n: float(sp.momentum[n][sp.masks[n]].abs().mean()) if sp.masks[n].any() else 0.0
                  for n in names}
        grow = _allocate(total, mean_m, cap)
        return {n: (drops[n], grow[n]) for n in names}


class GMP(Method):
    """Gradual magnitude pruning (Zhu & Gupta 2017): start dense and prune the smallest-magnitude weights on
    a cubic schedule from update_start to update_end until each layer reaches its final density. No regrowth;
    the dense phase costs dense FLOPs while it lasts."""

    name = "gmp"
    sparse_from_start = False

    def logged_drop_fraction(self, sp, step):
        return None  # gmp follows its sparsity ramp, not a drop fraction

    def counts(self, sp, step):
        out = {}
        for name, mask in sp.masks.items():
            if step >= sp.schedule.end:
                keep = round(sp.target_density[name] * mask.numel())
            else:
                final_sparsity = 1.0 - sp.target_density[name]
                s = gmp_sparsity(step, final=final_sparsity, start=sp.schedule.start, end=sp.schedule.end)
                keep = mask.numel() - round(s * mask.numel())
            out[name] = (max(0, int(mask.sum()) - keep), 0)
        return out

    def pending(self, sp) -> bool:
        """Some layer is still above its final density (e.g. the last prune was skipped)."""
        return any(int(m.sum()) > round(sp.target_density[n] * m.numel()) for n, m in sp.masks.items())


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


class TopKAST(Method):
    r"""Top-KAST (Jayakumar et al. 2020, "Top-KAST: Top-K Always Sparse Training"): a dense parameter store
    theta; the forward pass uses the top-D_f fraction of each layer by |theta| (set A), gradients flow to the
    larger top-D_b set B (the straight-through gradient of the weights in B but not A), and A and B are
    re-selected by |theta| at every scheduled update. Weights outside B keep their stale values in theta and
    can re-enter B when B's weights shrink below them.

    Here the model's weight holds theta on A only (exact zeros elsewhere, so the forward pass is sparse); the
    sparsifier keeps theta. The mask is B: gradients, optimizer state and weight-gradient FLOPs cover B;
    forward and input-gradient FLOPs cover A. D_b = min(1, D_f * backward_factor), from
    sparsity.topkast_backward_level. Departures from the paper: A and B are re-selected on the update schedule
    (the paper re-selects every step; use update_every: 1 for that), and its exploration penalty on B \ A is
    not applied (sparsity.regularizer applies to all of B)."""

    name = "topkast"

    def __init__(self, spec):
        super().__init__(spec)
        forward_density = 1.0 - spec.level
        backward_level = (spec.topkast_backward_level if spec.topkast_backward_level is not None
                          else max(0.0, 1.0 - 2.0 * forward_density))
        self.factor = (1.0 - backward_level) / forward_density if forward_density > 0 else 1.0
        self.theta: dict[str, torch.Tensor] = {}
        self.forward: dict[str, torch.Tensor] = {}
        self.forward_density: dict[str, float] = {}

    def mask_density(self, density):
        return min(1.0, density * self.factor)

    def initial_mask(self, sp, weight, density):
        return _top_fraction(weight.detach().abs(), density)

    def prepare(self, sp):
        for name, mask in sp.masks.items():
            w = sp.weights[name]
            self.theta[name] = w.detach().clone()
            self.forward_density[name] = sp.target_density[name]
        self._select(sp)

    def _select(self, sp):
        """A = top-D_f of |theta| within B (B ⊇ A by construction); the weight holds theta on A only."""
        for name, mask in sp.masks.items():
            score = self.theta[name].abs().masked_fill(~mask, -1.0)
            self.forward[name] = _top_fraction(score, self.forward_density[name])
        self.after_update(sp)

    def before_optimizer_step(self, sp):
        # Let the optimizer update theta on all of B: the weight holds theta on B for this step (on A it
        # already does).
        with torch.no_grad():
            for name, mask in sp.masks.items():  # one pass, not copy + masked_fill
                torch.where(mask, self.theta[name], self.theta[name].new_zeros(()), out=sp.weights[name])

    def after_optimizer_step(self, sp):
        with torch.no_grad():
            for name, mask in sp.masks.items():
                torch.where(mask, sp.weights[name], self.theta[name], out=self.theta[name])

    def update(self, sp, step):
        changed = {}
        for name, mask in sp.masks.items():
            new = _top_fraction(self.theta[name].abs(), sp.masks[name].float().mean().item())
            changed[name] = sp.set_mask(name, new)
        self._select(sp)
        sp.updates.append({"step": step, "drop_fraction": None, "changed": changed})

    def after_update(self, sp):
        with torch.no_grad():
            for name, forward in self.forward.items():
                torch.where(forward, self.theta[name], self.theta[name].new_zeros(()), out=sp.weights[name])

    def forward_masks(self, sp):
        return self.forward or sp.masks

    def state_dict(self):
        return {"theta": {n: t.cpu().clone() for n, t in self.theta.items()},
                "forward": {n: m.cpu().clone() for n, m in self.forward.items()}}

    def load_state_dict(self, sp, state):
        for n, t in state.get("theta", {}).items():
            self.theta[n] = t.to(sp.weights[n].device)
        for n, m in state.get("forward", {}).items():
            self.forward[n] = m.to(sp.weights[n].device)


def _top_fraction(score: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the round(density * numel) largest scores."""
    k = round(density * score.numel())
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    mask[torch.topk(score.reshape(-1).float(), k, sorted=False).indices] = True
    return mask.view(score.shape)


class FlopRigL(RigL):
    r"""FLOP-priced RigL (ours): drop the smallest-magnitude weights of each layer as RigL does, but regrow
    the same total *globally*, where the dense gradient magnitude per training FLOP is largest:

        grow score of an inactive weight w in layer l = |dL/dw| / c_l,

    with c_l the FLOPs one active weight of layer l costs per training step (forward, input gradient and
    weight gradient; e.g. the MLM head transform runs on the ~15% masked positions only, the frozen-embedding
    projection needs no input gradient). Why the gradient per FLOP: under Adam a newly grown weight moves by
    about the learning rate per step whatever its gradient's scale, so |g| estimates the first-order loss
    decrease it buys, comparable across layers, and dividing by c_l gives the decrease per FLOP spent. Layer
    densities therefore drift from the initial distribution towards cheap, useful weights; the total number
    of active weights (the sparsity level) is exact and the FLOPs are charged at the densities that result.
    Closest published: RigL (per-layer counts fixed), SNFS (redistribution by momentum, not by cost),
    FLOP-regularised pruning (MorphNet, Gordon et al. 2018), which prices structure, not dynamic growth."""

    name = "flop_rigl"
    redistributes = True

    def counts(self, sp, step):
        frac = sp.schedule.drop_fraction_at(step)
        names = list(sp.masks)
        drops = {n: round(frac * int(sp.masks[n].sum())) for n in names}
        total = sum(drops.values())
        if total == 0:
            return {n: (0, 0) for n in names}
        scores = []
        for n in names:
            mask = sp.masks[n].reshape(-1)
            candidates = ~mask
            if drops[n]:  # the weights the shared update will drop (same scores, same selection) can regrow
                s = self.drop_score(sp, n, sp.weights[n]).reshape(-1).float().masked_fill(~mask, math.inf)
                candidates = candidates.clone()
                candidates[torch.topk(s, drops[n], largest=False, sorted=False).indices] = True
            g = sp.scores[n].reshape(-1).float() / sp.weight_cost[n]
            scores.append(g.masked_fill(~candidates, -math.inf))
        sizes = [sp.masks[n].numel() for n in names]
        chosen = torch.topk(torch.cat(scores), total, sorted=False).indices
        bounds = torch.tensor(sizes, device=chosen.device).cumsum(0)
        per_layer = torch.bincount(torch.bucketize(chosen, bounds, right=True), minlength=len(names))
        return {n: (drops[n], int(per_layer[i])) for i, n in enumerate(names)}


class Grow(RigL):
    r"""Sparse-to-less-sparse RigL (ours): start at ``initial_level`` (default: half the final density) and
    grow each layer's density to its final value on a late cubic ramp over [update_start, update_end],

        d_l(t) = d_l^0 + (d_l^f - d_l^0) * r^3,   r = (t - t_start) / (t_end - t_start),

    with RigL's drop-and-grow on top (magnitude drop, gradient growth: the extra weights are the largest
    dense gradients). The bet: early training, where the loss falls fast whatever the capacity, is where
    sparsity is cheapest; capacity is added as the loss nears the target, where it is needed. The last update
    before update_end completes the ramp, so the final density is exact. Closest published: GMP and GraNet
    (Liu et al. 2021) ramp the other way (dense to sparse); NeST (Dai et al. 2019) grows then prunes
    whole-network; RigL and SET keep the density constant."""

    name = "grow"

    def __init__(self, spec):
        super().__init__(spec)
        final = 1.0 - spec.level
        initial = 1.0 - spec.initial_level if spec.initial_level is not None else final / 2.0
        self.start_ratio = initial / final if final > 0 else 1.0

    def initial_mask(self, sp, weight, density):
        from .sparsifier import random_mask
        return random_mask(weight.shape, density * self.start_ratio, sp.generator)

    def ramp(self, sp, step: int) -> float:
        sch = sp.schedule
        if step + sch.every >= sch.end:  # no update after this one: finish the ramp
            return 1.0
        r = min(1.0, max(0.0, (step - sch.start) / max(1, sch.end - sch.start)))
        return r ** 3

    def counts(self, sp, step):
        frac = sp.schedule.drop_fraction_at(step)
        r = self.ramp(sp, step)
        out = {}
        for name, mask in sp.masks.items():
            numel, active = mask.numel(), int(mask.sum())
            final = round(sp.mask_density[name] * numel)
            start = round(sp.mask_density[name] * self.start_ratio * numel)
            keep = max(active, min(final, start + round(r * (final - start))))
            n_drop = min(round(frac * active), numel - keep)
            out[name] = (n_drop, n_drop + keep - active)
        return out


METHODS: dict[str, type[Method]] = {m.name: m for m in (Dense, Static, SET, RigL, SNFS, GMP, TopKAST, FlopRigL,
                                                          Grow)}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"sparsity.method: unknown method {name!r} (choices: {', '.join(METHODS)})") from None
