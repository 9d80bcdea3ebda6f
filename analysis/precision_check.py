"""Does mixed precision change how many steps a run needs? fp32 and bf16 side by side, several seeds.

Trains each configuration of ``CONFIGS`` from ``search_spaces/rigl.yaml`` for every seed in both precisions to
one fixed target loss (``--target``, default the study's target) and appends each run to
``analysis/results/precision.jsonl`` (runs already there are skipped). Then prints steps to the target side by
side, with the per-seed difference bf16 - fp32.

    python analysis/precision_check.py                    # dense and RigL 80% (ERK), seeds 0 1 2
    python analysis/precision_check.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import load_spec
from sparsesearch.training.trainer import train

BASE_SPEC = ROOT / "search_spaces" / "rigl.yaml"
RESULTS = ROOT / "analysis" / "results" / "precision.jsonl"
CONFIGS = {
    "dense": ["sparsity.method=dense"],
    "rigl_erk_0.8": ["sparsity.method=rigl", "sparsity.level=0.8", "sparsity.distribution=erk"],
}
STUDY_TARGET = 5.9939  # the fixed target of analysis/STUDY.md (dense seed 0 at 200 steps, fp32)


def _load(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--target", type=float, default=STUDY_TARGET)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args()
    rows = _load(args.results)
    done = {(r["config"], r["seed"], r["precision"], r["target"]) for r in rows}
    base = load_spec(BASE_SPEC)
    data = prepare_data(base.data, base.model)
    for name, overrides in CONFIGS.items():
        for seed in args.seeds:
            for precision in args.precisions:
                if (name, seed, precision, args.target) in done:
                    continue
                spec = load_spec(
                    BASE_SPEC,
                    [*overrides, f"train.seed={seed}", f"train.precision={precision}", f"target.loss={args.target}"],
                )
                r = train(spec, data, args.target)
                row = {
                    "config": name,
                    "seed": seed,
                    "precision": r.precision,
                    "target": args.target,
                    "status": r.status,
                    "steps_to_target": r.steps_to_target,
                    "steps": r.steps,
                    "train_time_s": r.train_time_s,
                    "time_to_target_s": r.time_to_target_s,
                    "net_flops": r.net_flops,
                    "final_eval_loss": r.final_eval_loss,
                    "eval_curve": [(h["step"], h["eval_loss"]) for h in r.history],
                    "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine(),
                }
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(f"{name} seed {seed} {r.precision}: {r.status}, steps to target {r.steps_to_target}", flush=True)
    print_table([r for r in rows if r["target"] == args.target], args.seeds)


def print_table(rows: list[dict], seeds: list[int]) -> None:
    by = {(r["config"], r["seed"], r["precision"]): r for r in rows}
    print(
        f"\nsteps to target {rows[0]['target'] if rows else ''} (interpolated between evaluations every 20 "
        f"steps; '-' = not reached)"
    )
    print(f"{'config':<14}{'seed':>5}{'fp32':>9}{'bf16':>9}{'bf16-fp32':>11}")
    for name in CONFIGS:
        diffs: list[float] = []
        per: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for seed in seeds:
            a, b = by.get((name, seed, "fp32")), by.get((name, seed, "bf16"))
            sa = a["steps_to_target"] if a else None
            sb = b["steps_to_target"] if b else None
            fa = f"{sa:.1f}" if sa is not None else "-"
            fb = f"{sb:.1f}" if sb is not None else "-"
            d = f"{sb - sa:+.1f}" if sa is not None and sb is not None else ""
            if sa is not None and sb is not None:
                diffs.append(sb - sa)
            for k, v in (("fp32", sa), ("bf16", sb)):
                if v is not None:
                    per[k].append(v)
            print(f"{name:<14}{seed:>5}{fa:>9}{fb:>9}{d:>11}")
        if all(len(v) >= 2 for v in per.values()):
            print(
                f"{name:<14}{'mean':>5}{statistics.mean(per['fp32']):>9.1f}{statistics.mean(per['bf16']):>9.1f}"
                f"{statistics.mean(diffs) if diffs else float('nan'):>+11.1f}   seed sd: fp32 "
                f"{statistics.stdev(per['fp32']):.1f}, bf16 {statistics.stdev(per['bf16']):.1f}"
            )


if __name__ == "__main__":
    main()
