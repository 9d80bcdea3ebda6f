"""Does a burst of other work move the price of net time? The reference measured idle and under a burst.

    python benchmarks/reference_price.py [SPEC] [--repeats N] [--burst-s S] [--set KEY=VALUE ...]

In one process, alternately: the reference (``training.reference.measure_reference``) measured on an otherwise idle
machine, and measured while other processes keep every core busy for ``--burst-s`` seconds from the moment the
measurement starts (a five-second import of Ray beside the run once moved it 2.8x); ``--repeats`` bursts, each
between two idle measurements. The same for the old rule (the median of 8 consecutive steps), for comparison.
Prints each measurement, the idle spread (the machine's own noise between identical measurements) and each burst
over the mean of the idle measurements around it; run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from pathlib import Path

from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import load_spec
from sparsesearch.training.reference import dense_twin, measure_reference
from sparsesearch.training.trainer import Trainer


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _burst(seconds: float) -> list[multiprocessing.Process]:
    procs = [multiprocessing.Process(target=_spin, args=(seconds,)) for _ in range(multiprocessing.cpu_count())]
    for p in procs:
        p.start()
    return procs


def _old_rule(spec, data) -> float:
    """The rule before: the median of 8 consecutive dense steps after 2 warm-up steps."""
    trainer = Trainer(dense_twin(spec), data, None)
    trainer.model.train()
    times = []
    for i in range(10):
        start = time.perf_counter()
        trainer.train_step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "rigl.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--burst-s", type=float, default=5.0)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    spec = load_spec(args.spec, args.overrides)
    data = prepare_data(spec.data, spec.model)
    rows: dict[str, list[float]] = {k: [] for k in ("new idle", "new burst", "old idle", "old burst")}
    rules = {"new": lambda: measure_reference(spec, data).dense_step_s, "old": lambda: _old_rule(spec, data)}
    # idle, burst, idle, burst, ..., idle: each burst is compared with the idle measurements on either side of
    # it, so that the machine's own drift between measurements is not counted as the burst's effect.
    for r in range(2 * args.repeats + 1):
        load = "burst" if r % 2 else "idle"
        for rule, measure in rules.items():
            procs = _burst(args.burst_s) if load == "burst" else []
            t0 = time.perf_counter()
            ms = 1e3 * measure()
            took = time.perf_counter() - t0
            for q in procs:
                q.join()
            rows[f"{rule} {load}"].append(ms)
            print(f"{rule} rule, {load:5}: {ms:7.1f} ms per dense step (measured in {took:.1f} s)", flush=True)
            time.sleep(2.0)  # let the machine settle between measurements
    print()
    print("| rule | idle: median (range), ms | under a burst: median (range), ms | burst / idle around it (range) |")
    print("|---|---|---|---|")
    for rule in rules:
        idle, busy = rows[f"{rule} idle"], rows[f"{rule} burst"]
        ratios = [b / ((idle[i] + idle[i + 1]) / 2) for i, b in enumerate(busy)]
        print(
            f"| {rule} | {statistics.median(idle):.1f} ({min(idle):.1f}-{max(idle):.1f}) | "
            f"{statistics.median(busy):.1f} ({min(busy):.1f}-{max(busy):.1f}) | "
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |"
        )


if __name__ == "__main__":
    main()
