"""The search driver: Optuna (define-by-run) inside Ray Tune's OptunaSearch, ASHA at equal compute over the sparse
trials, a dense family in every experiment, resumable.

Experiment directory (``tune.storage / name``): Ray Tune's own state and trial folders, ``study.db`` (the
Optuna study, SQLite: ``optuna-dashboard sqlite:///.../study.db``) and ``sparsesearch.json`` (the spec, the
resolved target and what ``resume`` needs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray._private import ray_constants
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from ..checks import asha_grace, asha_max_t, check_spec, dense_step_flops
from ..data.batches import describe_data, prepare_data
from ..definitions import UNFINISHED
from ..experiment import (
    CONFIRM_DIR,
    DENSE_FAMILY,
    STATE_FILE,
    STUDY_FILE,
    TUNER_FILE,
    encode_value,
    role,
)
from ..model.embedding import model_shape
from ..model.flops import expected_masked
from ..results.confirm import confirm_configs, confirm_picks
from ..results.table import load_results
from ..spec import Spec, SpecError, spec_from_dict, with_values
from ..train.reference import measure_reference
from ..train.target import Target, resolve_target
from .family import plan_family
from .loggers import logger_callbacks
from .progress import Console, SearchProgress
from .space import define_by_run, make_sampler
from .storage_guard import StopOnStorageFailure, fit_or_stop
from .study_feed import StudyFeed
from .trial import run_trial


def _quiet_ray_logs(verbose: bool = False) -> None:
    """Ray's own start-up and status output off the console (sparsesearch prints its own progress), unless
    ``verbose``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        # Tune's status tables and "View detailed results" boxes (the new output engine ignores verbose=0).
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.air", "ray.train", "mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # Trials checkpoint at every evaluation, by design (exact resume); Tune warns about that every few seconds.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A failed trial is a line of the progress log (its traceback is in the trial's error.txt), not a traceback on
    # the console at every retry.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)  # one warning per inf metric otherwise
    if not verbose:
        for handler in logging.getLogger("ray").handlers:
            if not any(isinstance(f, _OneLineErrors) for f in handler.filters):
                handler.addFilter(_OneLineErrors())


class _OneLineErrors(logging.Filter):
    """Ray's errors as one line each, their traceback left out (``--verbose`` keeps it). Ray logs some failures it
    survives with a traceback (e.g. an old checkpoint it cannot delete from storage that turned read-only), which
    the console must not show: the search says what failed and what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} {type(exc).__name__}: {exc}", None
            record.exc_info, record.exc_text = None, None
        record.stack_info = None
        return True


def _init_ray(address: str | None, num_cpus: int | None = None, verbose: bool = False) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=_ray_log_level(verbose))
        except (ConnectionError, TimeoutError, ValueError) as e:
            raise SpecError(f"tune.address: cannot join the Ray cluster at {address!r}: {e}") from None
    else:
        # A local Ray serves this machine alone, so nothing of it may listen beyond it (whoever reaches a Ray port
        # runs code there). Ray binds its servers (GCS, raylet, workers, agents, metrics) to loopback only when the
        # node IP is loopback, and ray.init makes _node_ip_address="127.0.0.1" the machine's IP unless
        # ENABLE_RAY_CLUSTER (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read when Ray is imported) is off.
        enabled = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=_ray_log_level(verbose),
            )
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = enabled


def _ray_log_level(verbose: bool) -> int:
    """Ray's start-up lines ("Started a local Ray instance", the token notice) only when asked for."""
    return logging.INFO if verbose else logging.ERROR


class WithDenseFamily(Searcher):
    """Searcher wrapper: the first suggestions are the dense family's trials (fixed configurations); the rest come
    from the wrapped searcher, which never hears about the family (its model of the space is the sparse one)."""

    def __init__(self, inner: Searcher, family: list[dict]):
        self.inner = inner
        self.family = family
        self.family_trials: list[str] = []
        super().__init__(metric=inner.metric, mode=inner.mode)

    def set_search_properties(self, metric, mode, config, **spec):
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent):
        return self.inner.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id):
        if len(self.family_trials) < len(self.family):
            self.family_trials.append(trial_id)
            return dict(self.family[len(self.family_trials) - 1])
        return self.inner.suggest(trial_id)

    def on_trial_result(self, trial_id, result):
        if trial_id not in self.family_trials:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id not in self.family_trials:
            self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path):
        with tempfile.TemporaryDirectory() as d:
            self.inner.save(os.path.join(d, "inner.pkl"))
            inner = Path(d, "inner.pkl").read_bytes()
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"family": self.family, "family_trials": self.family_trials, "inner": inner}, f)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.family, self.family_trials = state["family"], state["family_trials"]
        with tempfile.TemporaryDirectory() as d:
            Path(d, "inner.pkl").write_bytes(state["inner"])
            self.inner.restore(os.path.join(d, "inner.pkl"))


