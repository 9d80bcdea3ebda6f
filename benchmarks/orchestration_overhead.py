"""Search wall time against the trials' own training time, and throughput with 1 vs 2 concurrent trials.

    python benchmarks/orchestration_overhead.py [SPEC] [--num-samples N]

Runs the same search (same seed, so the same configurations) twice on this machine, with 1 and with 2
concurrent trials of one CPU each. Overhead = search wall time / sum of the trials' training seconds
(evaluation, checkpoints, Ray and Optuna are the difference).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import yaml

from sparsesearch.search import run_search
from sparsesearch.spec import apply_override, spec_from_dict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "smoke.yaml"))
    p.add_argument("--num-samples", type=int, default=8)
    args = p.parse_args()
    base = yaml.safe_load(Path(args.spec).read_text())
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for concurrent in (1, 2):
            raw = copy.deepcopy(base)
            for o in (f"search.num_samples={args.num_samples}", f"tune.max_concurrent={concurrent}",
                      "tune.cpus_per_trial=1", f"tune.storage={storage}", f"tune.name=c{concurrent}"):
                apply_override(raw, o)
            t0 = time.perf_counter()
            df = run_search(args.spec, raw, spec_from_dict(raw), log=lambda m: None).results
            wall = time.perf_counter() - t0
            train = float(df["train_time_s"].sum())
            rows.append((concurrent, len(df), wall, train))
    print(f"spec {args.spec}; {args.num_samples} trials + dense reference; 1 CPU per trial")
    print(f"{'concurrent':>10}{'trials':>8}{'wall s':>10}{'sum train s':>13}{'wall/train':>12}{'trials/min':>12}")
    for c, n, wall, train in rows:
        print(f"{c:>10}{n:>8}{wall:>10.1f}{train:>13.1f}{wall / train:>12.2f}{60 * n / wall:>12.2f}")
    print(f"throughput 2 vs 1 concurrent: {rows[0][2] / rows[1][2]:.2f}x")


if __name__ == "__main__":
    main()
