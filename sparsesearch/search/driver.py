"""The search driver: run and resume a search. Optuna (define-by-run) inside Ray Tune's OptunaSearch, ASHA at
equal compute over the sparse trials (``schedulers``), a dense family in every experiment, a confirmation on more
seeds (``confirm_run``); Ray's set-up is ``ray_setup``, the experiment's own state file ``state``.

Experiment directory (``tune.storage / name``): Ray Tune's own state and trial folders, ``study.db`` (the
Optuna study, SQLite: ``optuna-dashboard sqlite:///.../study.db``) and ``sparsesearch.json`` (the spec, the
resolved target and what ``resume`` needs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from ..checks import check_spec, dense_step_flops, load_checked
from ..data.batches import describe_data, prepare_data
from ..experiment import (
    EXPERIMENT_FORMAT,
    STATE_FILE,
    STUDY_FILE,
    TUNER_FILE,
    encode_value,
)
from ..model.embedding import model_shape
from ..model.flops import expected_masked
from ..results.format import plural
from ..spec import Spec, SpecError, with_values
from ..training.reference import measure_reference
from ..training.target import Target, resolve_target
from .confirm_run import confirm
from .family import plan_family
from .loggers import logger_callbacks
from .progress import Console, SearchProgress
from .ray_setup import init_ray, quiet_ray_logs, restored_tuner, storage_path
from .schedulers import WithDenseFamily, make_scheduler
from .space import define_by_run, make_sampler
from .state import read_state, removed_unless_started, stored_target, unfinished_trials, write_state
from .storage_guard import StopOnStorageFailure, fit_or_stop
from .study_feed import StudyFeed
from .trial import run_trial


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
    params = check_spec(spec)
    quiet_ray_logs(verbose)
    owned = not isinstance(log, Console)  # a caller's console stays open for what it prints after
    log = _console(log)
    name = spec.tune.name or f"{Path(spec_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = storage_path(spec.tune.storage)
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
            f"dense   size {s.index}: {plural(s.layers or spec.model.num_layers, 'layer')}, hidden {s.hidden}, "
            f"ffn {s.ffn}, {plural(s.heads, 'head')}, {s.flops_per_step / 1e9:.2f} GFLOP/step "
            f"({s.flop_ratio:.2f} of the spec's model); lr " + ", ".join(f"{lr:.3g}" for lr in sorted(s.lrs))
        )
    shape = model_shape(spec.model)
    state = {
        "format": EXPERIMENT_FORMAT,
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
        write_state(exp_dir / STATE_FILE, state)
        log.attach(exp_dir)
    except OSError as e:
        raise SpecError(f"tune.storage: cannot write the experiment to {exp_dir}: {e.strerror or e}") from None
    with removed_unless_started(exp_dir), contextlib.closing(log) if owned else contextlib.nullcontext():
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
    quiet_ray_logs(verbose)
    owned = not isinstance(log, Console)
    log = _console(log)
    exp_dir = Path(exp_dir).expanduser().resolve()
    state = read_state(exp_dir)
    raw = state["raw"]
    if address:
        raw = {**raw, "tune": {**(raw.get("tune") or {}), "address": address}}
    spec = load_checked(raw).spec
    target = stored_target(state)
    family: list[dict] | None = None
    started_tune = (exp_dir / TUNER_FILE).is_file()
    if more:
        if spec.search.sampler == "grid":
            raise SpecError(f"{exp_dir}: a grid search ran every combination of its grid; it cannot be extended")
        if not started_tune:
            raise SpecError(f"{exp_dir}: the search never started; resume it without --num-samples first")
        unfinished = unfinished_trials(exp_dir)
        if unfinished:
            raise SpecError(
                f"{exp_dir}: {unfinished} trial(s) unfinished; finish them with `sparsesearch resume {exp_dir}`, "
                "then extend the search"
            )
        family = []
        raw = with_values(raw, {"search.num_samples": spec.search.num_samples + more})
        state = {**state, "raw": raw, "extensions": [*state.get("extensions", []), {"trials": more, "at": time.time()}]}
        write_state(exp_dir / STATE_FILE, state)
    elif not started_tune:
        family = state["family_configs"]
        if not isinstance(family, list):  # not recorded by the first format
            raise SpecError(f"{exp_dir}: experiment stopped before its first trial and predates restarts; run it again")
        (exp_dir / STUDY_FILE).unlink(missing_ok=True)  # its trials were never run
    data = prepare_data(spec.data, spec.model)
    stored = (state["corpus"] or {}).get("fingerprint")
    if stored and stored != data.fingerprint:
        raise SpecError(
            f"{exp_dir}: the corpus here (fingerprint {data.fingerprint}: {data.stats['source']}) is not the one the "
            f"experiment was made on (fingerprint {stored}); resuming would mix trials on different data"
        )
    if not stored:
        log(f"note    this experiment predates corpus fingerprints: it resumes on corpus {data.fingerprint}")
    how = f" with {more} more trials" if more else (" from the start" if family is not None else "")
    log(f"resuming {exp_dir} (target {target.describe()}){how}")
    price = (state["reference"] or {}).get("seconds_per_flop")  # none recorded: wall-clock net time
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
    reference's seconds per dense FLOP (``training.reference``), None for wall-clock net time."""
    init_ray(spec.tune.address, num_cpus, verbose)
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
        tuner = restored_tuner(exp_dir, trainable, callbacks)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=_searcher(spec, raw, exp_dir, name, family, len(target.losses), start=not extra),
                scheduler=make_scheduler(spec, unit_flops),
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
        confirm(spec, exp_dir, trainable, log, verbose)
    return exp_dir
