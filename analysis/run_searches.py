"""Run the study's searches and store what the analysis needs under ``analysis/results/search_<name>/``.

For each search space: ``sparsesearch run`` (skipped when its stored results exist, or when ``--experiment
NAME=DIR`` points at a finished experiment of that space), then ``sparsesearch export`` into the results folder
plus ``history.csv`` (every evaluation of every trial) for the loss-against-compute figures.

    python analysis/run_searches.py
    python analysis/run_searches.py --experiment rigl=runs/rigl-20261125-162152
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparsesearch.experiment import STUDY_FILE
from sparsesearch.results.export import export
from sparsesearch.results.importances import param_importances
from sparsesearch.results.table import load_history

RESULTS = ROOT / "analysis" / "results"
# name -> (spec, number of sampled trials); methods.yaml is cut from 24 to 8 trials to fit a 3-hour session.
SEARCHES = {"rigl": ("search_spaces/rigl.yaml", 16), "methods": ("search_spaces/methods.yaml", 8)}
HISTORY_COLUMNS = ["trial_id", "role", "reference", "step", "eval_loss", "flops", "net_flops", "train_time_s", "status"]


def store(name: str, exp: Path) -> Path:
    out = RESULTS / f"search_{name}"
    export(exp, out, by="net_time")
    (out / "pareto.html").unlink()  # 4.8 MB of embedded plotly.js: regenerate it with `sparsesearch export`
    load_history(exp)[HISTORY_COLUMNS].to_csv(out / "history.csv", index=False)
    imp, note = param_importances(exp / STUDY_FILE)
    (out / "importances.json").write_text(
        json.dumps({"importances": {k: float(v) for k, v in imp.items()}, "note": note}, indent=1)
    )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="store this finished experiment for search NAME instead of running it",
    )
    p.add_argument("--only", nargs="*", choices=list(SEARCHES))
    args = p.parse_args(argv)
    given = dict(e.split("=", 1) for e in args.experiment)
    for name, (spec, n) in SEARCHES.items():
        if args.only and name not in args.only:
            continue
        if name in given:
            print(f"{name}: storing {given[name]} -> {store(name, Path(given[name]))}", flush=True)
            continue
        if (RESULTS / f"search_{name}" / "trials.csv").is_file():
            print(f"{name}: stored results exist, skipped", flush=True)
            continue
        exp = ROOT / "runs" / "study" / f"study-{name}"
        if not (exp / "sparsesearch.json").is_file():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sparsesearch.cli",
                    "run",
                    spec,
                    "--storage",
                    str(exp.parent),
                    "--name",
                    exp.name,
                    "--num-samples",
                    str(n),
                ],
                cwd=ROOT,
                check=True,
            )
        print(f"{name}: {store(name, exp)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
