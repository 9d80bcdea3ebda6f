"""The Python API: the commands as functions, validated exactly as the command line validates them.

``sparsesearch.run`` (``sparsesearch run``), ``sparsesearch.resume``, ``sparsesearch.train`` (``sparsesearch
train``, silent) and ``Results`` (an experiment's results: table, history, best trial, summary, export, report);
``sparsesearch.load_trained`` (``train.saved``) loads a model saved by ``train --save``. A spec is a path to a
YAML file or a dict with the same content; ``overrides`` are ``--set`` assignments (``"train.lr=3e-4"``). Invalid
input raises ``SpecError`` (or ``ResultsError`` for a folder that is not a readable experiment) with the command
line's one-line message, before any data, target, Ray or file work.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .cli import _run_overrides
from .results.best import BestTrial, best_trial
from .spec import Spec, SpecError, load_spec, spec_from_dict

if TYPE_CHECKING:
    import pandas as pd
    from ray import tune

    from .train.trainer import RunResult

SpecSource = str | Path | Mapping[str, Any]

__all__ = ["BestTrial", "Results", "checked_spec", "resume", "run", "train"]


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


def _raw(spec: SpecSource) -> Any:
    """The spec's raw content: a file's YAML, or a copy of the given mapping (never changed in place); anything
    else as it is, for ``spec_from_dict`` to say what a spec should be."""
    if isinstance(spec, (str, os.PathLike)):
        from .spec import load_raw

        return load_raw(spec)
    return copy.deepcopy(dict(spec)) if isinstance(spec, Mapping) else spec


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
    from .checks import check_spec
    from .search.driver import run_search
    from .spec import apply_override

    raw = _raw(spec)
    if not isinstance(raw, dict):
        spec_from_dict(raw)  # reports what the spec should be
    flags = SimpleNamespace(
        overrides=list(overrides),
        num_samples=num_samples,
        address=address,
        storage=None if storage is None else os.fspath(storage),
        name=name,
    )
    for o in _run_overrides(flags):
        apply_override(raw, o)
    checked = spec_from_dict(raw)
    if not check_spec(checked, raw):
        raise SpecError("search.params: nothing to search; add keys such as sparsity.level: {uniform: [0.5, 0.9]}")
    path = spec if isinstance(spec, (str, os.PathLike)) else "spec"  # names the experiment when no name is given
    return Results(run_search(os.fspath(path), raw, checked, log=log, verbose=verbose, callbacks=callbacks))


def resume(
    experiment: str | Path,
    num_samples: int | None = None,
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
) -> Results:
    """Continue an interrupted experiment, or extend a finished one by ``num_samples`` sparse trials
    (``sparsesearch resume``)."""
    from .search.driver import resume_search

    if num_samples is not None and num_samples < 1:
        raise SpecError(f"--num-samples: must be >= 1, got {num_samples}")
    return Results(resume_search(experiment, address=address, more=num_samples or 0, log=log))


def checked_spec(spec: SpecSource, overrides: Sequence[str] = ()) -> Spec:
    """The spec with its overrides and every rule checked, as ``sparsesearch train`` and ``flops`` check it."""
    from .checks import check_spec

    if isinstance(spec, (str, os.PathLike)):
        checked = load_spec(spec, overrides)
    else:
        checked = spec_from_dict(_raw(spec), overrides)
    check_spec(checked)
    return checked


def train(
    spec: SpecSource,
    overrides: Sequence[str] = (),
    *,
    save: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train the spec's configuration to its target (``sparsesearch train``, without printing unless ``log`` is
    given); returns the ``RunResult``. ``save``: a directory for the trained model (``train --save``)."""
    from .train.saved import prepare_save_dir, save_trained
    from .train.session import start_session

    say = log or (lambda msg: None)
    checked = checked_spec(spec, overrides)
    save_dir = prepare_save_dir(save, "save") if save is not None else None
    session = start_session(checked, say)
    target, trainer = session.target, session.trainer
    for row in trainer.run():
        say(f"step {row['step']:>5}  eval {row['eval_loss']:.4f}  net {row['net_time_s']:.1f}s  {row['status']}")
    assert trainer.result is not None  # set when run() ends
    if save_dir is not None:
        save_trained(trainer, save_dir, target_source=target.source)
        say(f"saved {save_dir}")
    return trainer.result