def _searcher(spec: Spec, raw: dict, exp_dir: Path, name: str, family: list[dict], rungs: int, *, start: bool):
    """The search algorithm: the family first, then Optuna on the shared study; ``start``: evaluate the spec's
    ``search.start_from`` configurations first (not when extending a search: they ran already)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(exp_dir / STUDY_FILE).resolve()}")
    metric: Any = ["objective", "avg_sparsity"] if spec.search.pareto else "objective"
    mode: Any = ["min", "max"] if spec.search.pareto else "min"
    points = [{k: encode_value(v) for k, v in p.items()} for p in spec.search.start_from] if start else []
    inner = StudyFeed(
        rungs=rungs,
        points_to_evaluate=points or None,
        space=(space := define_by_run(spec, raw)),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec.search.sampler, spec.search.seed, space.params, spec.search.startup_trials),
        storage=storage,
        study_name=name,
    )
    return ConcurrencyLimiter(WithDenseFamily(inner, family), max_concurrent=spec.tune.max_concurrent)


def gpus_per_trial(spec: Spec, cluster_gpus: float) -> float:
    """GPUs each trial asks for: the spec's number, or by default a share of the cluster's GPUs (none when
    ``train.device`` is cpu): GPUs / max_concurrent, at most one per trial."""
    if spec.tune.gpus_per_trial is not None:
        return spec.tune.gpus_per_trial
    if cluster_gpus <= 0 or spec.train.device == "cpu":
        return 0.0
    return min(1.0, cluster_gpus / spec.tune.max_concurrent)


def _trainable(
    spec: Spec, raw: dict, data, target: Target, unit_flops: float, gpus: float, seconds_per_flop: float | None
):
    fn = tune.with_parameters(
        run_trial,
        raw=raw,
        data=data,
        target=target,
        objective=spec.search.objective,
        budget_unit=spec.search.asha.unit,
        dense_step_flops=unit_flops,
        threads=max(1, int(spec.tune.cpus_per_trial)),
        seconds_per_flop=seconds_per_flop,
    )
    return tune.with_resources(fn, {"cpu": spec.tune.cpus_per_trial, "gpu": gpus})


class FixedConfigs(Searcher):
    """Searcher that suggests a fixed list of configurations, then finishes (the confirmation runs)."""

    def __init__(self, configs: list[dict]):
        super().__init__(metric="objective", mode="min")
        self.configs, self.given = configs, 0

    def suggest(self, trial_id):
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return dict(self.configs[self.given - 1])

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    def save(self, checkpoint_path):
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "given": self.given}, f)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.given = state["configs"], state["given"]


class FamilyKeepingASHA(ASHAScheduler):
    """ASHA over the sparse trials alone: dense family trials never enter its rungs and are never stopped.

    Every speedup is measured against the best dense family trial, so each runs to the target or its budget (at
    equal compute a dense run is behind a good sparse one, so plain ASHA may cut it at a rung). And a family
    trial's results must not set a rung's cutoff either: Ray's ``on_trial_complete`` records a finished trial's
    *last* result at the highest rung it passed, so family trials that finished first at the target loss would put
    that loss in early rungs and stop every sparse trial there, however well it was doing. The role is read from
    the trial's config at every call, so a restored experiment (``resume``) is treated the same way.
    """

    @staticmethod
    def _is_family(trial) -> bool:
        return role(getattr(trial, "config", None) or {}) == DENSE_FAMILY

    def _forget(self, trial) -> None:
        # Ray 2.60's AsyncHyperBandScheduler keeps trial -> bracket in ``_trial_info``; an experiment saved before
        # family trials were kept out may hold one there (checked by tests/test_search.py).
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_add(self, tune_controller, trial):
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        if self._is_family(trial):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        if self._is_family(trial):
            return self._forget(trial)
        return super().on_trial_remove(tune_controller, trial)


def _scheduler(spec: Spec, unit_flops: float):
    a = spec.search.asha
    max_t = asha_max_t(spec, unit_flops)  # grace_period <= max_t: checked with the spec (checks.check_asha)
    # Budgets are floats (dense-equivalent steps or FLOPs); ASHA compares them as numbers, whatever its hints say.
    return FamilyKeepingASHA(
        time_attr="budget",
        metric="eval_loss",
        mode="min",
        max_t=max_t,  # type: ignore[arg-type]
        grace_period=asha_grace(spec, unit_flops),  # type: ignore[arg-type]
        reduction_factor=a.reduction_factor,
    )


def run_search(
    spec_path: str | Path,
    raw: dict,
    spec: Spec,
    *,
    log: Callable[[str], None] = print,
    num_cpus: int | None = None,
    verbose: bool = False,
    callbacks: Sequence[tune.Callback] = (),
) -> Path:
    """Run the search of ``spec`` (see module docstring); returns the experiment directory.

    Everything that can be checked is checked before any data, target, Ray or file work; a run that fails before
    its first trial reports leaves no experiment directory behind."""
    params = check_spec(spec, raw)
    _quiet_ray_logs(verbose)
    owned = not isinstance(log, Console)  # a caller's console stays open for what it prints after
    log = _console(log)
    name = spec.tune.name or f"{Path(spec_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = _storage_path(spec.tune.storage)
    exp_dir = Path(storage) / name
    if (exp_dir / STATE_FILE).exists():
        raise SpecError(
            f"tune.name: experiment {exp_dir} exists; continue it with `sparsesearch resume "
            f"{exp_dir}` or choose another name"
        )
    if exp_dir.exists() and (not exp_dir.is_dir() or any(exp_dir.iterdir())):
        raise SpecError(f"tune.name: {exp_dir} exists and is not a sparsesearch experiment; choose another name")
    sizes, family = plan_family(spec, raw, params)
    data = prepare_data(spec.data, spec.model)
    log(f"data    {describe_data(data.stats)}")
    target = resolve_target(spec, data, log=log)  # once, before any trial starts
    log(f"target  held-out MLM loss {target.describe()} ({target.source})")
    reference = measure_reference(spec, data)
    log(
        f"price   a dense step of the spec's model takes {reference.dense_step_s * 1e3:.0f} ms here: net time is in "
        "these dense-equivalent seconds"
    )
    for s in sizes:
        log(
            f"dense   size {s.index}: hidden {s.hidden}, ffn {s.ffn}, {s.heads} heads, {s.flops_per_step / 1e9:.2f} "
            f"GFLOP/step ({s.flop_ratio:.2f} of the spec's model)"
        )
    shape = model_shape(spec.model)
    state = {
        "spec_path": str(spec_path),
        "raw": raw,
        "target_loss": target.loss,
        "target": dataclasses.asdict(target),
        "corpus": dict(data.stats),  # its fingerprint: a resume must train on the same token ids
        "name": name,
        "storage": storage,
        "created": time.time(),
        "model_shape": dataclasses.asdict(shape),
        "expected_masked": expected_masked(shape, spec.train.batch_size, spec.data.mask_prob),
        "dense_family": [dataclasses.asdict(s) for s in sizes],
        "family_configs": family,
        "reference": {**dataclasses.asdict(reference), "seconds_per_flop": reference.seconds_per_flop},
    }
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        _write_state(exp_dir / STATE_FILE, state)
        log.attach(exp_dir)
    except OSError as e:
        raise SpecError(f"tune.storage: cannot write the experiment to {exp_dir}: {e.strerror or e}") from None
    with _removed_unless_started(exp_dir), contextlib.closing(log) if owned else contextlib.nullcontext():
        return _fit(
            spec,
            raw,
            data,
            target,
            exp_dir,
            name,
            storage,
            log,
            num_cpus,
            family=family,
            price=reference.seconds_per_flop,
            verbose=verbose,
            callbacks=callbacks,
        )


def _console(log: Callable[[str], None]) -> Console:
    """The search's console: ``log`` itself when it is one, else a console whose lines go to ``log``."""
    return log if isinstance(log, Console) else Console(sink=None if log is print else log)


