"""The Python API: every command's flow as a function, with its checks and messages; the command line is a shell
that parses arguments, calls these and prints what they return (``render`` turns results into text).

``sparsesearch.run`` (``sparsesearch run``), ``sparsesearch.resume``, ``sparsesearch.train`` (``sparsesearch
train``, silent) and ``Results`` (an experiment's results: table, history, best trial, summary, export, report);
``sparsesearch.load_trained`` (``training.saved``) loads a model saved by ``train --save``. A spec is a path to a
YAML file or a dict with the same content; ``overrides`` are ``--set`` assignments (``"train.lr=3e-4"``). Invalid
input raises ``SpecError`` (or ``ResultsError`` for a folder that is not a readable experiment) with the command
line's one-line message, before any data, target, Ray or file work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results.best import BestTrial, best_trial
from .spec import SearchParam, Spec, SpecError

if TYPE_CHECKING:
    import pandas as pd
    from ray import tune

    from .data.batches import TokenizedData
    from .model.flops import StepFlops
    from .model.shape import ModelShape
    from .training.target import Target
    from .training.trainer import RunResult, Trainer

SpecSource = str | Path | Mapping[str, Any]

__all__ = [
    "BestTrial",
    "FlopsEstimate",
    "Results",
    "SearchPlan",
    "TrainedRun",
    "checked_spec",
    "flops",
    "plan_search",
    "resume",
    "run",
    "train",
    "train_run",
]


class Results:
    """The results of one experiment directory (finished, running or interrupted): read on each call."""

    def __init__(self, path: str | Path):
        from .results.table import experiment_dir

        self.path: Path = experiment_dir(path)

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r})"

    def table(self) -> pd.DataFrame:
        """One row per trial (``load_results``)."""
        from .results.table import load_results

        return load_results(self.path)

    def history(self) -> pd.DataFrame:
        """Every evaluation of every trial (``load_history``)."""
        from .results.table import load_history

        return load_history(self.path)

    def best(self, rank: int = 0, by: str | None = None) -> BestTrial:
        """The ``rank``-th best sparse trial that reached the target (``sparsesearch best``): ``.label``,
        ``.row`` (its table row), ``.config`` (its sampled values), ``.spec`` (a dict that ``train`` accepts),
        ``.yaml()``."""
        return best_trial(self.path, rank, by)

    def summary(self) -> list[str]:
        """The console summary ``sparsesearch run`` prints: the dense family and the best sparse trials."""
        from .results.summary import summarize

        return summarize(self.path)

    def export(self, out: str | Path | None = None, by: str = "net_time") -> dict[str, Path]:
        """``sparsesearch export``: the files written, by name."""
        from .results.export import export

        return export(self.path, out, by=by)

    def report(self, out: str | Path | None = None, by: str | None = None) -> Path:
        """``sparsesearch report``: the report's path."""
        from .results.report import report

        return report(self.path, out, by=by)


@dataclass(frozen=True)
class SearchPlan:
    """A search as ``run`` would start it: the raw spec with every override applied, the checked spec, its
    searched parameters and the path that names the experiment when no name is given."""

    raw: dict
    spec: Spec
    params: tuple[SearchParam, ...]
    path: str


def plan_search(
    spec: SpecSource,
    overrides: Sequence[str] = (),
    *,
    num_samples: int | None = None,
    address: str | None = None,
    storage: str | Path | None = None,
    name: str | None = None,
) -> SearchPlan:
    """The spec of a search with its overrides (``--set`` assignments, then the flags that set spec keys), every
    rule checked, before any data, target, Ray or file work; ``SpecError`` names the field and the rule."""
    from .checks import load_checked

    extra = []
    if num_samples is not None:
        if num_samples < 1:
            raise SpecError(f"--num-samples: must be >= 1, got {num_samples}")
        extra.append(f"search.num_samples={num_samples}")
    flags = {"tune.address": address, "tune.storage": None if storage is None else os.fspath(storage)}
    flags["tune.name"] = name
    extra += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    checked = load_checked(spec, [*overrides, *extra])
    if not checked.params:
        raise SpecError("search.params: nothing to search; add keys such as sparsity.level: {uniform: [0.5, 0.9]}")
    path = spec if isinstance(spec, (str, os.PathLike)) else "spec"  # names the experiment when no name is given
    return SearchPlan(checked.raw, checked.spec, checked.params, os.fspath(path))


