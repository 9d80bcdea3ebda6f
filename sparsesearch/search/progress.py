"""What a running search shows: one line per finished trial with a status (done / running / stopped early /
failed of all, best so far by role, elapsed time, ETA), a live status bar on a terminal (tqdm), one line per
evaluation with ``--verbose``; every line also goes to the experiment's ``sparsesearch.log``."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ray import tune
from ray.tune.experiment import Trial
from tqdm import tqdm

from ..definitions import DIVERGED, INVALID, REACHED, RUNNING, STOPPED_EARLY
from ..experiment import DENSE_FAMILY, SPARSE, family_size, role, trial_label
from ..results.pareto import OBJECTIVES

LOG_FILE = "sparsesearch.log"


class Console:
    """Lines for the person running a command: to the terminal (above the status bar, if any) and to a log file
    once the experiment has a folder (the lines before that are kept and written first)."""

    def __init__(self, sink: Callable[[str], None] | None = None, stream: IO[str] | None = None):
        """``sink``: where lines go instead of ``stream`` (default stdout), e.g. a caller's own logger."""
        self.sink = sink
        self.stream = stream if stream is not None else sys.stdout
        self.file: IO[str] | None = None
        self.early: list[str] = []
        self.bar: tqdm | None = None

    def __getstate__(self) -> dict:
        # Ray Tune pickles its callbacks into the experiment (tuner.pkl): keep none of this process's handles.
        return {"sink": None, "stream": None, "file": None, "early": [], "bar": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = sys.stdout

    def __call__(self, message: str) -> None:
        if self.sink is not None:
            self.sink(message)
        elif self.bar is not None and not self.bar.disable:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)
        self._to_file(message)

    def _to_file(self, message: str) -> None:
        if self.file is None:
            self.early.append(message)
            return
        self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
        self.file.flush()

    def attach(self, folder: Path) -> None:
        """Write from now on (and everything said so far) to ``folder/sparsesearch.log``, appending."""
        if self.file is not None:
            return
        try:
            self.file = (folder / LOG_FILE).open("a", encoding="utf-8")
        except OSError:  # a log that cannot be written must not stop the search; the console still shows it all
            return
        early, self.early = self.early, []
        for line in early:
            self._to_file(line)

    def start_bar(self, total: int) -> None:
        """A status bar at the bottom of a terminal (none when stderr is not one, or lines go to a sink)."""
        quiet = self.sink is not None or not sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="trial", file=sys.stderr, disable=quiet, leave=False)

    def close(self) -> None:
        """End the status bar and the log file."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.file is not None:
            self.file.close()
            self.file = None


def _what(config: dict, result: dict) -> str:
    if role(config) == DENSE_FAMILY:
        return f"dense size {family_size(config)} (hidden {config.get('model.hidden_size', '-')})"
    return f"{result.get('method') or config.get('sparsity.method', '?')} level {float(result.get('level', 0)):.3f}"


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SearchProgress(tune.Callback):
    """The search's console: see the module docstring. ``total``: the trials this run will start."""

    def __init__(self, console: Console, total: int, *, verbose: bool = False, objective: str = "net_time"):
        self.console, self.total, self.verbose = console, total, verbose
        self.key = OBJECTIVES[objective]
        self.started = time.monotonic()
        self.counts = {"done": 0, "stopped": 0, "failed": 0}
        self.best: dict[str, float] = {}  # role -> best objective of a trial that reached the target

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        self.total = total_num_samples or self.total
        self.console.start_bar(self.total)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        if not self.verbose:
            return
        label = trial_label(result.get("trial_number"), trial.trial_id)
        self.console(
            f"  {label}  {_what(trial.config, result):<28} step {result['step']:>5}  eval "
            f"{result['eval_loss']:.4f}  net {result['net_time_s']:8.1f}s"
            f"{' (proj.)' if result['projected'] else '        '}  {result['status']}"
        )

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        last = trial.last_result or {}
        status = str(last.get("status", "?"))
        if status == RUNNING:
            status = STOPPED_EARLY
            self.counts["stopped"] += 1
        elif status in (DIVERGED, INVALID):
            self.counts["failed"] += 1
        if status == REACHED:
            value = float(last.get(self.key, math.inf))
            r = role(trial.config)
            self.best[r] = min(self.best.get(r, math.inf), value)
        self.counts["done"] += 1
        detail = ""
        if status == REACHED:
            detail = (
                f"  net time {float(last.get('net_time_s', math.nan)):.1f}s  net FLOPs "
                f"{float(last.get('net_flops', math.nan)):.3g}  sparsity {float(last.get('avg_sparsity', 0)):.2f}"
            )
        elif status == INVALID and last.get("message"):
            detail = f"  ({last['message']})"
        label = trial_label(last.get("trial_number"), trial.trial_id)
        self.console(
            f"  {label}  {_what(trial.config, last):<28} {status:<13} step {last.get('step', 0):>5}{detail}"
            f"   [{self.status(trials)}]"
        )
        self._advance(trials)

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:  # a failure with retries left
        label = trial_label((trial.last_result or {}).get("trial_number"), trial.trial_id)
        self.console(f"  {label}  failed ({last_error(trial)}); retrying from its last checkpoint")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:  # Tune calls this once retries are used up
        self.counts["failed"] += 1
        self.counts["done"] += 1
        label = trial_label((trial.last_result or {}).get("trial_number"), trial.trial_id)
        self.console(
            f"  {label}  ERROR, gave up after tune.max_failures retries ({last_error(trial)})   [{self.status(trials)}]"
        )
        self._advance(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self.console.bar is not None:
            self.console.bar.close()
            self.console.bar = None

    def status(self, trials: list[Trial]) -> str:
        """done / running / stopped early / failed, the best objective so far by role, elapsed time and ETA."""
        running = sum(1 for t in trials if t.status == "RUNNING")
        done = self.counts["done"]
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (self.total - done) if done else math.inf
        unit = "s" if self.key == "net_time_s" else " FLOPs"
        best = ", ".join(
            f"{name} {self.best[r]:.3g}{unit}"
            for r, name in ((SPARSE, "sparse"), (DENSE_FAMILY, "dense"))
            if r in self.best
        )
        return (
            f"{done}/{self.total} done, {running} running, {self.counts['stopped']} stopped, "
            f"{self.counts['failed']} failed" + (f"; best {best}" if best else "") + f"; {_clock(elapsed)}, "
            f"ETA {_clock(eta)}"
        )

    def _advance(self, trials: list[Trial]) -> None:
        bar = self.console.bar
        if bar is not None:
            bar.set_postfix_str(self.status(trials), refresh=False)
            bar.update(1)


def last_error(trial: Trial) -> str:
    """The last line of the trial's latest error (its traceback is in ``error.txt`` beside it)."""
    try:
        with open(trial.error_file) as f:
            lines = [line.strip() for line in f if line.strip()]
        return lines[-1][:200] if lines else "no error message"
    except (OSError, TypeError):
        return "no error file"
