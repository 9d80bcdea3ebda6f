"""Wall time per training step of every sparsity method relative to dense, measured side by side.

    python benchmarks/sparsity_overhead.py [SPEC] [--steps N] [--level L] [--set KEY=VALUE ...]

One trainer per method on the same model and data; their steps are interleaved (the order rotates every round)
so that machine noise hits all methods alike. Regular steps and mask-update steps are reported separately, as
medians. On a CPU or GPU the masked weights are still multiplied (zeros are not skipped): the ratio on regular
steps is the bookkeeping overhead of masking, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from sparsesearch.data.batches import prepare_data
from sparsesearch.model.embedding import load_token_embedding, resolve_model_dir
from sparsesearch.sparsity.registry import METHODS
from sparsesearch.spec import load_spec
from sparsesearch.training.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--steps", type=int, default=40, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--level", type=float, default=0.8)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json", type=Path, help="also write the medians and ratios to this JSON file")
    args = p.parse_args()
    base = load_spec(args.spec, args.overrides)
    data = prepare_data(base.data, base.model)
    emb = load_token_embedding(resolve_model_dir(base.model.embedding))
    trainers = {}
    for m in METHODS:
        level = [] if m == "dense" else [f"sparsity.level={args.level}"]
        spec = load_spec(args.spec, [*args.overrides, f"sparsity.method={m}", *level])
        trainers[m] = Trainer(spec, data, None, token_embedding=emb)
    names = list(trainers)
    regular = {m: [] for m in names}
    update = {m: [] for m in names}
    for r in range(args.warmup + args.steps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for m in order:
            tr = trainers[m]
            is_update = tr.sparsifier.is_update_step(tr.step)
            t0 = time.perf_counter()
            tr.train_step()
            dt = time.perf_counter() - t0
            if r >= args.warmup:
                (update if is_update else regular)[m].append(dt)
    ref = statistics.median(regular["dense"])
    spec = base
    print(
        f"model: hidden {spec.model.hidden_size}, {spec.model.num_layers} layers, batch {spec.train.batch_size} x "
        f"{spec.model.seq_len}; level {args.level}; {args.steps} steps per method; device "
        f"{trainers['dense'].device}, precision {trainers['dense'].precision.name}"
    )
    print(
        f"{'method':<8}{'regular ms':>12}{'vs dense':>10}{'update ms':>12}{'vs dense':>10}{'updates':>9}"
        f"{'amortised':>11}{'vs dense':>10}"
    )
    overheads, record = [], {}
    for m in names:
        reg = statistics.median(regular[m])
        upd = statistics.median(update[m]) if update[m] else float("nan")
        # Amortised: the medians weighted by how often each kind of step occurs (robust to outliers).
        n_upd = len(update[m])
        avg = (reg * len(regular[m]) + (upd * n_upd if n_upd else 0.0)) / (len(regular[m]) + n_upd)
        avg_ratio = avg / ref
        if m != "dense":
            overheads.append(avg_ratio - 1)
        record[m] = {
            "regular_ms": reg * 1e3,
            "update_ms": None if not n_upd else upd * 1e3,
            "updates": n_upd,
            "amortised_ms": avg * 1e3,
            "amortised_vs_dense": avg_ratio,
        }
        print(
            f"{m:<8}{reg * 1e3:>12.1f}{reg / ref:>10.3f}{upd * 1e3:>12.1f}{upd / ref:>10.3f}{len(update[m]):>9}"
            f"{avg * 1e3:>11.1f}{avg_ratio:>10.3f}"
        )
    print(
        f"\nmean amortised overhead over dense across sparse methods: {statistics.mean(overheads):+.1%} "
        f"(medians; regular and update steps weighted by their counts)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "level": args.level,
                    "steps": args.steps,
                    "precision": trainers["dense"].precision.name,
                    "methods": record,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
