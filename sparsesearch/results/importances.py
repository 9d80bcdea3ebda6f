"""A search's stored Optuna study, read safely, and the parameter importances (fANOVA) drawn from it."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

MIN_TRIALS = 3  # completed trials below which neither importances nor the study views are drawn
# fANOVA fits a random forest to the completed trials; below this many its ranking changes with a trial or two,
# so the report flags the importances as unreliable (they are still drawn from MIN_TRIALS on).
RELIABLE_TRIALS = 10


@dataclass(frozen=True)
class StudyRecord:
    """A search's Optuna study, read once from disk into memory.

    ``study`` holds every trial in Optuna's numbering; a trial that is neither pruned nor completed with a finite
    objective is kept as failed, so plots (which draw completed trials only) keep the search's trial numbers
    and never draw an infinity. ``complete`` are the completed trials with a finite objective.
    ``legacy``: the study predates pruning (no completed trial carries a ``status`` attribute), so trials
    stopped early entered it as completed, with their projected objective.
    """

    study: optuna.Study
    complete: list[FrozenTrial]
    legacy: bool


def read_study(study_file: str | Path) -> tuple[StudyRecord | None, str]:
    """The Optuna study at ``study_file`` as a ``StudyRecord``; (None, why) when it is missing, empty, damaged
    or unreadable: any failure here is one line in a report, never a traceback."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(study_file)
    if not path.is_file():
        return None, f"no Optuna study at {path}"
    if not _is_study(path):
        return None, f"{path.name} is not a readable Optuna study (truncated or overwritten?)"
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        names = optuna.get_all_study_names(storage)
        if not names:
            return None, "the Optuna study is empty"
        stored = optuna.load_study(study_name=names[0], storage=storage)
        trials = stored.get_trials(deepcopy=False)
        study = optuna.create_study(directions=stored.directions)
        study.add_trials([_plottable(t) for t in trials])
    except Exception as e:  # any storage failure: the study feeds optional sections of a report
        return None, f"{path.name} could not be read ({type(e).__name__})"
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    legacy = bool(complete) and not any("status" in t.user_attrs for t in complete)
    return StudyRecord(study, complete, legacy), ""


def _plottable(t: FrozenTrial) -> FrozenTrial:
    """``t`` as the in-memory study keeps it: pruned and finite completed trials as they are, others failed."""
    if t.state == TrialState.PRUNED or (
        t.state == TrialState.COMPLETE and t.values and all(math.isfinite(v) for v in t.values)
    ):
        return t
    return optuna.trial.create_trial(
        state=TrialState.FAIL, params=t.params, distributions=t.distributions, user_attrs=t.user_attrs
    )


def param_importances(study_file: str | Path) -> tuple[dict[str, float], str]:
    """fANOVA importances of the sampled parameters for the objective, from a search's Optuna study.

    Returns (importances, note); empty importances with the reason when the study is missing or unreadable, or
    holds too little (see ``importances``).
    """
    record, problem = read_study(study_file)
    if record is None:
        return {}, problem
    return importances(record)


def importances(record: StudyRecord) -> tuple[dict[str, float], str]:
    """fANOVA importances of the sampled parameters for the study's (first) objective.

    Uses the completed trials with finite values (pruned trials have no objective; a diverged trial's infinity
    would swamp the variance), at least ``MIN_TRIALS`` of them, and the parameters every one of them has and
    that vary (conditional knobs of a method seen only in some trials are left out). Returns (importances,
    note); empty importances with the reason when there is too little.
    """
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = record.complete
    if len(done) < MIN_TRIALS:
        return {}, f"{len(done)} completed trials with a finite objective; importances need at least {MIN_TRIALS}"
    varying = varying_params(done)
    if not varying:
        return {}, "no parameter varied across the completed trials"
    scratch = optuna.create_study(directions=record.study.directions)
    scratch.add_trials(done)
    imp = get_param_importances(
        scratch, evaluator=FanovaImportanceEvaluator(seed=0), params=varying, target=lambda t: t.values[0]
    )
    left_out = sorted(set().union(*(set(t.params) for t in done)) - set(varying))
    note = (
        f"fANOVA over {len(done)} completed trials (objective: the first study value; the dense family "
        "is not part of the study)"
    )
    if left_out:
        note += "; left out (constant, or only in some trials): " + ", ".join(left_out)
    return dict(imp), note


def varying_params(trials: list[FrozenTrial]) -> list[str]:
    """The parameters every one of ``trials`` has and that take more than one value among them."""
    if not trials:
        return []
    common = set.intersection(*(set(t.params) for t in trials))
    return sorted(p for p in common if len({json.dumps(t.params[p], sort_keys=True) for t in trials}) > 1)


def _is_study(path: Path) -> bool:
    """Whether ``path`` is an SQLite file holding Optuna's tables, checked read-only (opening it with Optuna's
    storage would create the tables in a file that has none)."""
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return {"studies", "trials"} <= tables
