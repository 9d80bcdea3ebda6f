"""Train the fair-baseline runs of the study and append each to ``analysis/results/fair_runs.jsonl``.

Sparse training beats dense only if it beats the best dense model of *any* size at the same loss (the RigL
paper's Small-Dense baseline). Every configuration here is trained from the current ``search_spaces/rigl.yaml``
for that spec's whole step budget (no stop at a target: ``target.loss`` is set out of reach), with the held-out
loss and the FLOPs spent recorded at every evaluation. ``make_study.py`` then reads, for any target loss, the
net FLOPs each run needed to reach it, so one set of runs answers the question at every target, easy or hard.

Dense models too narrow to spend the costliest sparse run's FLOPs in that budget train on until they have
(``_steps``). Sparse runs lay their schedules over the spec's objective horizon (``sparsity.horizon_steps``, the
dense steps to the objective rung), exactly as a search trial of rigl.yaml does. Runs already stored are skipped;
seeds are outermost, so a partial set still has every configuration on the first seeds. It trains (about 3 hours
for 5 seeds on 2 cores).

    python analysis/run_fair.py                  # everything, seeds 0 to 4
    python analysis/run_fair.py --configs dense_256_lr0.002 rigl_erk_0.8_lr0.002 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "analysis"))
sys.path.insert(0, str(ROOT))

from run_study import BASE_SPEC, run_one

from sparsesearch.checks import dense_step_flops
from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import Spec, load_spec

RESULTS = ROOT / "analysis" / "results" / "fair_runs.jsonl"
SEEDS = (0, 1, 2, 3, 4)  # five, as a headline number needs
UNREACHABLE = 0.01  # a loss no run reaches: every run trains its whole budget


def _dense(hidden: int, lr: float) -> list[str]:
    # Narrower models keep the spec's FFN ratio (4x) and as many of its 4 heads as keep 16 dimensions each, as
    # the dense family of a search does.
    heads = max(d for d in range(1, 5) if hidden % d == 0 and hidden // d >= 16)
    return [
        "sparsity.method=dense",
        f"model.hidden_size={hidden}",
        f"model.ffn_size={4 * hidden}",
        f"model.num_heads={heads}",
        f"train.lr={lr}",
    ]


_SPARSE_80 = ["sparsity.level=0.8", "sparsity.distribution=erk"]


def _grid() -> dict[str, list[str]]:
    """Configuration name -> overrides of the base spec.

    Learning rate is the knob that matters most for both sides (the rigl.yaml search's dense family reached its
    last rung in 506 steps at lr 1.5e-3 and 859 at the spec's 2e-3), so each dense width and RigL get a small
    grid of it around what the search's sampler found for them (narrow models train best higher: hidden 120 at
    3.3e-3). The dense side is tuned at least as much as the sparse side's defaults."""
    grid = {}
    for lr in (1.5e-3, 2e-3):
        grid[f"dense_256_lr{lr:g}"] = _dense(256, lr)
    for lr in (1.5e-3, 2e-3):  # RigL and our own method at the study's reference point
        grid[f"rigl_erk_0.8_lr{lr:g}"] = ["sparsity.method=rigl", *_SPARSE_80, f"train.lr={lr}"]
    grid["flop_rigl_erk_0.8_lr0.002"] = ["sparsity.method=flop_rigl", *_SPARSE_80, "train.lr=0.002"]
    # The best RigL trial of the rigl.yaml search with its dense family (analysis/results/search_rigl_family).
    grid["rigl_search_best"] = [
        "sparsity.method=rigl",
        "sparsity.level=0.747",
        "sparsity.distribution=uniform",
        "sparsity.dense_groups=[embed_proj, head_transform]",
        "sparsity.drop_fraction=0.247",
        "sparsity.drop_schedule=constant",
        "sparsity.update_every=11",
        "sparsity.update_end=0.854",
        "train.lr=0.00234",
    ]
    # Down to width 48, so that the best width is inside the grid (on the first seed 128 beat 192 and 256, then
    # 64 given the sparse runs' FLOPs beat 96).
    widths = {
        192: (1.5e-3, 2e-3, 3.5e-3),
        128: (2e-3, 3.5e-3),
        96: (2e-3, 3.5e-3),
        64: (3.5e-3, 5e-3),
        48: (3.5e-3, 5e-3),
    }
    for hidden, lrs in widths.items():
        for lr in lrs:
            grid[f"dense_{hidden}_lr{lr:g}"] = _dense(hidden, lr)
    return grid


