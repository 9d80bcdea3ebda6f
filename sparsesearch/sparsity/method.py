"""The seam between the sparsifier and a sparse training method (docs/ARCHITECTURE.md, "The method seam").

A method decides; the sparsifier acts. At each scheduled update the sparsifier asks the method for its
``counts`` (how many weights to drop and grow per layer), then for each layer its ``drop_score`` and
``grow_score``, and applies one shared drop-and-grow (``masks.drop_and_grow``). The method sees the run through
a read-only ``SparsityView``; only the sparsifier changes masks, optimizer state and the update log. State a
method keeps (gradient scores, momentum, a dense weight store) lives in the method and travels in its
``state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch

from ..model.flops import Density, charged_densities
from ..spec import SparsitySpec
from .distributions import layer_densities
from .masks import random_mask
from .schedules import UpdateSchedule


class SparsityView:
    """What a method may read: the masks, weights and gradients of the masked weights, and the run's fixed facts.

    ``masks`` is a live, read-only mapping; ``weight`` and ``grad`` return detached tensors. None of them may be
    changed in place."""

    def __init__(
        self,
        masks: dict[str, torch.Tensor],
        weights: Mapping[str, torch.nn.Parameter],
        *,
        target_density: Mapping[str, float],
        mask_density: Mapping[str, float],
        weight_cost: Mapping[str, float],
        schedule: UpdateSchedule,
        generator: torch.Generator,
        tokens_per_step: float = 0.0,
        dense_weights: int = 0,
    ):
        self.masks: Mapping[str, torch.Tensor] = MappingProxyType(masks)
        self._weights = weights
        self.target_density = MappingProxyType(dict(target_density))  # forward density at the end of training
        self.mask_density = MappingProxyType(dict(mask_density))  # density each mask holds once ramps are done
        self.weight_cost = MappingProxyType(dict(weight_cost))  # training FLOPs per step of one active weight
        self.schedule = schedule
        self.generator = generator  # the run's mask randomness (seeded): random scores draw from it
        self.tokens_per_step = tokens_per_step  # training tokens a step reads (batch x sequence length)
        self.dense_weights = dense_weights  # sparsifiable weights that carry no mask (always active)

    def weight(self, name: str) -> torch.Tensor:
        """The weight's current values (detached)."""
        return self._weights[name].detach()

    def grad(self, name: str) -> torch.Tensor:
        """The weight's dense gradient of this step (before it is masked)."""
        grad = self._weights[name].grad
        if grad is None:
            raise ValueError(f"{name} has no gradient in this step")
        return grad.detach()

    def active(self, name: str) -> int:
        """Active weights in the layer's mask."""
        return int(self.masks[name].sum())


