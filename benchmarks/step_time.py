"""Roofline of one training step, fp32 and mixed precision side by side: how far the step is from its matmuls.

    python benchmarks/step_time.py [SPEC] [--steps N] [--precisions fp32,bf16] [--set KEY=VALUE ...] [--json F]

For each precision it builds one trainer on the same model and data and times full training steps (batch
masking, forward, backward, sparsity bookkeeping, clipping, AdamW), interleaved across precisions so machine
noise hits all alike; medians. Then it records the matmuls one training step really runs (aten mm/addmm/bmm/
baddbmm, with their shapes, strides and dtypes, attributed to the model component that ran them) and replays
each of them alone on random data: the step's time over that replay time says how much of the step is not
matmul work. Achieved GFLOP/s counts the analytic matmul FLOPs (sparsesearch/flops.py) of the step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

from sparsesearch.data.batches import prepare_data
from sparsesearch.model.embedding import load_token_embedding, resolve_model_dir
from sparsesearch.model.shape import weight_group
from sparsesearch.spec import load_spec
from sparsesearch.training.trainer import Trainer

_MATMULS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
}


def _describe(x):
    if isinstance(x, torch.Tensor):
        return ("T", tuple(x.shape), tuple(x.stride()), x.dtype, x.device)
    return ("V", x)


class _RecordMatmuls(TorchDispatchMode):
    """Records every matmul-like aten call with its argument layout and the component that ran it."""

    def __init__(self, tracker: ModuleTracker, groups: dict[str, str]):
        super().__init__()
        self.tracker, self.groups = tracker, groups
        self.calls: list[tuple[str, object, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _MATMULS:
            self.calls.append((self._component(), func, tuple(_describe(a) for a in args)))
        return func(*args, **(kwargs or {}))

    def _component(self) -> str:
        names = {p.split(".", 1)[1] for p in self.tracker.parents if "." in p}
        for name in sorted(names, key=len, reverse=True):
            if name in self.groups:
                return self.groups[name]
        if any(n.endswith("attention.self") for n in names):
            return "attention products"
        return "decoder"  # the tied decoder runs in the model's own forward


def _materialise(desc):
    if desc[0] == "V":
        return desc[1]
    _, shape, stride, dtype, device = desc
    return torch.empty_strided(shape, stride, dtype=dtype, device=device).normal_()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def replay(calls, device: torch.device, reps: int) -> dict[str, float]:
    """Median seconds of each recorded matmul alone, summed per component."""
    distinct: dict[tuple, list] = defaultdict(list)
    for comp, func, args in calls:
        distinct[(func, args)].append(comp)
    per_comp: dict[str, float] = defaultdict(float)
    for (func, args), comps in distinct.items():
        tensors = [_materialise(a) for a in args]
        for _ in range(2):
            func(*tensors)
        times = []
        for _ in range(reps):
            _sync(device)
            t0 = time.perf_counter()
            func(*tensors)
            _sync(device)
            times.append(time.perf_counter() - t0)
        for comp in comps:
            per_comp[comp] += statistics.median(times)
    return dict(per_comp)


def record_step(trainer: Trainer) -> list:
    model = trainer.model
    groups = {
        name: weight_group(name + ".weight") for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)
    }
    with ModuleTracker() as tracker, _RecordMatmuls(tracker, groups) as rec:
        trainer.train_step()
    return rec.calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--steps", type=int, default=30, help="timed steps per precision")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reps", type=int, default=15, help="timed repetitions of each distinct matmul")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated train.precision values")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = p.parse_args()
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    base = load_spec(args.spec, args.overrides)
    data = prepare_data(base.data, base.model)
    emb = load_token_embedding(resolve_model_dir(base.model.embedding))
    trainers = {
        pr: Trainer(load_spec(args.spec, [*args.overrides, f"train.precision={pr}"]), data, None, token_embedding=emb)
        for pr in precisions
    }
    times: dict[str, list[float]] = {pr: [] for pr in precisions}
    flops: dict[str, list[float]] = {pr: [] for pr in precisions}
    for r in range(args.warmup + args.steps):
        for pr in precisions[r % len(precisions) :] + precisions[: r % len(precisions)]:
            tr = trainers[pr]
            dens = tr.sparsifier.flop_densities(tr.step)
            t0 = time.perf_counter()
            _, n_masked, _ = tr.train_step()
            dt = time.perf_counter() - t0
            if r >= args.warmup:
                times[pr].append(dt)
                flops[pr].append(tr.step_flops(n_masked, dens)[0].total)
    rows = {}
    for pr in precisions:
        tr = trainers[pr]
        calls = record_step(tr)
        comp = replay(calls, tr.device, args.reps)
        ms = statistics.median(times[pr]) * 1e3
        step_gflop = statistics.median(flops[pr]) / 1e9
        rows[pr] = {
            "precision": tr.precision.name,
            "ms_per_step": ms,
            "tokens_per_s": base.train.batch_size * base.model.seq_len / (ms / 1e3),
            "gflop_per_step": step_gflop,
            "gflop_per_s": step_gflop / (ms / 1e3),
            "matmul_replay_ms": sum(comp.values()) * 1e3,
            "step_over_matmuls": ms / (sum(comp.values()) * 1e3),
            "components_ms": {k: v * 1e3 for k, v in sorted(comp.items(), key=lambda kv: -kv[1])},
            "matmul_calls": len(calls),
        }
    m = base.model
    dev = trainers[precisions[0]].device
    print(
        f"model: hidden {m.hidden_size}, {m.num_layers} layers, ffn {m.ffn_size}, seq {m.seq_len}, batch "
        f"{base.train.batch_size}; method {base.sparsity.method}; device {dev}, torch threads "
        f"{torch.get_num_threads()}; {args.steps} steps each, interleaved (medians)"
    )
    print(
        f"{'precision':<10}{'ms/step':>9}{'tokens/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>9}{'matmuls ms':>12}"
        f"{'step/matmuls':>14}"
    )
    for r in rows.values():
        print(
            f"{r['precision']:<10}{r['ms_per_step']:>9.1f}{r['tokens_per_s']:>10,.0f}{r['gflop_per_step']:>12.2f}"
            f"{r['gflop_per_s']:>9.1f}{r['matmul_replay_ms']:>12.1f}{r['step_over_matmuls']:>14.2f}"
        )
    if len(rows) > 1:
        first = rows[precisions[0]]
        for pr in precisions[1:]:
            r = rows[pr]
            print(
                f"{r['precision']} vs {first['precision']}: step {first['ms_per_step'] / r['ms_per_step']:.2f}x "
                f"faster; its matmuls alone {first['matmul_replay_ms'] / r['matmul_replay_ms']:.2f}x"
            )
    comps = list(dict.fromkeys(c for r in rows.values() for c in r["components_ms"]))
    print("\nmatmuls replayed alone, per component (ms per step)")
    print(f"{'component':<20}" + "".join(f"{rows[pr]['precision']:>10}" for pr in precisions))
    for c in comps:
        print(f"{c:<20}" + "".join(f"{rows[pr]['components_ms'].get(c, 0.0):>10.1f}" for pr in precisions))
    print(
        f"{'not matmuls':<20}"
        + "".join(f"{rows[pr]['ms_per_step'] - rows[pr]['matmul_replay_ms']:>10.1f}" for pr in precisions)
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "spec": args.spec,
                    "overrides": args.overrides,
                    "device": str(dev),
                    "threads": torch.get_num_threads(),
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
