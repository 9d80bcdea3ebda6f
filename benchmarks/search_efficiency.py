"""Does ASHA + TPE earn its keep? Best objective found against compute spent, several strategies and seeds.

    python benchmarks/search_efficiency.py [SPEC] [--trials K] [--asha-trials N] [--seeds 0 1 2] [--out DIR]
        [--set KEY=VALUE ...] [--strategies NAME ...] [--merge CURVES.json ...]

Strategies, each run with every search seed on SPEC (default: benchmarks/search_efficiency.yaml, the rigl.yaml
space at reduced cost):

* with early stopping, N sparse trials each (default 3K; most of them are short): ASHA + TPE (the default),
  ASHA + TPE with 4 random start-up trials (Optuna's default is 10), ASHA + random, and ASHA + TPE with other
  grace periods and reduction factors ("ASHA + TPE, grace G, rf R");
* without early stopping, K sparse trials each, every one to the target or its budget: TPE, random.

Compute is what the sparse trials spent (their cumulative FLOPs, stopped trials included), in the order they
finished; the dense family is left out (it is the same for every strategy). The objective is the spec's
(net_flops by default: deterministic, so the comparison carries no timing noise). All curves are cut at the same
budget: the smallest total any run spent (give the searches without early stopping enough trials, K, to spend
about what the others do). Prints, per strategy, the best objective found (mean over seeds) at fractions of that
budget, and the compute each needed to get within 10% of the best objective any run found within it (median over
seeds); writes the table (search_efficiency.csv), every run's curve (search_efficiency_curves.json, also kept
after every search) and a figure of the whole curves (search_efficiency.png) to --out. --merge adds the curves of
earlier runs of the same spec (strategies measured apart, or in several processes); `--strategies` with no name
runs nothing and only compares them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import yaml

from sparsesearch.checks import dense_step_flops
from sparsesearch.definitions import REACHED
from sparsesearch.results.pareto import OBJECTIVES
from sparsesearch.results.table import load_history, load_results
from sparsesearch.search.driver import run_search
from sparsesearch.spec import apply_override, spec_from_dict

FRACTIONS = (0.1, 0.2, 1 / 3, 0.5, 0.75, 1.0)


def strategies(max_steps: int, trials: int, asha_trials: int) -> dict[str, list[str]]:
    """The overrides of each strategy: its sampler, early stopping and number of trials."""
    no_stop = [f"search.asha.grace_period={max_steps}", f"search.asha.max_t={max_steps}"]
    asha = [f"search.num_samples={asha_trials}"]
    out = {
        "ASHA + TPE": ["search.sampler=tpe", *asha],
        "ASHA + TPE, 4 start-up": ["search.sampler=tpe", "search.startup_trials=4", *asha],
        "ASHA + random": ["search.sampler=random", *asha],
        "TPE, no early stop": ["search.sampler=tpe", f"search.num_samples={trials}", *no_stop],
        "random, no early stop": ["search.sampler=random", f"search.num_samples={trials}", *no_stop],
    }
    # The early-stopping knobs (the budget unit is not among them: a budget in FLOPs is the budget in dense
    # steps times one dense step's FLOPs, so the two units give the same rungs once the grace period is scaled).
    for grace, rf in ((12, 2), (50, 2), (100, 2), (25, 3), (50, 3)):
        out[f"ASHA + TPE, grace {grace}, rf {rf}"] = [
            "search.sampler=tpe",
            f"search.asha.grace_period={grace}",
            f"search.asha.reduction_factor={rf}",
            *asha,
        ]
    return out


def run_one(spec_path: str, raw: dict, overrides: list[str], storage: str, name: str) -> pd.DataFrame:
    """One search; its sparse trials in the order they finished, with the compute each spent."""
    raw = copy.deepcopy(raw)
    for o in [*overrides, f"tune.storage={storage}", f"tune.name={name}"]:
        apply_override(raw, o)
    exp = run_search(spec_path, raw, spec_from_dict(raw), log=lambda m: None)
    df = load_results(exp)
    finished = load_history(exp).groupby("trial_id")["timestamp"].max()
    df = df.assign(finished=df["trial_id"].map(finished))
    return df[df["role"] == "sparse"].sort_values("finished").reset_index(drop=True)


def curve(trials: pd.DataFrame, objective: str) -> list[tuple[float, float]]:
    """(compute spent so far, best objective so far) after each finished sparse trial."""
    spent, best, out = 0.0, math.inf, []
    for _, row in trials.iterrows():
        if math.isfinite(float(row["flops"])):  # an invalid trial trained nothing
            spent += float(row["flops"])
        if row["status"] == REACHED:
            best = min(best, float(row[OBJECTIVES[objective]]))
        out.append((spent, best))
    return out


def best_at(c: list[tuple[float, float]], budget: float) -> float:
    """The best objective found within ``budget`` compute."""
    best = math.inf
    for spent, b in c:
        if spent > budget:
            break
        best = b
    return best


def compute_to(c: list[tuple[float, float]], goal: float) -> float:
    """The compute spent when the best objective first came within ``goal`` (inf: never)."""
    return next((spent for spent, b in c if b <= goal), math.inf)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(ROOT / "benchmarks" / "search_efficiency.yaml"))
    p.add_argument("--trials", type=int, default=12, help="K: trials of the searches without early stopping")
    p.add_argument("--asha-trials", type=int, help="trials of the searches with early stopping (default 3K)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("."), help="folder for the CSV, the curves and the figure")
    p.add_argument(
        "--strategies",
        nargs="*",
        help="run only these (names as printed; default: all; none: only compare the --merge files)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=[],
        help="search_efficiency_curves.json files of earlier runs of the same spec to compare with",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the spec for every strategy (as `sparsesearch run --set`), e.g. train.eval_every=10",
    )
    args = p.parse_args()
    raw = yaml.safe_load(Path(args.spec).read_text())
    for o in args.overrides:
        apply_override(raw, o)
    spec = spec_from_dict(raw)
    objective = spec.search.objective
    plan = strategies(spec.train.max_steps, args.trials, args.asha_trials or 3 * args.trials)
    unknown = sorted(set(args.strategies or []) - set(plan))
    if unknown:
        p.error(f"unknown strategies {unknown}; choices: {sorted(plan)}")
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    for f in args.merge:
        curves.update(json.loads(f.read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as storage:
        for name, overrides in plan.items():
            if args.strategies is not None and name not in args.strategies:
                continue
            curves[name] = []
            for seed in args.seeds:
                tag = "".join(ch if ch.isalnum() else "-" for ch in name) + f"-{seed}"
                trials = run_one(args.spec, raw, [*overrides, f"search.seed={seed}"], storage, tag)
                curves[name].append(curve(trials, objective))
                c = curves[name][-1]
                print(f"  {name:<32} seed {seed}: {len(c)} trials, compute {c[-1][0]:.3g}, best {c[-1][1]:.4g}")
                # kept after every search, so a long benchmark cut short still has what it measured
                (args.out / "search_efficiency_curves.json").write_text(json.dumps(curves))
    budget = min(c[-1][0] for cs in curves.values() for c in cs)
    best_any = min(b for cs in curves.values() for c in cs for _, b in c if _ <= budget)
    goal = 1.1 * best_any
    rows = []
    for name, cs in curves.items():
        for frac in FRACTIONS:
            bests = [best_at(c, frac * budget) for c in cs]
            found = [b for b in bests if math.isfinite(b)]
            rows.append(
                {
                    "strategy": name,
                    "fraction": frac,
                    "compute": frac * budget,
                    "best_mean": sum(found) / len(found) if len(found) == len(bests) else math.nan,
                    "seeds_reached": len(found),
                }
            )
    table = pd.DataFrame(rows)
    changed = "".join(f" --set {o}" for o in args.overrides)
    print(
        f"\nspec {args.spec}{changed}; objective {objective}; seeds {args.seeds}; K={args.trials}; common budget "
        f"{budget:.3g} FLOPs (the smallest total of any run); best any run found within it: {best_any:.4g}"
    )
    wide = table.pivot(index="fraction", columns="strategy", values="best_mean")[list(curves)]
    print("best objective found (mean over seeds; NaN: some seed had no trial at the target yet):")
    print(wide.to_string(float_format=lambda v: f"{v:.4g}"))
    print(
        f"\ncompute to come within 10% of {best_any:.4g} (median over seeds; per seed; inf: never, within that "
        "seed's whole run):"
    )
    needs = {}
    for name, cs in curves.items():
        spent = [compute_to(c, goal) for c in cs]
        needs[name] = statistics.median(spent)
        print(f"  {name:<32} {needs[name]:.3g}  ({', '.join(f'{s:.3g}' for s in spent)})")
    random_need = needs.get("random, no early stop", math.nan)
    if "ASHA + TPE" in needs and math.isfinite(random_need) and random_need > 0:
        print(f"ASHA + TPE needs {needs['ASHA + TPE'] / random_need:.2f} of the compute random search needs (medians)")
    step, to_target = dense_step_flops(spec), spec.target.rung_steps[-1]
    print(
        "\ncompute per trial that trained, in dense-equivalent steps (all seeds), and the share of trials that "
        f"cost less than a quarter of the dense run to the target ({to_target} steps):"
    )
    for name, cs in curves.items():
        costs = [(b[0] - a[0]) / step for c in cs for a, b in zip([(0.0, math.inf), *c], c) if b[0] > a[0]]
        if costs:
            short = sum(cost < to_target / 4 for cost in costs) / len(costs)
            print(
                f"  {name:<32} mean {statistics.mean(costs):.0f}, median {statistics.median(costs):.0f}, "
                f"short {short:.0%}"
            )
    print("\nat each run's whole budget (not cut), best objective found (per seed) and compute spent:")
    for name, cs in curves.items():
        print(f"  {name:<32} " + "; ".join(f"{c[-1][1]:.4g} with {c[-1][0]:.3g}" for c in cs))
    table.to_csv(args.out / "search_efficiency.csv", index=False)
    (args.out / "search_efficiency_curves.json").write_text(json.dumps(curves))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    longest = max(c[-1][0] for cs in curves.values() for c in cs)
    grid = [longest * k / 400 for k in range(401)]
    for i, (name, cs) in enumerate(curves.items()):
        colour = colours[i % len(colours)]
        # the median over seeds (none yet counts as the worst), up to where the shortest seed's run ended: thick
        end = min(c[-1][0] for c in cs)
        median = [(x, statistics.median(best_at(c, x) for c in cs)) for x in grid if x <= end]
        shown = [(x, m) for x, m in median if math.isfinite(m)]
        if shown:
            ax.plot(*zip(*shown), color=colour, linewidth=2.2, label=f"{name} (median of {len(cs)} seeds)")
        label = None if shown else f"{name} (seeds only: most had no trial at the target)"
        for c in cs:  # each search seed's whole run, best so far after each finished trial: thin
            found = [(x, y) for x, y in c if math.isfinite(y)]
            if found:
                ax.step(*zip(*found), where="post", color=colour, alpha=0.25, linewidth=0.8, label=label)
                label = None
    ax.axhline(goal, color="grey", linestyle=":", label="within 10% of the best found within the common budget")
    ax.axvline(budget, color="grey", linestyle="--", label="common budget (the smallest run's total)")
    ax.set_xlabel("compute spent by sparse trials (FLOPs)")
    ax.set_ylabel(f"best {objective} found so far")
    ax.set_title("Search efficiency on the reduced rigl.yaml space")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "search_efficiency.png", dpi=120)
    print(f"wrote {args.out / 'search_efficiency.csv'} and {args.out / 'search_efficiency.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