FAIR = _grid()


def _stored(path: Path) -> dict[tuple[str, int], dict]:
    """(configuration, seed) -> the last run stored for it."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["config"], r["seed"]): r for r in rows}


def _steps(name: str, base: Spec, stored: dict[tuple[str, int], dict]) -> int:
    """Step budget of one configuration: the spec's, except that a dense model too narrow to spend the FLOPs of
    the costliest stored sparse run in it trains on until it has (in whole evaluation intervals). Otherwise the
    hardest targets, which the sparse runs reach near the end of their budget, would count against narrow dense
    models merely for having been stopped with compute left. The learning rate is constant after warm-up, so a
    longer budget leaves the first steps as they were."""
    if "sparsity.method=dense" not in FAIR[name]:
        return base.train.max_steps
    sparse = [r["history"][-1]["flops"] for r in stored.values() if r["spec"]["sparsity"]["method"] != "dense"]
    if not sparse:
        raise SystemExit(f"{name}: its step budget needs a sparse run stored first (run the sparse ones first)")
    if base.train.lr_schedule != "constant":
        raise SystemExit("run_fair.py extends narrow dense budgets, which needs train.lr_schedule: constant")
    per_step = dense_step_flops(load_spec(str(BASE_SPEC), FAIR[name]))
    every = base.train.eval_every
    return max(base.train.max_steps, every * math.ceil(max(sparse) / per_step / every))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", help=f"only these configurations (choices: {', '.join(FAIR)})")
    p.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    unknown = sorted(set(args.configs or []) - set(FAIR))
    if unknown:
        p.error(f"unknown configurations {unknown}; choices: {sorted(FAIR)}")
    base = load_spec(str(BASE_SPEC), [])
    horizon = [f"sparsity.horizon_steps={base.target.horizon}"]
    data = prepare_data(base.data, base.model)
    print(f"corpus fingerprint {data.fingerprint} ({data.stats['source']})", flush=True)
    others = {r.get("corpus", "not recorded") for r in _stored(args.out).values()} - {data.fingerprint}
    if others:
        print(f"warning: {args.out} also holds runs on other corpora ({', '.join(sorted(others))})", flush=True)
    # Sparse runs first within a seed: the narrow dense budgets are set by their FLOPs.
    pairs = sorted(
        ((n, s) for n in (args.configs or FAIR) for s in args.seeds),
        key=lambda ns: (ns[1], "sparsity.method=dense" in FAIR[ns[0]]),
    )
    print(f"{len(pairs)} runs, {base.train.max_steps} steps each (narrow dense: until the sparse FLOPs)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, (name, seed) in enumerate(pairs, 1):
        stored = _stored(args.out)
        steps = _steps(name, base, stored)
        done = stored.get((name, seed))
        if done and done["history"][-1]["step"] >= steps:
            continue
        t0 = time.time()
        budget = [f"train.max_steps={steps}"]
        row = run_one(name, FAIR[name] + horizon + budget, seed, UNREACHABLE, data, group="fair")
        row["corpus"] = data.fingerprint  # every stored run says which token ids it trained on
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        last = row["history"][-1]
        print(
            f"[{i}/{len(pairs)}] {name} seed {seed}: loss {last['eval_loss']:.4f} at step {last['step']}, "
            f"{last['flops']:.3g} FLOPs ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