def _write_state(path: Path, state: dict) -> None:
    """Write ``sparsesearch.json`` whole or not at all (a crash mid-write leaves the old file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def started(exp_dir: Path) -> bool:
    """Whether any trial of the experiment has reported: before that, nothing in it is worth keeping."""
    return any(f.stat().st_size > 0 for f in exp_dir.glob("*/result.json"))


@contextlib.contextmanager
def _removed_unless_started(exp_dir: Path):
    """Delete a new experiment directory when the run fails before its first trial reports, so that a re-run
    with the same name starts afresh instead of meeting a half-made experiment."""
    try:
        yield
    except BaseException:
        if exp_dir.is_dir() and not started(exp_dir):
            shutil.rmtree(exp_dir, ignore_errors=True)
        raise


def resume_search(
    exp_dir: str | Path,
    *,
    log: Callable[[str], None] = print,
    num_cpus: int | None = None,
    address: str | None = None,
    more: int = 0,
    verbose: bool = False,
) -> Path:
    """Continue an interrupted experiment: finished trials are kept, unfinished ones resume from their
    checkpoints, the searcher continues from its saved state. An experiment stopped before Ray Tune saved its
    first state starts its search afresh (no trial had run). ``more`` > 0 extends a finished search by that many
    sparse trials, drawn by the sampler from the same study (it learns from every earlier trial)."""
    _quiet_ray_logs(verbose)
    owned = not isinstance(log, Console)
    log = _console(log)
    exp_dir = Path(exp_dir).expanduser().resolve()
    state = read_state(exp_dir)
    raw = state["raw"]
    if address:
        raw = {**raw, "tune": {**(raw.get("tune") or {}), "address": address}}
    spec = spec_from_dict(raw)
    check_spec(spec, raw)
    target = _stored_target(state)
    family: list[dict] | None = None
    started_tune = (exp_dir / TUNER_FILE).is_file()
    if more:
        if spec.search.sampler == "grid":
            raise SpecError(f"{exp_dir}: a grid search ran every combination of its grid; it cannot be extended")
        if not started_tune:
            raise SpecError(f"{exp_dir}: the search never started; resume it without --num-samples first")
        unfinished = _unfinished(exp_dir)
        if unfinished:
            raise SpecError(
                f"{exp_dir}: {unfinished} trial(s) unfinished; finish them with `sparsesearch resume {exp_dir}`, "
                "then extend the search"
            )
        family = []
        raw = with_values(raw, {"search.num_samples": spec.search.num_samples + more})
        state = {**state, "raw": raw, "extensions": [*state.get("extensions", []), {"trials": more, "at": time.time()}]}
        _write_state(exp_dir / STATE_FILE, state)
    elif not started_tune:
        family = state.get("family_configs")
        if not isinstance(family, list):
            raise SpecError(f"{exp_dir}: experiment stopped before its first trial and predates restarts; run it again")
        (exp_dir / STUDY_FILE).unlink(missing_ok=True)  # its trials were never run
    data = prepare_data(spec.data, spec.model)
    stored = (state.get("corpus") or {}).get("fingerprint")
    if stored and stored != data.fingerprint:
        raise SpecError(
            f"{exp_dir}: the corpus here (fingerprint {data.fingerprint}: {data.stats['source']}) is not the one the "
            f"experiment was made on (fingerprint {stored}); resuming would mix trials on different data"
        )
    if not stored:
        log(f"note    this experiment predates corpus fingerprints: it resumes on corpus {data.fingerprint}")
    how = f" with {more} more trials" if more else (" from the start" if family is not None else "")
    log(f"resuming {exp_dir} (target {target.describe()}){how}")
    price = (state.get("reference") or {}).get("seconds_per_flop")  # older experiments: wall-clock net time
    log.attach(exp_dir)
    with contextlib.closing(log) if owned else contextlib.nullcontext():
        return _fit(
            spec,
            raw,
            data,
            target,
            exp_dir,
            exp_dir.name,
            str(exp_dir.parent),
            log,
            num_cpus,
            family=family,
            extra=more,
            price=price,
            verbose=verbose,
        )


def _unfinished(exp_dir: Path) -> int:
    """Trials of the experiment without a final status."""
    df = load_results(exp_dir)
    return int((df["status"] == UNFINISHED).sum())


def read_state(exp_dir: Path) -> dict:
    """An experiment's ``sparsesearch.json``, checked to hold what ``resume`` needs."""
    state_file = exp_dir / STATE_FILE
    if not state_file.is_file():
        raise SpecError(f"{exp_dir}: not a sparsesearch experiment (no {STATE_FILE})")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"{state_file}: unreadable, cannot resume ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("raw"), dict):
        raise SpecError(f"{state_file}: not an experiment state (no spec in it), cannot resume")
    try:
        _stored_target(state)
    except (KeyError, TypeError, ValueError):
        raise SpecError(f"{state_file}: its target is missing or malformed, cannot resume") from None
    return state


