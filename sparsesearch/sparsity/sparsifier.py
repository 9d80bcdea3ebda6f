"""The shared sparse-training mechanism: masks, their exact application, and one drop-and-grow update.

Lifecycle, driven by the trainer around every optimizer step (torch.ao.pruning-like: prepare, step, state):

    loss.backward()
    sparsifier.before_optimizer_step(step)   # method sees dense gradients; regularizer; gradients masked
    clip gradients; optimizer.step()
    sparsifier.after_optimizer_step(step)    # masks re-applied; scheduled drop-and-grow update

Invariants (DESIGN.md section 5): masked weights are exactly zero after every optimizer step, and so is their
optimizer state (gradients are masked before the step, and the state of dropped weights is zeroed when they are
dropped, so AdamW with weight decay never revives them); regrown weights start at zero with zero state; per-layer
active counts are exact; an update is skipped when gradients are non-finite; masks travel in ``state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..flops import Density
from .distributions import layer_densities
from .methods import get_method
from .schedules import UpdateSchedule


def drop_and_grow(mask: torch.Tensor, drop_score: torch.Tensor, grow_score: torch.Tensor | None,
                  n_drop: int, n_grow: int) -> torch.Tensor:
    """New mask: the ``n_drop`` active entries with the lowest drop score removed, then the ``n_grow`` entries
    with the highest grow score among those now inactive (just-dropped ones included, as in RigL) added."""
    flat = mask.reshape(-1)
    new = flat.clone()
    active = int(flat.sum())
    if not 0 <= n_drop <= active:
        raise ValueError(f"cannot drop {n_drop} of {active} active weights")
    if n_drop:
        score = drop_score.reshape(-1).float().masked_fill(~flat, math.inf)
        new[torch.topk(score, n_drop, largest=False, sorted=False).indices] = False
    if n_grow:
        if n_grow > int((~new).sum()):
            raise ValueError(f"cannot grow {n_grow} into {int((~new).sum())} inactive weights")
        score = grow_score.reshape(-1).float().masked_fill(new, -math.inf)
        new[torch.topk(score, n_grow, sorted=False).indices] = True
    return new.view_as(mask)


def random_mask(shape: torch.Size, density: float, generator: torch.Generator) -> torch.Tensor:
    """A mask with exactly round(density * numel) active entries, uniformly placed."""
    n = math.prod(shape)
    k = round(density * n)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=generator)[:k]] = True
    return mask.view(shape)


class Sparsifier:
    """Masks over a model's sparsifiable weights, kept exact through training by one method's updates."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, spec, *, horizon: int, seed: int,
                 weight_cost: dict[str, float] | None = None):
        """``weight_cost``: training FLOPs per step of one active weight, by name (methods that price growth
        by compute use it; default 1 for every weight)."""
        self.spec = spec
        self.method = get_method(spec.method)(spec)
        self.optimizer = optimizer
        self.weights: dict[str, nn.Parameter] = model.sparsifiable_weights()
        shapes = {n: tuple(w.shape) for n, w in self.weights.items()}
        self.weight_cost = {n: float((weight_cost or {}).get(n, 1.0)) for n in self.weights}
        if self.method.name == "dense":
            self.target_density = {n: 1.0 for n in shapes}
        else:
            self.target_density = layer_densities(shapes, spec.level, spec.distribution,
                                                  dense_groups=spec.dense_groups, group_levels=spec.group_levels)
        self.schedule = UpdateSchedule.from_spec(spec, horizon)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
        # Only weights that will ever be sparse carry a mask; the rest are plain dense weights. ``mask_density``
        # is the density each mask holds exactly once the method's ramp (if any) is done.
        self.mask_density = {n: self.method.mask_density(d) for n, d in self.target_density.items() if d < 1.0}
        self.masks: dict[str, torch.Tensor] = {}
        for name, d in self.mask_density.items():
            w = self.weights[name]
            self.masks[name] = self.method.initial_mask(self, w, d).to(w.device)
        self._inactive = {n: ~m for n, m in self.masks.items()}
        self.method.prepare(self)
        self.momentum: dict[str, torch.Tensor] = {}
        self.scores: dict[str, torch.Tensor] = {}
        self.updates: list[dict] = []  # one entry per mask update: step, drop fraction, fraction changed
        self._pending_update = False
        self.apply_masks()
        self._refresh_densities()

    # ----- lifecycle ------------------------------------------------------------------------------------------
    def is_update_step(self, step: int) -> bool:
        """Whether the mask changes after optimizer step ``step`` (0-based)."""
        if not self.method.updates_masks or not self.masks:
            return False
        done = step + 1
        if not self.method.sparse_from_start:  # gmp prunes at the end of its ramp, and after it until done
            return self.schedule.is_update(done) or (done >= self.schedule.end and self.method.pending(self))
        return self.schedule.is_update(done)

    def before_optimizer_step(self, step: int) -> None:
        if not self.masks:
            return
        update = self.is_update_step(step)
        finite = self._gradients_finite() if update or self.method.dense_weight_grad_every_step else True
        self._pending_update = update and finite
        if update and not finite:
            self.updates.append({"step": step + 1, "skipped": "non-finite gradients"})
        if finite and (update or self.method.dense_weight_grad_every_step):
            self.method.observe_gradients(self, self._pending_update)
        self.method.before_optimizer_step(self)  # before the regularizer: Top-KAST fills in B \ A here
        strength = self.spec.regularizer_strength
        with torch.no_grad():
            for name, mask in self.masks.items():
                w = self.weights[name]
                if w.grad is None:
                    continue
                if self.spec.regularizer == "l1" and strength:
                    w.grad.add_(torch.sign(w), alpha=strength)
                elif self.spec.regularizer == "l2" and strength:
                    w.grad.add_(w, alpha=strength)
                w.grad.masked_fill_(self._inactive[name], 0.0)
        if self.spec.regularizer != "none" and strength:
            self._regularize_unmasked_dense(strength)

    def _regularize_unmasked_dense(self, strength: float) -> None:
        # Weights kept dense by the distribution are sparsifiable weights too: the regularizer applies to them.
        with torch.no_grad():
            for name, w in self.weights.items():
                if name in self.masks or w.grad is None:
                    continue
                w.grad.add_(torch.sign(w) if self.spec.regularizer == "l1" else w, alpha=strength)

    def after_optimizer_step(self, step: int) -> None:
        if not self.masks:
            return
        self.apply_masks(state=False)
        self.method.after_optimizer_step(self)
        if self._pending_update:
            self.method.update(self, step + 1)
            self._refresh_densities()
            self._pending_update = False
        self.method.after_update(self)
        self.scores = {}

    # ----- the one update -------------------------------------------------------------------------------------
    def drop_and_grow_update(self, step: int) -> None:
        """The shared update: per layer, drop and grow the method's counts by its scores."""
        counts = self.method.counts(self, step)
        changed = {}
        with torch.no_grad():
            for name, mask in self.masks.items():
                n_drop, n_grow = counts[name]
                if n_drop == 0 and n_grow == 0:
                    changed[name] = 0.0
                    continue
                w = self.weights[name]
                grow = self.method.grow_score(self, name, w) if n_grow else None
                new = drop_and_grow(mask, self.method.drop_score(self, name, w), grow, n_drop, n_grow)
                changed[name] = self.set_mask(name, new)
        self.updates.append({"step": step, "drop_fraction": self.method.logged_drop_fraction(self, step),
                             "changed": changed})

    def set_mask(self, name: str, new: torch.Tensor) -> float:
        """Replace a mask. Weights that leave it become zero; those that enter were inactive, hence already
        zero; both get zero optimizer state. Returns the fraction of active connections changed."""
        old = self.masks[name]
        w = self.weights[name]
        with torch.no_grad():
            w.masked_fill_(~new, 0.0)
            self._zero_state(w, old ^ new)
        self.masks[name], self._inactive[name] = new, ~new
        return int((new & ~old).sum() + (old & ~new).sum()) / max(1, 2 * int(old.sum()))

    def _zero_state(self, weight: nn.Parameter, where: torch.Tensor) -> None:
        for value in self.optimizer.state.get(weight, {}).values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.masked_fill_(where, 0.0)

    def apply_masks(self, *, state: bool = True) -> None:
        """Zero every masked weight and (with ``state``) its optimizer state; idempotent.

        After each optimizer step the weights alone suffice: gradients were masked before the step, so the
        optimizer state of inactive weights is still zero (the contract tests check it)."""
        # masked_fill, not multiplication: a non-finite value times zero would not be zero.
        with torch.no_grad():
            for name in self.masks:
                w = self.weights[name]
                w.masked_fill_(self._inactive[name], 0.0)
                if state:
                    for value in self.optimizer.state.get(w, {}).values():
                        if torch.is_tensor(value) and value.shape == w.shape:
                            value.masked_fill_(self._inactive[name], 0.0)

    def _gradients_finite(self) -> bool:
        return all(self.weights[n].grad is None or bool(torch.isfinite(self.weights[n].grad).all())
                   for n in self.masks)

    # ----- reporting ------------------------------------------------------------------------------------------
    def _refresh_densities(self) -> None:
        fwd = self.method.forward_masks(self)
        self._densities = {n: (int(fwd[n].sum()) / fwd[n].numel() if n in fwd else 1.0) for n in self.weights}
        self._backward = {n: (int(m.sum()) / m.numel()) for n, m in self.masks.items()}

    def densities(self) -> dict[str, float]:
        """Density of every sparsifiable weight in the forward pass (1.0 for unmasked ones)."""
        return dict(self._densities)

    def flop_densities(self, step: int) -> dict[str, Density]:
        """What step ``step`` costs per weight: (forward, input-gradient, weight-gradient) densities."""
        dens = self._densities
        dense_wgrad = self.method.dense_weight_grad_every_step or (
            self.method.dense_weight_grad_on_update and self.is_update_step(step))
        if dense_wgrad:
            return {n: ((d, d, 1.0) if n in self.masks else d) for n, d in dens.items()}
        # Weight gradients are needed for the whole mask (Top-KAST's backward set may exceed the forward set).
        return {n: ((d, d, self._backward[n]) if n in self.masks and self._backward[n] != d else d)
                for n, d in dens.items()}

    # ----- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"masks": {n: m.cpu().clone() for n, m in self.masks.items()},
                "momentum": {n: m.cpu().clone() for n, m in self.momentum.items()},
                "generator": self.generator.get_state(), "updates": list(self.updates),
                "method": self.method.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.masks):
            raise ValueError(f"checkpoint masks {sorted(state['masks'])} do not match this model's "
                             f"{sorted(self.masks)}")
        for n, m in state["masks"].items():
            if m.shape != self.masks[n].shape:
                raise ValueError(f"checkpoint mask {n} has shape {tuple(m.shape)}, expected "
                                 f"{tuple(self.masks[n].shape)}")
            self.masks[n] = m.to(self.masks[n].device, dtype=torch.bool)
            self._inactive[n] = ~self.masks[n]
        self.momentum = {n: m.to(self.weights[n].device) for n, m in state["momentum"].items()}
        self.generator.set_state(state["generator"])
        self.updates = list(state["updates"])
        self.method.load_state_dict(self, state.get("method", {}))
        self.apply_masks()
        self.method.after_update(self)
        self._refresh_densities()
