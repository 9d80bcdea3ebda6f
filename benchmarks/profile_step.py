"""torch.profiler table of a spec's training step: which operators take the time, matmuls and everything else.

    python benchmarks/profile_step.py [SPEC] [--steps N] [--shapes] [--set KEY=VALUE ...]

Builds the trainer exactly as a run would (precision, attention kernel, sparsity method from the spec and
overrides), warms it up, then profiles N full training steps and prints the operators by self time (with
--shapes: grouped by input shape, which tells the decoder's [masked x vocabulary] work from the encoder's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import load_spec
from sparsesearch.training.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rows", type=int, default=30, help="operators to list")
    p.add_argument("--shapes", action="store_true", help="group operators by input shape")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    spec = load_spec(args.spec, args.overrides)
    data = prepare_data(spec.data, spec.model)
    trainer = Trainer(spec, data, None)
    for _ in range(args.warmup):
        trainer.train_step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=args.shapes) as prof:
        for _ in range(args.steps):
            trainer.train_step()
    print(
        f"{args.steps} training steps of {args.spec} ({spec.sparsity.method}, precision "
        f"{trainer.precision.name}, device {trainer.device}); times are totals over those steps"
    )
    sort = "self_cuda_time_total" if trainer.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    sys.exit(main())
