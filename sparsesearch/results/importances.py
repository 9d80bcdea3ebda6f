"""Parameter importances of a search, from its stored Optuna study (fANOVA)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import optuna


def param_importances(study_file: str | Path) -> tuple[dict[str, float], str]:
    """fANOVA importances of the sampled parameters for the objective, from a search's Optuna study.

    Uses completed trials with finite values (a diverged trial's infinity would swamp the variance) and the
    parameters every one of them has and that vary (conditional knobs of a method seen only in some trials
    are left out). Returns (importances, note); empty importances with the reason when there is too little.
    """
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(study_file)
    if not path.is_file():
        return {}, f"no Optuna study at {path}"
    if not _is_study(path):
        return {}, f"{path.name} is not a readable Optuna study (truncated or overwritten?)"
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        names = optuna.get_all_study_names(storage)
        if not names:
            return {}, "the Optuna study is empty"
        study = optuna.load_study(study_name=names[0], storage=storage)
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    except Exception as e:  # any storage failure: importances are one optional section of a report
        return {}, f"{path.name} could not be read ({type(e).__name__})"
    done = [t for t in trials if t.values and all(math.isfinite(v) for v in t.values)]
    if len(done) < 3:
        return {}, f"{len(done)} completed trials with a finite objective; importances need at least 3"
    common = set.intersection(*(set(t.params) for t in done))
    varying = sorted(p for p in common if len({json.dumps(t.params[p], sort_keys=True) for t in done}) > 1)
    if not varying:
        return {}, "no parameter varied across the completed trials"
    scratch = optuna.create_study(directions=study.directions)
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