def run(
    spec: SpecSource,
    overrides: Sequence[str] = (),
    callbacks: Sequence[tune.Callback] = (),
    name: str | None = None,
    storage: str | Path | None = None,
    num_samples: int | None = None,
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> Results:
    """Search the spec's space (``sparsesearch run SPEC --set ... --name N --storage DIR --num-samples N``);
    returns the experiment's results. ``callbacks``: extra Ray Tune callbacks of the search (saved with the
    experiment, so they must pickle; ``resume`` does not restore them); ``log``: where progress lines go."""
    plan = plan_search(spec, overrides, num_samples=num_samples, address=address, storage=storage, name=name)
    return run_plan(plan, callbacks=callbacks, log=log, verbose=verbose)


def run_plan(
    plan: SearchPlan,
    *,
    callbacks: Sequence[tune.Callback] = (),
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> Results:
    """Run a search that ``plan_search`` checked (``run``'s second half)."""
    from .search.driver import run_search

    return Results(run_search(plan.path, plan.raw, plan.spec, log=log, verbose=verbose, callbacks=callbacks))


def resume(
    experiment: str | Path,
    num_samples: int | None = None,
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> Results:
    """Continue an interrupted experiment, or extend a finished one by ``num_samples`` sparse trials
    (``sparsesearch resume``)."""
    from .search.driver import resume_search

    if num_samples is not None and num_samples < 1:
        raise SpecError(f"--num-samples: must be >= 1, got {num_samples}")
    return Results(resume_search(experiment, address=address, more=num_samples or 0, log=log, verbose=verbose))


def checked_spec(spec: SpecSource, overrides: Sequence[str] = ()) -> Spec:
    """The spec with its overrides and every rule checked, as ``sparsesearch train`` and ``flops`` check it."""
    from .checks import load_checked

    return load_checked(spec, overrides).spec


@dataclass(frozen=True)
class FlopsEstimate:
    """Analytic FLOPs of one training step of a spec's model (``sparsesearch flops``): dense, and at the spec's
    sparsity with every mask at its target density, without and with a mask update after the step."""

    spec: Spec
    shape: ModelShape
    masked_positions: float
    dense: StepFlops
    step: StepFlops
    update_step: StepFlops


def flops(spec: SpecSource, overrides: Sequence[str] = ()) -> FlopsEstimate:
    """The FLOP breakdown of one training step at the spec's sparsity (no model built, nothing trained)."""
    from .model.embedding import model_shape
    from .model.flops import expected_masked, step_flops
    from .sparsity.registry import get_method

    checked = checked_spec(spec, overrides)
    shape = model_shape(checked.model)
    batch = checked.train.batch_size
    n = expected_masked(shape, batch, checked.data.mask_prob)
    method = get_method(checked.sparsity.method)(checked.sparsity)
    step, update = (step_flops(shape, batch, n, method.step_densities(shape.weight_shapes(), u)) for u in (False, True))
    return FlopsEstimate(checked, shape, n, step_flops(shape, batch, n), step, update)


@dataclass(frozen=True)
class TrainedRun:
    """A finished ``train``: its result, the trainer (masks, FLOPs, precision), the target and data it used, and
    where the model was saved (None when it was not)."""

    result: RunResult
    trainer: Trainer
    target: Target
    data: TokenizedData
    save_dir: Path | None


def train_run(
    spec: SpecSource,
    overrides: Sequence[str] = (),
    *,
    save: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    on_start: Callable[[Trainer], None] | None = None,
    on_row: Callable[[dict], None] | None = None,
    save_option: str = "save",
) -> TrainedRun:
    """``sparsesearch train`` without its printing: check the spec (and ``save``, before any training), prepare
    the data, resolve the target, train to it and save. ``log`` gets the set-up lines, ``on_start`` the trainer
    before its first step, ``on_row`` every evaluation's row; ``save_option`` is how an error names ``save``."""
    from .training.saved import prepare_save_dir, save_trained
    from .training.session import start_session

    say = log or (lambda msg: None)
    checked = checked_spec(spec, overrides)
    save_dir = prepare_save_dir(save, save_option) if save is not None else None
    session = start_session(checked, say)
    trainer = session.trainer
    if on_start is not None:
        on_start(trainer)
    for row in trainer.run():
        if on_row is not None:
            on_row(row)
    assert trainer.result is not None  # set when run() ends
    if save_dir is not None:
        save_trained(trainer, save_dir, target_source=session.target.source)
    return TrainedRun(trainer.result, trainer, session.target, session.data, save_dir)


def train(
    spec: SpecSource,
    overrides: Sequence[str] = (),
    *,
    save: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train the spec's configuration to its target (``sparsesearch train``, without printing unless ``log`` is
    given); returns the ``RunResult``. ``save``: a directory for the trained model (``train --save``)."""
    say = log or (lambda msg: None)

    def row_line(row: dict) -> None:
        say(f"step {row['step']:>5}  eval {row['eval_loss']:.4f}  net {row['net_time_s']:.1f}s  {row['status']}")

    done = train_run(spec, overrides, save=save, log=say, on_row=row_line)
    if done.save_dir is not None:
        say(f"saved {done.save_dir}")
    return done.result
