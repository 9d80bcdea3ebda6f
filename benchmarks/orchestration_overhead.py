"""Where a search's wall time and memory go besides training: start-up, evaluation, reporting, Ray and Optuna.

    python benchmarks/orchestration_overhead.py [SPEC] [--num-samples N] [--set KEY=VALUE ...] [--json F]

Runs one real search of SPEC (default: search_spaces/rigl.yaml, realistic trial lengths) in a temporary
directory, after resolving its target (so the dense target run is not counted), and prints:

* search wall time / sum of the trials' training seconds (the overhead ratio; 1.0 would be free orchestration),
* per trial: training, start-up (spec, model, embedding, checkpoint restore), evaluation and report/checkpoint
  seconds, and peak resident memory of its worker process (a reused worker's peak covers its earlier trials),
* the driver's CPU use while the search ran, in % of one core.

Run it on an otherwise idle machine: on 2 cores any other process slows the trials' two threads badly.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from sparsesearch.data.batches import prepare_data
from sparsesearch.results.table import load_results
from sparsesearch.search.driver import run_search
from sparsesearch.spec import apply_override, load_raw, spec_from_dict
from sparsesearch.training.target import resolve_target


def _last_reports(exp: Path) -> list[dict]:
    out = []
    for f in sorted(exp.glob("*/result.json")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out.append(rows[-1])
    return out


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--num-samples", type=int, help="sparse trials besides the dense family (default: the spec's)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as storage:
        raw = load_raw(args.spec)
        for o in [
            *args.overrides,
            f"tune.storage={storage}",
            "tune.name=bench",
            *([f"search.num_samples={args.num_samples}"] if args.num_samples else []),
        ]:
            apply_override(raw, o)
        spec = spec_from_dict(raw)
        resolve_target(spec, prepare_data(spec.data, spec.model))  # cached from here on: not part of the timing
        cpu0, t0 = _cpu_s(), time.perf_counter()
        exp = run_search(args.spec, raw, spec, log=lambda m: None)
        wall, driver_cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        reports = _last_reports(exp)
        table = load_results(exp)
    train = sum(r["train_time_s"] for r in reports)
    parts = {k: sum(r.get(k, 0.0) for r in reports) for k in ("startup_s", "eval_time_s", "report_s")}
    peak = max((r.get("peak_rss_mb", 0.0) for r in reports), default=0.0)
    print(
        f"spec {args.spec}; {len(reports)} trials (the dense family included), {spec.tune.max_concurrent} at a "
        f"time, {spec.tune.cpus_per_trial:g} CPUs each; statuses: "
        + ", ".join(f"{k} {v}" for k, v in table["status"].value_counts().items())
    )
    print(
        f"{'trial':<10}{'steps':>6}{'train s':>9}{'ms/step':>9}{'startup s':>11}{'eval s':>8}{'report s':>10}"
        f"{'peak RSS MB':>13}{'precision':>11}"
    )
    for r in reports:
        print(
            f"{r['trial_id']:<10}{r['step']:>6}{r['train_time_s']:>9.1f}"
            f"{1e3 * r['train_time_s'] / max(1, r['step']):>9.0f}{r.get('startup_s', 0):>11.2f}"
            f"{r.get('eval_time_s', 0):>8.1f}{r.get('report_s', 0):>10.2f}{r.get('peak_rss_mb', 0):>13.0f}"
            f"{r.get('precision', '?'):>11}"
        )
    print(f"\nsearch wall {wall:.1f} s; trials' training {train:.1f} s; wall / training = {wall / train:.2f}")
    print(
        f"  of the rest: start-up {parts['startup_s']:.1f} s, evaluation {parts['eval_time_s']:.1f} s, reports "
        f"and checkpoints {parts['report_s']:.1f} s, Ray/Optuna/idle "
        f"{wall - train - sum(parts.values()):.1f} s"
    )
    print(
        f"largest worker peak RSS {peak:.0f} MB; driver CPU {driver_cpu:.1f} s = "
        f"{100 * driver_cpu / wall:.1f}% of one core over the search"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "spec": args.spec,
                    "overrides": args.overrides,
                    "wall_s": wall,
                    "train_s": train,
                    **parts,
                    "driver_cpu_s": driver_cpu,
                    "peak_rss_mb": peak,
                    "trials": reports,
                },
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