class Method(ABC):
    """A sparse training method: its drop score, grow score and counts; every other hook is optional.

    Register a subclass in ``registry.METHODS`` under its ``name``; ``check_spec`` adds its rules for the
    sparsity section (e.g. a setting that must not exceed the level)."""

    name: ClassVar[str]
    # Whether a weight that ends dense (forward density 1) carries a mask too: a method that trains part of every
    # layer first (core_grow's core) needs one; for the others such a weight is a plain dense weight.
    masks_dense_weights: ClassVar[bool] = False

    def __init__(self, sparsity: SparsitySpec):
        self.sparsity = sparsity

    @classmethod
    def check_spec(cls, sparsity: SparsitySpec, path: str) -> None:
        """Raise ``SpecError`` (naming ``path``.key) when the sparsity settings do not suit this method."""

    # ----- the core: what to drop, what to grow, how many -------------------------------------------------------
    def drop_score(self, view: SparsityView, name: str) -> torch.Tensor:
        """Among active weights, the lowest scores are dropped first. Default: magnitude."""
        return view.weight(name).abs()

    @abstractmethod
    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        """Among inactive weights (the just-dropped ones included), the highest scores are grown first."""

    def grown_values(self, view: SparsityView, name: str, grown: torch.Tensor) -> torch.Tensor | None:
        """Values the weights grown by this update (``grown``, a bool mask) start at, read where ``grown`` is
        set. None: zero, RigL's rule (Evci et al. 2020), which leaves the function unchanged."""
        return None

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        """(n_drop, n_grow) per masked weight for the update after ``step`` steps. Default: drop the scheduled
        fraction of each layer's active weights and regrow as many in the same layer."""
        frac = view.schedule.drop_fraction_at(step)
        out = {}
        for name, mask in view.masks.items():
            active = view.active(name)
            n = min(round(frac * active), mask.numel() - active)
            out[name] = (n, n)
        return out

    # ----- optional hooks --------------------------------------------------------------------------------------
    def layer_densities(self, shapes: Mapping[str, tuple[int, int]]) -> dict[str, float]:
        """Forward density of every sparsifiable weight at the end of training (1.0: dense; such a weight carries no
        mask unless ``masks_dense_weights``)."""
        s = self.sparsity
        return layer_densities(
            shapes, s.level, s.distribution, dense_groups=s.dense_groups, group_levels=s.group_levels
        )

    def step_densities(self, shapes: Mapping[str, tuple[int, int]], update: bool) -> dict[str, Density]:
        """What one training step costs per weight once every mask is at its target density, charged as
        ``Sparsifier.flop_densities`` charges a real step: forward, input-gradient and weight-gradient densities
        (``update``: a mask update follows the step). The ``flops`` command's estimate; no model needed."""
        forward = self.layer_densities(shapes)
        backward = {name: self.mask_density(d) for name, d in forward.items() if d < 1.0}
        return charged_densities(forward, backward, dense_gradient=self.needs_dense_gradient(update))

    def mask_density(self, density: float) -> float:
        """Density the mask of a weight holds, given the weight's forward density (Top-KAST's is larger)."""
        return density

    def initial_mask(self, view: SparsityView, name: str, density: float) -> torch.Tensor:
        """The mask at step 0: random with exactly round(density * numel) entries (Evci et al. 2020 start
        every method so)."""
        return random_mask(view.weight(name).shape, density, view.generator)

    def start(self, view: SparsityView) -> None:
        """Called once the initial masks exist, before the first step."""

    def wants_update(self, view: SparsityView, step: int) -> bool:
        """Whether the masks are updated after ``step`` optimizer steps. Default: on the update schedule."""
        return view.schedule.is_update(step)

    def needs_dense_gradient(self, update: bool) -> bool:
        """Whether this step needs the dense weight gradient (charged as dense weight-gradient FLOPs);
        ``update``: a mask update follows the step."""
        return False

    def observe_gradients(self, view: SparsityView, update: bool) -> None:
        """Called with finite dense gradients before they are masked, on steps that need them
        (``needs_dense_gradient``) and before every update."""

    def stored_values(self, view: SparsityView) -> Mapping[str, torch.Tensor] | None:
        """Values the masked weights hold for the optimizer step (and on ``forward_masks`` after it), when the
        method keeps them apart from the weights (Top-KAST's dense store). None: the weights hold them."""
        return None

    def after_optimizer_step(self, view: SparsityView) -> None:
        """After the optimizer step, before a scheduled update."""

    def after_masks_changed(self, view: SparsityView) -> None:
        """After an update changed the masks."""

    def norm_channels(self, shapes: Mapping[str, tuple[int, int]]) -> int | None:
        """Hidden channels the LayerNorms take their statistics from: the first n (None: all). Asked once, when
        the sparsifier is built (core_grow's dense core normalises as a narrow model would)."""
        return None

    def norm_blend(self, step: int) -> float | None:
        """How far the LayerNorms' statistics have moved from the ``norm_channels`` to all channels after ``step``
        optimizer steps (0: not at all, 1: the plain LayerNorm's); asked after every step. None: no change."""
        return None

    def activation_densities(self, view: SparsityView) -> Mapping[str, float]:
        """Density of activation products for the FLOP charge, by component name (e.g.
        'encoder.layer.0.attention.scores'): the share of their head dimensions in use. Empty: all dense."""
        return {}

    def forward_masks(self, view: SparsityView) -> Mapping[str, torch.Tensor] | None:
        """Masks of the forward pass when they are a subset of the masks (Top-KAST). None: the masks."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The method's own state, saved with every checkpoint."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any], view: SparsityView) -> None:
        """Restore ``state_dict`` (tensors go to the device of their weight)."""


def state_to(tensors: Mapping[str, torch.Tensor], view: SparsityView) -> dict[str, torch.Tensor]:
    """Per-weight tensors of a checkpoint, each on the device of its weight."""
    return {n: t.to(view.weight(n).device) for n, t in tensors.items()}


def state_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-weight tensors copied to the CPU for a checkpoint."""
    return {n: t.cpu().clone() for n, t in tensors.items()}
