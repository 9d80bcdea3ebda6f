"""ASHA + TPE against random search without early stopping: best objective found vs compute spent.

    python benchmarks/search_efficiency.py [SPEC] [--num-samples N] [--seed S]

Both searches get the same spec, the same number of trials and the same seed, run one after the other on this
machine; compute is the net FLOPs the trials spent (stopped trials included). Prints, at fractions of the
smaller total, the best objective (of a trial that reached the target) each search had found by then.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
from pathlib import Path

import yaml

from sparsesearch.definitions import REACHED
from sparsesearch.results.pareto import OBJECTIVES
from sparsesearch.results.table import load_history, load_results
from sparsesearch.search.driver import run_search
from sparsesearch.spec import apply_override, spec_from_dict


def _run(spec_path: str, raw: dict, overrides: list[str], storage: str, name: str):
    raw = copy.deepcopy(raw)
    for o in [*overrides, f"tune.storage={storage}", f"tune.name={name}"]:
        apply_override(raw, o)
    exp = run_search(spec_path, raw, spec_from_dict(raw), log=lambda m: None)
    df = load_results(exp)
    finished = load_history(exp).groupby("trial_id")["timestamp"].max()
    return df.assign(finished=df["trial_id"].map(finished))


def _curve(df, objective: str) -> list[tuple[float, float]]:
    """(cumulative compute, best objective so far) in the order sparse trials finished; the dense family excluded."""
    df = df[df["role"] == "sparse"].sort_values("finished")
    spent, best, out = 0.0, math.inf, []
    for _, row in df.iterrows():
        spent += row["flops"]
        if row["status"] == REACHED:
            best = min(best, row[OBJECTIVES[objective]])
        out.append((spent, best))
    return out


def _best_at(curve, budget):
    best = math.inf
    for spent, b in curve:
        if spent > budget:
            break
        best = b
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "smoke.yaml"))
    p.add_argument("--num-samples", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--objective",
        choices=["net_flops", "net_time"],
        default="net_flops",
        help="net_flops (default) is deterministic; net_time carries this machine's timing noise",
    )
    args = p.parse_args()
    raw = yaml.safe_load(Path(args.spec).read_text())
    common = [
        f"search.num_samples={args.num_samples}",
        f"search.seed={args.seed}",
        f"search.objective={args.objective}",
    ]
    with tempfile.TemporaryDirectory() as storage:
        asha = _run(args.spec, raw, [*common, "search.sampler=tpe"], storage, "asha-tpe")
        max_t = raw.get("train", {}).get("max_steps", 2000)
        rand = _run(
            args.spec,
            raw,
            [*common, "search.sampler=random", f"search.asha.grace_period={max_t}", f"search.asha.max_t={max_t}"],
            storage,
            "random-full",
        )
    curves = {"ASHA + TPE": _curve(asha, args.objective), "random, no early stop": _curve(rand, args.objective)}
    total = min(c[-1][0] for c in curves.values())
    print(
        f"spec {args.spec}; {args.num_samples} trials each, seed {args.seed}; objective {args.objective} "
        f"(best of the trials that reached the target); compute = net FLOPs spent"
    )
    print(f"{'compute spent':>16}" + "".join(f"{name:>26}" for name in curves))
    for frac in (0.125, 0.25, 0.5, 0.75, 1.0):
        row = f"{frac * total:>16.3g}"
        for c in curves.values():
            b = _best_at(c, frac * total)
            row += f"{f'{b:.4g}' if math.isfinite(b) else 'none reached':>26}"
        print(row)
    for name, c in curves.items():
        print(f"{name}: total compute {c[-1][0]:.3g} FLOPs, best objective {c[-1][1]:.4g}")


if __name__ == "__main__":
    main()
