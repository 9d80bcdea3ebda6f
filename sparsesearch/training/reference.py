"""The reference that prices net time: seconds per dense training FLOP of the spec's own model, measured once.

Every trial of an experiment prices its net FLOPs with this one number (times its method's own overhead,
measured side by side in the trial: ``Trainer.method_overhead``), so the objective does not depend on which node
ran a trial or how busy it was. The number itself is a property of the machine that measured it; within an
experiment it only sets the unit (dense-equivalent seconds), never the ranking.

A few seconds of other work on the machine (an import, a compiler, another user) must not move it: a step timed
while another process shares the cores takes 2-4x longer. So the steps are timed in short blocks spread over a
span of about a hundred steps' time (``SPAN_STEPS``, some seconds for a real model), and the price is the median
of the fastest quarter of all timed steps: a burst shorter than about half the span leaves more than a quarter of
the steps untouched, and those are the ones counted (the median of several, not the single fastest, so that one
odd step does not set the unit). A load that lasts the whole span is a slower machine, and is measured as one.
``benchmarks/reference_price.py`` measures it idle and under a burst.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.batches import TokenizedData
from ..spec import Spec, spec_from_dict
from .trainer import Trainer

BLOCKS, BLOCK_STEPS, WARMUP = 5, 4, 2
SPAN_STEPS = 100  # the blocks spread over about this many steps' time ...
MAX_SPAN_S = 30.0  # ... and at most this many seconds (a slow model need not wait longer to dodge a burst)


@dataclass(frozen=True)
class Reference:
    """A measured dense step of the spec's model (its seconds: the median of the fastest quarter of the timed
    steps), its FLOPs, and the machine that measured it."""

    dense_step_s: float
    dense_step_flops: float
    machine: str = ""
    step_s: tuple[float, ...] = ()  # every timed step, in the order measured

    @property
    def seconds_per_flop(self) -> float:
        """The price of one dense training FLOP in seconds."""
        return self.dense_step_s / self.dense_step_flops


def dense_twin(spec: Spec) -> Spec:
    """The spec's own model trained densely (search and tune sections dropped)."""
    raw = {k: v for k, v in spec.to_dict().items() if k not in ("search", "tune", "sparsity")}
    return spec_from_dict({**raw, "sparsity": {"method": "dense"}})


def machine_name(device: torch.device) -> str:
    """Where a reference was measured: host, processor (or GPU) and the threads torch uses."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = _cpu_model() or platform.processor() or platform.machine()
    return f"{platform.node() or 'unknown host'} ({what}, {torch.get_num_threads()} threads, {device.type})"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def measure_reference(
    spec: Spec,
    data: TokenizedData,
    *,
    blocks: int = BLOCKS,
    block_steps: int = BLOCK_STEPS,
    warmup: int = WARMUP,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Reference:
    """Time dense training steps of the spec's model: ``blocks`` blocks of ``block_steps`` steps after ``warmup``,
    spread over about ``SPAN_STEPS`` steps' time; the price is the median of the fastest quarter of the timed steps
    (module docstring)."""
    trainer = Trainer(dense_twin(spec), data, None)
    trainer.model.train()

    def timed_step() -> float:
        start = clock()
        trainer.train_step()  # synchronises on CUDA before it returns
        return clock() - start

    last = 0.0
    for _ in range(warmup):
        last = timed_step()
    block_time = last * block_steps
    gap = max(0.0, (min(SPAN_STEPS * last, MAX_SPAN_S) - blocks * block_time) / max(blocks - 1, 1))
    steps: list[float] = []
    for b in range(blocks):
        if b:
            sleep(gap)
        steps += [timed_step() for _ in range(block_steps)]
    fastest = sorted(steps)[: max(1, len(steps) // 4)]
    _, dense = trainer.step_flops(trainer.expected_masked())
    return Reference(statistics.median(fastest), dense.total, machine_name(trainer.device), tuple(steps))