def _stored_target(state: dict) -> Target:
    """The target an experiment was started with (older experiments stored its loss alone)."""
    if "target" in state:
        t = state["target"]
        return Target(tuple(t["losses"]), t["objective"], t["source"], t.get("path"))
    return Target((float(state["target_loss"]),), 0, "stored")


def _storage_path(storage: str) -> str:
    """The storage directory as an absolute path (a URI is refused by the spec's rules)."""
    return str(Path(storage).expanduser().resolve())


def _fit(
    spec: Spec,
    raw: dict,
    data,
    target: Target,
    exp_dir: Path,
    name: str,
    storage: str,
    log: Console,
    num_cpus: int | None,
    *,
    family: list[dict] | None,
    extra: int = 0,
    price: float | None = None,
    verbose: bool = False,
    callbacks: Sequence[tune.Callback] = (),
) -> Path:
    """Start (``family``: the dense family's configs) or, with ``family=None``, restore the Ray Tune run; with
    ``extra`` > 0, run that many more sparse trials in the experiment (same study, no family). ``price``: the
    reference's seconds per dense FLOP (``train.reference``), None for wall-clock net time."""
    _init_ray(spec.tune.address, num_cpus, verbose)
    unit_flops = dense_step_flops(spec)
    gpus = gpus_per_trial(spec, float(ray.cluster_resources().get("GPU", 0.0)))
    if spec.tune.gpus_per_trial is None and gpus > 0:
        log(
            f"gpus    tune.gpus_per_trial not set and the cluster has GPUs: each trial gets {gpus:g} GPU "
            f"(set tune.gpus_per_trial to change it, or train.device: cpu to train on CPUs)"
        )
    trainable = _trainable(spec, raw, data, target, unit_flops, gpus, price)
    total = (extra or spec.search.num_samples) + len(family or [])
    callbacks = [
        SearchProgress(log, total, verbose=verbose, objective=spec.search.objective),
        StopOnStorageFailure(exp_dir),
        *logger_callbacks(spec.tune.callbacks, exp_dir),
        *callbacks,
    ]
    if family is None:
        tuner = _restored(exp_dir, trainable, callbacks)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(spec, raw, exp_dir, name, family, len(target.losses), start=not extra),
                scheduler=_scheduler(spec, unit_flops),
                num_samples=(extra or spec.search.num_samples) + len(family),
                # A new worker process per trial costs seconds of imports and set-up.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                verbose=0,
                callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=spec.tune.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    what = f"{extra} more sparse trials" if extra else f"{spec.search.num_samples} sparse trials + the dense family"
    log(f"search  {what}, {spec.tune.max_concurrent} at a time; results in {exp_dir}")
    fit_or_stop(tuner, exp_dir)
    if spec.search.confirm.top > 0:
        _confirm(spec, exp_dir, trainable, log, verbose)
    return exp_dir


