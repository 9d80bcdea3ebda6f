"""The reference that prices net time: seconds per dense training FLOP of the spec's own model, measured once.

Every trial of an experiment prices its net FLOPs with this one number (times its method's own overhead,
measured side by side in the trial: ``Trainer.method_overhead``), so the objective does not depend on which node
ran a trial or how busy it was. The number itself is a property of the machine that measured it; within an
experiment it only sets the unit (dense-equivalent seconds), never the ranking.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from ..data.batches import TokenizedData
from ..spec import Spec, spec_from_dict
from .trainer import Trainer


@dataclass(frozen=True)
class Reference:
    """A measured dense step of the spec's model: its median wall seconds and its FLOPs."""

    dense_step_s: float
    dense_step_flops: float

    @property
    def seconds_per_flop(self) -> float:
        """The price of one dense training FLOP in seconds."""
        return self.dense_step_s / self.dense_step_flops


def dense_twin(spec: Spec) -> Spec:
    """The spec's own model trained densely (search and tune sections dropped)."""
    raw = {k: v for k, v in spec.to_dict().items() if k not in ("search", "tune", "sparsity")}
    return spec_from_dict({**raw, "sparsity": {"method": "dense"}})


def measure_reference(spec: Spec, data: TokenizedData, *, steps: int = 8, warmup: int = 2) -> Reference:
    """Time ``steps`` dense training steps of the spec's model after ``warmup`` (median of the steps)."""
    trainer = Trainer(dense_twin(spec), data, None)
    trainer.model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        trainer.train_step()  # synchronises on CUDA before it returns
        if i >= warmup:
            times.append(time.perf_counter() - start)
    _, dense = trainer.step_flops(trainer.expected_masked())
    return Reference(statistics.median(times), dense.total)
