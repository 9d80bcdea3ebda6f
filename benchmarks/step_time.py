"""Training-step speed of a spec's model: ms/step, tokens/s, achieved GFLOP/s and FLOP share per component.

    python benchmarks/step_time.py [SPEC] [--steps N] [--set KEY=VALUE ...]

Times the full training step (batch masking, forward, backward, clipping, AdamW) after a warm-up, and reports
medians. Achieved GFLOP/s counts analytic matmul FLOPs only (see sparsesearch/flops.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from sparsesearch.data import prepare_data
from sparsesearch.spec import load_spec
from sparsesearch.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    spec = load_spec(args.spec, args.overrides)
    data = prepare_data(spec.data, spec.model)
    trainer = Trainer(spec, data, target_loss=None)
    model, opt = trainer.model, trainer.optimizer
    times, flops = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        inputs, labels = trainer.batches.train_batch(step)
        loss, n = model(inputs.to(trainer.device), labels.to(trainer.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        trainer._sync()
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(dt)
            flops.append(trainer.step_flops(int(n))[0].total)
    ms = statistics.median(times) * 1e3
    tokens = spec.train.batch_size * spec.model.seq_len
    gflops = statistics.median(f / t for f, t in zip(flops, times)) / 1e9
    m = spec.model
    print(f"model: hidden {m.hidden_size}, {m.num_layers} layers, ffn {m.ffn_size}, seq {m.seq_len}, "
          f"batch {spec.train.batch_size}; device {trainer.device}, torch threads {torch.get_num_threads()}")
    print(f"{'ms/step':>10}{'tokens/s':>12}{'GFLOP/step':>12}{'GFLOP/s':>10}")
    print(f"{ms:>10.1f}{tokens / (ms / 1e3):>12,.0f}{statistics.median(flops) / 1e9:>12.2f}{gflops:>10.1f}")
    step = trainer.step_flops(int(n))[0]
    print(f"\nshare of matmul FLOPs per component (sparsifiable weights: {step.sparsifiable / step.total:.1%})")
    for group, v in step.by_group().items():
        print(f"  {group:<16}{v / step.total:>7.1%}")


if __name__ == "__main__":
    sys.exit(main())