def _restored(exp_dir: Path, trainable, callbacks: list) -> tune.Tuner:
    """Ray Tune's run of ``exp_dir``, restored from its saved state (finished trials kept, the rest resumed), with
    this process's ``callbacks`` (the stored ones were pickled without their console and log file)."""
    try:
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, resume_errored=True)
    except Exception as e:  # Ray raises many types for a damaged state (pickle, pyarrow, KeyError, ...)
        raise SpecError(
            f"{exp_dir}: Ray Tune's saved state cannot be restored ({type(e).__name__}: {str(e)[:200]}); the "
            f"stored trials can still be read with `sparsesearch export {exp_dir}`"
        ) from None
    local = getattr(tuner, "_local_tuner", None)  # Tune has no public way to give a restored run new callbacks
    if local is not None and hasattr(local, "get_run_config"):
        local.get_run_config().callbacks = callbacks
    return tuner


def _confirm(spec: Spec, exp_dir: Path, trainable, log: Console, verbose: bool) -> None:
    """Re-run the best sparse configurations and the best dense of each size on more seeds
    (``results.confirm``); an interrupted confirmation continues where it stopped."""
    cdir = exp_dir / CONFIRM_DIR
    conf = spec.search.confirm
    if (cdir / TUNER_FILE).exists():
        total = len(json.loads((cdir / STATE_FILE).read_text()).get("confirms", [])) * conf.seeds
        tuner = _restored(cdir, trainable, _confirm_callbacks(spec, exp_dir, log, total, verbose))
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
