"""The confirmation after a search: the best sparse configurations and the best dense of each size again on more
seeds (``search.confirm``), as a Ray Tune run of its own inside the experiment (``results.confirm`` reads it)."""

from __future__ import annotations

import json
from pathlib import Path

from ray import tune
from ray.tune.search import ConcurrencyLimiter

from ..experiment import CONFIRM_DIR, STATE_FILE, TUNER_FILE
from ..results.confirm import confirm_configs, confirm_picks
from ..results.table import load_results
from ..spec import Spec
from .progress import Console, SearchProgress
from .ray_setup import restored_tuner
from .schedulers import FixedConfigs
from .storage_guard import StopOnStorageFailure, fit_or_stop


def confirm(spec: Spec, exp_dir: Path, trainable, log: Console, verbose: bool) -> None:
    """Re-run the best sparse configurations and the best dense of each size on more seeds
    (``results.confirm``); an interrupted confirmation continues where it stopped."""
    cdir = exp_dir / CONFIRM_DIR
    conf = spec.search.confirm
    if (cdir / TUNER_FILE).exists():
        total = len(json.loads((cdir / STATE_FILE).read_text()).get("confirms", [])) * conf.seeds
        tuner = restored_tuner(cdir, trainable, _confirm_callbacks(spec, exp_dir, log, total, verbose))
    else:
        df = load_results(exp_dir)
        picks = confirm_picks(df, conf.top, spec.search.objective)
        configs = confirm_configs(df, picks, spec.train.seed, conf.seeds)
        if not configs:
            log("confirm nothing to confirm: no trial reached the target")
            return
        cdir.mkdir(exist_ok=True)
        state = {**json.loads((exp_dir / STATE_FILE).read_text()), "name": CONFIRM_DIR, "confirms": picks}
        (cdir / STATE_FILE).write_text(json.dumps(state, indent=1))
        log(f"confirm {len(picks)} configurations x {conf.seeds} more seeds ({len(configs)} runs)")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(FixedConfigs(configs), max_concurrent=spec.tune.max_concurrent),
                num_samples=len(configs),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=CONFIRM_DIR,
                storage_path=str(exp_dir),
                verbose=0,
                callbacks=_confirm_callbacks(spec, exp_dir, log, len(configs), verbose),
                failure_config=tune.FailureConfig(max_failures=spec.tune.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    fit_or_stop(tuner, exp_dir)


def _confirm_callbacks(spec: Spec, exp_dir: Path, log: Console, total: int, verbose: bool) -> list:
    return [
        SearchProgress(log, total, verbose=verbose, objective=spec.search.objective),
        StopOnStorageFailure(exp_dir),
    ]
