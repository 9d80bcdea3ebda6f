"""The sparsifier: masks over a model's sparsifiable weights, kept exact through training, changed only here.

Lifecycle, driven by the trainer around every optimizer step (torch.ao.pruning-like: prepare, step, state):

    loss.backward()
    sparsifier.before_optimizer_step(step)   # method sees dense gradients; regularizer; gradients masked
    clip gradients; optimizer.step()
    sparsifier.after_optimizer_step(step)    # masks re-applied; scheduled drop-and-grow update

Invariants (docs/ARCHITECTURE.md, "Sparse training"): masked weights are exactly zero after every optimizer
step, and so is their optimizer state (gradients are masked before the step, and the state of dropped weights is
zeroed when they are dropped, so AdamW with weight decay never revives them); regrown weights start at zero (or
at the method's ``grown_values``) with zero state; per-layer active counts are exactly what the method's counts
asked for; an update is skipped when gradients are non-finite; masks and the method's state travel in
``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model.flops import Density, charged_densities
from ..model.network import MLMModel
from ..spec import SparsitySpec
from .masks import drop_and_grow
from .method import SparsityView
from .registry import get_method
from .schedules import UpdateSchedule


class Sparsifier:
    """Masks over a model's sparsifiable weights, changed by one method's decisions."""

    def __init__(
        self,
        model: MLMModel,
        optimizer: torch.optim.Optimizer,
        sparsity: SparsitySpec,
        *,
        horizon: int,
        seed: int,
        weight_cost: dict[str, float] | None = None,
        tokens_per_step: float = 0.0,
    ):
        """``weight_cost``: training FLOPs per step of one active weight, by name (methods that price growth
        by compute use it; default 1 for every weight). ``tokens_per_step``: training tokens a step reads (a ramp
        led by the data uses it)."""
        self.sparsity = sparsity
        self.method = get_method(sparsity.method)(sparsity)
        self.optimizer = optimizer
        self.weights: dict[str, nn.Parameter] = model.sparsifiable_weights()
        self.target_density = self.method.layer_densities(model.shape.weight_shapes())
        model.set_norm_channels(self.method.norm_channels(model.shape.weight_shapes()))
        self._set_norm_blend = model.set_norm_blend
        self._norm_blend: float | None = None  # the value last set (None: not yet; the model's buffer holds it)
        self.schedule = UpdateSchedule.from_spec(sparsity, horizon)
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + 17)
        # Only weights that will ever be sparse carry a mask (or every weight, where the method says so); the rest
        # are plain dense weights. ``mask_density`` is the density each mask holds exactly once the method's ramp
        # (if any) is done.
        masked = {n: d for n, d in self.target_density.items() if d < 1.0 or self.method.masks_dense_weights}
        self.mask_density = {n: self.method.mask_density(d) for n, d in masked.items()}
        self.masks: dict[str, torch.Tensor] = {}
        self.view = SparsityView(
            self.masks,
            self.weights,
            target_density=self.target_density,
            mask_density=self.mask_density,
            weight_cost={n: float((weight_cost or {}).get(n, 1.0)) for n in self.weights},
            schedule=self.schedule,
            generator=self.generator,
            tokens_per_step=tokens_per_step,
            dense_weights=sum(w.numel() for n, w in self.weights.items() if n not in self.mask_density),
        )
        for name, d in self.mask_density.items():
            self.masks[name] = self.method.initial_mask(self.view, name, d).to(self.weights[name].device)
        if sparsity.init_scale == "density":
            self._scale_initial_weights()
        self._inactive = {n: ~m for n, m in self.masks.items()}
        self.method.start(self.view)
        self.updates: list[dict[str, Any]] = []  # one entry per mask update (or skipped update)
        self._pending_update = False
        self.apply_masks()
        self._load_forward()
        self._refresh_densities()

    # ----- lifecycle ------------------------------------------------------------------------------------------
    def is_update_step(self, step: int) -> bool:
        """Whether the masks change after optimizer step ``step`` (0-based)."""
        return bool(self.masks) and self.method.wants_update(self.view, step + 1)

    def before_optimizer_step(self, step: int) -> None:
        """Show the method the dense gradients, load its stored values, add the regularizer, mask gradients."""
        if not self.masks:
            return
        update = self.is_update_step(step)
        dense_grad = self.method.needs_dense_gradient(update)
        finite = self._gradients_finite() if update or dense_grad else True
        self._pending_update = update and finite
        if update and not finite:
            self.updates.append({"step": step + 1, "skipped": "non-finite gradients"})
        if finite and (update or dense_grad):
            self.method.observe_gradients(self.view, self._pending_update)
        stored = self.method.stored_values(self.view)
        with torch.no_grad():
            for name, mask in self.masks.items():
                w = self.weights[name]
                if stored is not None:  # one pass, not copy + masked_fill
                    torch.where(mask, stored[name], stored[name].new_zeros(()), out=w)
                if w.grad is None:
                    continue
                self._regularize(w)
                w.grad.masked_fill_(self._inactive[name], 0.0)
            for name, w in self.weights.items():
                # Weights kept dense by the distribution are sparsifiable weights too: the regularizer applies.
                if name not in self.masks and w.grad is not None:
                    self._regularize(w)

    def _regularize(self, w: nn.Parameter) -> None:
        kind, strength = self.sparsity.regularizer, self.sparsity.regularizer_strength
        if w.grad is None or not strength:
            return
        if kind == "l1":
            w.grad.add_(torch.sign(w), alpha=strength)
        elif kind == "l2":
            w.grad.add_(w, alpha=strength)

    def after_optimizer_step(self, step: int) -> None:
        """Re-apply the masks, then run a scheduled update."""
        if not self.masks:
            return
        self.apply_masks(state=False)
        self.method.after_optimizer_step(self.view)
        if self._pending_update:
            self._update(step + 1)
            self._refresh_densities()
            self._pending_update = False
        self._load_forward()
        blend = self.method.norm_blend(step + 1)
        if blend is not None and blend != self._norm_blend:
            self._set_norm_blend(blend)
            self._norm_blend = blend

    # ----- the one update -------------------------------------------------------------------------------------
    def _update(self, step: int) -> None:
        """Per layer, drop and grow the method's counts by its scores; log what changed."""
        counts = self.method.counts(self.view, step)
        changed: dict[str, float] = {}
        active = dropped = grown = 0
        with torch.no_grad():
            for name, mask in self.masks.items():
                n_drop, n_grow = counts[name]
                active += int(mask.sum())
                dropped, grown = dropped + n_drop, grown + n_grow
                if n_drop == 0 and n_grow == 0:
                    changed[name] = 0.0
                    continue
                grow = self.method.grow_score(self.view, name) if n_grow else None
                new = drop_and_grow(mask, self.method.drop_score(self.view, name), grow, n_drop, n_grow)
                changed[name] = self._set_mask(name, new)
        self.method.after_masks_changed(self.view)
        self.updates.append(
            {"step": step, "dropped": dropped / max(1, active), "grown": grown / max(1, active), "changed": changed}
        )

    def _set_mask(self, name: str, new: torch.Tensor) -> float:
        """Replace a mask. Weights that leave it become zero; those that enter were inactive, hence zero, and
        start there unless the method gives them values (``grown_values``); both get zero optimizer state. Returns
        the fraction of active connections changed."""
        old = self.masks[name]
        w = self.weights[name]
        with torch.no_grad():
            w.masked_fill_(~new, 0.0)
            grown = new & ~old
            values = self.method.grown_values(self.view, name, grown)
            if values is not None:
                torch.where(grown, values.to(w.device, w.dtype), w, out=w)
            self._zero_state(w, old ^ new)
        self.masks[name], self._inactive[name] = new, ~new
        return int((new & ~old).sum() + (old & ~new).sum()) / max(1, 2 * int(old.sum()))

    def _zero_state(self, weight: nn.Parameter, where: torch.Tensor) -> None:
        for value in self.optimizer.state.get(weight, {}).values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.masked_fill_(where, 0.0)

    @torch.no_grad()
    def _scale_initial_weights(self) -> None:
        """``sparsity.init_scale: density``: each masked weight divided by the square root of its layer's forward
        density at the start (the mask's own, or the method's forward density where the mask is larger, as
        Top-KAST's), so that a pre-activation sums as many active terms' variance as a dense layer's (Dey et al.
        2024, SuPar). Later changes of density change no weight."""
        for name, mask in self.masks.items():
            density = min(float(mask.sum()) / mask.numel(), self.target_density[name])
            if density > 0:
                self.weights[name].mul_(density**-0.5)

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
                    self._zero_state(w, self._inactive[name])

    def _load_forward(self) -> None:
        """Where the forward pass uses a subset of the mask (Top-KAST), the weights hold the method's stored
        values on that subset and zero elsewhere."""
        forward, stored = self.method.forward_masks(self.view), self.method.stored_values(self.view)
        if forward is None or stored is None:
            return
        with torch.no_grad():
            for name, mask in forward.items():
                torch.where(mask, stored[name], stored[name].new_zeros(()), out=self.weights[name])

    def _gradients_finite(self) -> bool:
        grads = [self.weights[n].grad for n in self.masks]
        return all(g is None or bool(torch.isfinite(g).all()) for g in grads)

    # ----- reporting ------------------------------------------------------------------------------------------
    def _refresh_densities(self) -> None:
        fwd = self.method.forward_masks(self.view) or self.masks
        self._densities = {n: (int(fwd[n].sum()) / fwd[n].numel() if n in fwd else 1.0) for n in self.weights}
        self._backward = {n: (int(m.sum()) / m.numel()) for n, m in self.masks.items()}
        self._activation = dict(self.method.activation_densities(self.view))

    def forward_masks(self) -> dict[str, torch.Tensor]:
        """The mask of every masked weight as the forward pass uses it (Top-KAST's forward set inside its mask)."""
        return dict(self.method.forward_masks(self.view) or self.masks)

    def density(self, name: str) -> float:
        """One sparsifiable weight's forward density (1.0 unmasked), without copying the table."""
        return self._densities[name]

    def densities(self) -> dict[str, float]:
        """Density of every sparsifiable weight in the forward pass (1.0 for unmasked ones)."""
        return dict(self._densities)

    def flop_densities(self, step: int) -> dict[str, Density]:
        """What step ``step`` costs per weight: (forward, input-gradient, weight-gradient) densities."""
        dense_gradient = self.method.needs_dense_gradient(self.is_update_step(step))
        charged = charged_densities(self._densities, self._backward, dense_gradient=dense_gradient)
        return {**charged, **self._activation}

    def activation_densities(self) -> dict[str, float]:
        """Densities of the activation products that a method charges below 1 (by component name)."""
        return dict(self._activation)

    # ----- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Masks, the mask generator, the update log and the method's state, for a checkpoint."""
        return {
            "masks": {n: m.cpu().clone() for n, m in self.masks.items()},
            "generator": self.generator.get_state(),
            "updates": list(self.updates),
            "method": self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``; refuses masks of another model."""
        if set(state["masks"]) != set(self.masks):
            raise ValueError(
                f"checkpoint masks {sorted(state['masks'])} do not match this model's {sorted(self.masks)}"
            )
        for n, m in state["masks"].items():
            if m.shape != self.masks[n].shape:
                raise ValueError(
                    f"checkpoint mask {n} has shape {tuple(m.shape)}, expected {tuple(self.masks[n].shape)}"
                )
            self.masks[n] = m.to(self.masks[n].device, dtype=torch.bool)
            self._inactive[n] = ~self.masks[n]
        self.generator.set_state(state["generator"])
        self.updates = list(state["updates"])
        self.method.load_state_dict(state.get("method", {}), self.view)
        self.apply_masks()
        self._load_forward()
        self._refresh_densities()
