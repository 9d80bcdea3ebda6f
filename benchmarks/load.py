"""Load: a search of many short trials, with the driver's memory, the study's size and the per-trial overhead
as the trial count grows.

    python benchmarks/load.py [--trials 200] [--concurrent 2] [--steps 20] [--json F]

Runs the real CLI (`sparsesearch run`) on the smoke spec with an explicit, unreachable target (every trial
trains its short budget or is stopped by ASHA; no target run), in a temporary storage folder, and samples once a
second from outside the driver: its resident memory, the resident memory of every process in its session (Ray's
included), the size of ``study.db`` and the number of finished trials. Prints, after 10 trials and at 25%, 50% and 100%
of the trials: elapsed time, memory, study size, and per window the wall time per trial against the trials' own time
(start-up, training, evaluation, reports), whose difference is what orchestration costs per trial. Flat rows mean
nothing grows with the trial count. Finally checks that every trial is accounted for: one row per trial in the
results, each with a final status, and as many Optuna trials as sparse trials.

Run it on an otherwise idle machine: the overhead column is a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsesearch.definitions import DIVERGED, NOT_REACHED, REACHED, STOPPED_EARLY
from sparsesearch.results.table import load_results

FINAL = {REACHED, NOT_REACHED, DIVERGED, STOPPED_EARLY}


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _session_rss_mb(sid: int) -> float:
    """Resident memory of every process in session ``sid`` (the driver and the Ray processes it started)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getsid(int(d.name)) == sid:
                total += _rss_mb(int(d.name))
        except (ProcessLookupError, PermissionError):
            continue
    return total


def _finished(exp: Path) -> dict[str, dict]:
    """Trial folder -> its last report, for trials whose last report is final."""
    out = {}
    for f in exp.glob("*/result.json"):
        try:
            lines = f.read_text().splitlines()
            last = json.loads(lines[-1]) if lines else None
        except (OSError, json.JSONDecodeError):
            continue
        if last and (last.get("done") or last.get("status") in (REACHED, NOT_REACHED, DIVERGED)):
            out[f.parent.name] = last
    return out


def _own_s(report: dict) -> float:
    return sum(float(report.get(k, 0.0)) for k in ("startup_s", "train_time_s", "eval_time_s", "report_s"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200, help="sparse trials (the one dense family trial is extra)")
    p.add_argument("--concurrent", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="training steps per trial")
    p.add_argument("--json", type=Path, help="also write the samples and the table to this JSON file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as storage:
        cmd = [
            sys.executable,
            "-m",
            "sparsesearch.cli",
            "run",
            str(ROOT / "search_spaces" / "smoke.yaml"),
            "--name",
            "load",
            "--storage",
            storage,
            "--num-samples",
            str(args.trials),
            *("--set", "target.loss=0.5", "--set", f"train.max_steps={args.steps}", "--set", "train.eval_every=10"),
            *("--set", "search.dense_family.sizes=1", "--set", "search.dense_family.configs=1"),
            *("--set", f"tune.max_concurrent={args.concurrent}"),
        ]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
        log = Path(storage) / "driver.log"
        exp = Path(storage) / "load"
        t0 = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            samples = []
            first_done: dict[str, float] = {}
            while proc.poll() is None:
                time.sleep(1.0)
                now = time.perf_counter() - t0
                done = _finished(exp) if exp.is_dir() else {}
                for name in done:
                    first_done.setdefault(name, now)
                study = exp / "study.db"
                samples.append(
                    {
                        "t": now,
                        "finished": len(done),
                        "driver_rss_mb": _rss_mb(proc.pid),
                        "session_rss_mb": _session_rss_mb(proc.pid),
                        "study_kb": study.stat().st_size / 1024 if study.is_file() else 0.0,
                    }
                )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(log.read_text()[-3000:])
            print(f"the search failed (exit {proc.returncode})")
            return 1
        reports = _finished(exp)
        df = load_results(exp)
        import sqlite3

        with sqlite3.connect(exp / "study.db") as db:
            optuna_trials = db.execute("select count(*) from trials").fetchone()[0]
        study_kb = (exp / "study.db").stat().st_size / 1024
    total = args.trials + 1
    accounted = len(df) == total and df["status"].isin(FINAL).all() and optuna_trials == args.trials
    print(
        f"{total} trials ({args.trials} sparse + 1 dense family), {args.concurrent} at a time, {args.steps} steps "
        f"each; wall {wall:.0f} s; statuses: " + ", ".join(f"{k} {v}" for k, v in df["status"].value_counts().items())
    )
    print(
        f"accounted for: {'yes' if accounted else 'NO'} ({len(df)} rows in the results, {optuna_trials} Optuna "
        f"trials for {args.trials} sparse trials); final study.db {study_kb:.0f} KiB"
    )
    order = sorted(first_done, key=first_done.get)  # type: ignore[arg-type]
    # The first row's window holds Ray's start and the first trials' imports: compare the later ones.
    marks = sorted({min(10, total), *(max(1, round(args.trials * f)) for f in (0.25, 0.5)), total})
    print(
        f"\n{'finished':>9}{'elapsed s':>11}{'driver RSS MB':>15}{'all RSS MB':>12}{'study KiB':>11}"
        f"{'wall/trial s':>14}{'own/trial s':>13}{'overhead/trial s':>18}"
    )
    rows, prev_n, prev_t = [], 0, 0.0
    for n in marks:
        if n > len(order):
            break
        t = first_done[order[n - 1]]
        at = next((s for s in samples if s["finished"] >= n), samples[-1])
        window = order[prev_n:n]
        wall_per = (t - prev_t) * args.concurrent / len(window)  # slot-seconds per trial in the window
        own = sum(_own_s(reports[w]) for w in window if w in reports) / len(window)
        row = {
            "finished": n,
            "elapsed_s": t,
            "driver_rss_mb": at["driver_rss_mb"],
            "session_rss_mb": at["session_rss_mb"],
            "study_kb": at["study_kb"],
            "wall_per_trial_s": wall_per,
            "own_per_trial_s": own,
            "overhead_per_trial_s": wall_per - own,
        }
        rows.append(row)
        print(
            f"{n:>9}{t:>11.0f}{row['driver_rss_mb']:>15.0f}{row['session_rss_mb']:>12.0f}{row['study_kb']:>11.0f}"
            f"{wall_per:>14.2f}{own:>13.2f}{wall_per - own:>18.2f}"
        )
        prev_n, prev_t = n, t
    print(
        "\nwall/trial: slot-seconds per trial in the window since the previous row (elapsed x concurrency / "
        "trials); own/trial: the trials' start-up, training, evaluation and report seconds."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args), "wall_s": wall, "rows": rows, "samples": samples}, default=str)
        )
    return 0 if accounted else 1


if __name__ == "__main__":
    sys.exit(main())
