"""When masks change and by how much: pure functions of the step, separate from which weights change.

Steps count completed optimizer steps. Fractions of training are taken of ``horizon`` steps (by default the
length of the dense run that defines the target, see SparsitySpec.horizon_steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import SparsitySpec


@dataclass(frozen=True)
class UpdateSchedule:
    """Mask updates every ``every`` steps in [start, end), dropping a decaying fraction of active weights."""

    every: int
    start: int
    end: int
    drop_fraction: float
    kind: str = "cosine"  # constant | cosine | linear

    def is_update(self, step: int) -> bool:
        """Whether the masks are updated after ``step`` completed steps."""
        return step > 0 and self.start <= step < self.end and (step - self.start) % self.every == 0

    def drop_fraction_at(self, step: int) -> float:
        """Drop fraction at ``step``: constant, or decayed from drop_fraction at start to 0 at end.

        Cosine decay as in RigL (Evci et al. 2020, eq. 1): f/2 * (1 + cos(pi * t / T_end))."""
        progress = min(1.0, max(0.0, (step - self.start) / max(1, self.end - self.start)))
        if self.kind == "constant":
            return self.drop_fraction
        if self.kind == "linear":
            return self.drop_fraction * (1.0 - progress)
        return 0.5 * self.drop_fraction * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def from_spec(cls, sparsity: SparsitySpec, horizon: int) -> UpdateSchedule:
        """The schedule of the sparsity settings, laid over ``horizon`` steps."""
        return cls(
            every=sparsity.update_every,
            start=round(sparsity.update_start * horizon),
            end=max(1, round(sparsity.update_end * horizon)),
            drop_fraction=sparsity.drop_fraction,
            kind=sparsity.drop_schedule,
        )


def gmp_sparsity(step: int, *, final: float, start: int, end: int, initial: float = 0.0) -> float:
    """Gradual magnitude pruning's cubic ramp (Zhu & Gupta 2017, "To prune, or not to prune", eq. 1):
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0))^3, held at s_i before t0 and at s_f after end."""
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1.0 - (step - start) / (end - start)) ** 3
