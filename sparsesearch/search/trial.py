"""The Ray Tune trainable: a trial's configuration -> spec -> Trainer -> one ``TrialReport`` per evaluation,
each with a checkpoint."""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from ray import tune

from ..checks import checked_trial_spec
from ..definitions import DIVERGED, INVALID, REACHED, RUNNING, nan_to_inf
from ..experiment import CHECKPOINT_FILE, TrialReport, trial_number
from ..results.pareto import OBJECTIVES
from ..spec import SpecError
from ..training.target import Target, rung_eval_steps
from ..training.trainer import Trainer
from .process import peak_rss_mb, reset_peak_rss, rss_mb, set_threads, trim_heap


def run_trial(
    config: dict,
    *,
    raw: dict,
    data,
    target: Target,
    objective: str,
    budget_unit: str,
    dense_step_flops: float,
    threads: int,
    seconds_per_flop: float | None = None,
) -> None:
    """Train one configuration to the target, reporting to Ray Tune after every evaluation."""
    started = time.perf_counter()
    gc.collect()  # the worker's previous trial (a reused actor): its trainer is a cycle of references
    trim_heap()  # ... and the heap memory it freed
    reset_peak_rss()  # peak_rss_mb is this trial's, also in a reused worker
    set_threads(threads)
    number = trial_number(Path(tune.get_context().get_trial_dir() or "").name)
    try:
        spec = checked_trial_spec(raw, config)
    except SpecError as e:  # a combination of individually valid values that clashes: report, do not crash
        tune.report(_invalid_report(str(e), target.loss, config, number, data.fingerprint).to_dict())
        return
    try:
        trainer = Trainer(
            spec,
            data,
            target.losses,
            eval_steps=rung_eval_steps(spec),
            seconds_per_flop=seconds_per_flop,
        )
    except SpecError as e:  # e.g. a level that the fixed groups of this combination cannot meet
        tune.report(_invalid_report(str(e), target.loss, config, number, data.fingerprint).to_dict())
        return
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, or a resumed experiment
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(
                torch.load(Path(d) / CHECKPOINT_FILE, map_location=trainer.device, weights_only=False)
            )
    cost = {"startup_s": time.perf_counter() - started, "report_s": 0.0}
    for row in trainer.run():
        if row["step"] == 0 and row["status"] == RUNNING:
            continue  # nothing trained yet: no train loss to report
        t0 = time.perf_counter()
        trim_heap()
        report = _report(trainer, row, objective, budget_unit, dense_step_flops)
        report.startup_s, report.report_s = cost["startup_s"], cost["report_s"]
        report.trial_number, report.corpus = number, data.fingerprint
        report.eval_time_s, report.rss_mb, report.peak_rss_mb = trainer.eval_time, rss_mb(), peak_rss_mb()
        with tempfile.TemporaryDirectory() as d:
            torch.save(trainer.state_dict(), os.path.join(d, CHECKPOINT_FILE))
            tune.report(report.to_dict(), checkpoint=tune.Checkpoint.from_directory(d))
        cost["report_s"] += time.perf_counter() - t0  # this report's own cost shows in the next one


def _report(trainer: Trainer, row: dict, objective: str, budget_unit: str, dense_step_flops: float) -> TrialReport:
    obj = trainer.objective_so_far()
    sparsity = trainer.spec.sparsity
    train_loss = row["train_loss"] if row["train_loss"] is not None else row["eval_loss"]
    budget = row["net_flops"] if budget_unit == "flops" else row["net_flops"] / dense_step_flops
    return TrialReport(
        step=row["step"],
        budget=budget,
        eval_loss=nan_to_inf(row["eval_loss"]),
        train_loss=nan_to_inf(train_loss),
        train_time_s=row["train_time_s"],
        flops=row["flops"],
        dense_flops=row["dense_flops"],
        flop_ratio=nan_to_inf(row["flop_ratio"]),
        net_time_s=nan_to_inf(obj["net_time_s"]),
        wall_net_time_s=nan_to_inf(obj["wall_net_time_s"]),
        method_overhead=trainer.method_overhead(),
        net_flops=nan_to_inf(obj["net_flops"]),
        time_to_target_s=nan_to_inf(obj["time_to_target_s"]),
        objective=nan_to_inf(obj[OBJECTIVES[objective]]),
        avg_sparsity=row["avg_sparsity"],
        target_loss=trainer.target,
        reached=int(row["status"] == REACHED),
        projected=int(obj["projected"]),
        diverged=int(row["status"] == DIVERGED),
        status=row["status"],
        method=sparsity.method,
        level=sparsity.level,
        node=_node(),
        precision=trainer.precision.name,
        rungs=trainer.rungs(),
    )


def _node() -> str:
    """The Ray node this trial runs on (its id), so results show how trials spread over a cluster."""
    return ray.get_runtime_context().get_node_id()


def _invalid_report(message: str, target_loss: float, config: dict, number: int, corpus: str) -> TrialReport:
    return TrialReport(
        trial_number=number,
        corpus=corpus,
        target_loss=target_loss,
        status=INVALID,
        message=message,
        method=str(config.get("sparsity.method", "")),
        level=float(config.get("sparsity.level", 0.0) or 0.0),
        node=_node(),
        rss_mb=rss_mb(),
        peak_rss_mb=peak_rss_mb(),
    )
