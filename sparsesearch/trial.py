"""The Ray Tune trainable: sampled parameters -> spec -> Trainer -> tune.report with checkpoints.

Every report carries every metric (a missing one crashes a Ray Tune run) and never NaN (Optuna would leave the
trial RUNNING forever): unreached trials report their projected objective, diverged ones infinity.
"""

from __future__ import annotations

import gc
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from ray import tune

from .process import peak_rss_mb, reset_peak_rss, rss_mb, set_threads, trim_heap
from .results import REFERENCE_KEY
from .space import trial_overrides
from .spec import SpecError, spec_from_dict
from .trainer import Trainer

CHECKPOINT_FILE = "trainer.pt"
METRICS = ("step", "budget", "eval_loss", "train_loss", "train_time_s", "flops", "dense_flops", "flop_ratio",
           "net_time_s", "net_flops", "time_to_target_s", "objective", "avg_sparsity", "target_loss",
           "reached", "projected", "diverged", "status", "method", "level", "node", "precision",
           # where a trial's wall time and memory go besides training (see benchmarks/orchestration_overhead.py)
           "startup_s", "eval_time_s", "report_s", "rss_mb", "peak_rss_mb")


def trial_spec(raw: dict, config: dict):
    """The spec of one trial: the experiment's spec with the sampled values, or the dense reference."""
    base = {k: v for k, v in raw.items() if k not in ("search", "tune")}
    if config.get(REFERENCE_KEY):
        return spec_from_dict({**base, "sparsity": {"method": "dense"}})
    return spec_from_dict(base, trial_overrides({k: v for k, v in config.items() if k != REFERENCE_KEY}))


def _finite(x: float) -> float:
    return x if not (isinstance(x, float) and math.isnan(x)) else math.inf


def run_trial(config: dict, *, raw: dict, data, target_loss: float, objective: str, budget_unit: str,
              dense_step_flops: float, threads: int) -> None:
    """Train one configuration to the target, reporting to Ray Tune after every evaluation."""
    started = time.perf_counter()
    gc.collect()  # the worker's previous trial (a reused actor): its trainer is a cycle of references
    trim_heap()  # ... and the heap memory it freed
    reset_peak_rss()  # peak_rss_mb is this trial's, also in a reused worker
    set_threads(threads)
    try:
        spec = trial_spec(raw, config)
    except SpecError as e:  # a combination of individually valid values that clashes: report, do not crash
        tune.report(_invalid_metrics(str(e), target_loss, config))
        return
    trainer = Trainer(spec, data, target_loss)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, or a resumed experiment
        with checkpoint.as_directory() as d:
            trainer.load_state_dict(torch.load(Path(d) / CHECKPOINT_FILE, map_location=trainer.device,
                                               weights_only=False))
    cost = {"startup_s": time.perf_counter() - started, "report_s": 0.0}
    for row in trainer.run():
        if row["step"] == 0 and row["status"] == "running":
            continue  # nothing trained yet: no train loss to report
        t0 = time.perf_counter()
        trim_heap()
        metrics = _metrics(trainer, row, objective, budget_unit, dense_step_flops)
        metrics.update(cost, eval_time_s=trainer.eval_time, rss_mb=rss_mb(), peak_rss_mb=peak_rss_mb())
        with tempfile.TemporaryDirectory() as d:
            torch.save(trainer.state_dict(), os.path.join(d, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        cost["report_s"] += time.perf_counter() - t0  # this report's own cost shows in the next one


def _metrics(trainer: Trainer, row: dict, objective: str, budget_unit: str, dense_step_flops: float) -> dict:
    obj = trainer.objective_so_far()
    sp = trainer.spec.sparsity
    train_loss = row["train_loss"] if row["train_loss"] is not None else row["eval_loss"]
    budget = row["net_flops"] if budget_unit == "flops" else row["net_flops"] / dense_step_flops
    return {
        "step": row["step"], "budget": budget, "eval_loss": _finite(row["eval_loss"]),
        "train_loss": _finite(train_loss), "train_time_s": row["train_time_s"], "flops": row["flops"],
        "dense_flops": row["dense_flops"], "flop_ratio": _finite(row["flop_ratio"]),
        "net_time_s": _finite(obj["net_time_s"]), "net_flops": _finite(obj["net_flops"]),
        "time_to_target_s": _finite(obj["time_to_target_s"]),
        "objective": _finite(obj["net_time_s"] if objective == "net_time" else obj["net_flops"]),
        "avg_sparsity": row["avg_sparsity"], "target_loss": trainer.target,
        "reached": int(row["status"] == "reached"), "projected": int(obj["projected"]),
        "diverged": int(row["status"] == "diverged"), "status": row["status"],
        "method": sp.method, "level": sp.level, "node": _node(), "precision": trainer.precision.name,
    }


def _node() -> str:
    """The Ray node this trial runs on (its id), so results show how trials spread over a cluster."""
    import ray
    return ray.get_runtime_context().get_node_id()


def _invalid_metrics(message: str, target_loss: float, config: dict) -> dict:
    return {"step": 0, "budget": 0.0, "eval_loss": math.inf, "train_loss": math.inf, "train_time_s": 0.0,
            "flops": 0.0, "dense_flops": 0.0, "flop_ratio": math.inf, "net_time_s": math.inf,
            "net_flops": math.inf, "time_to_target_s": math.inf, "objective": math.inf, "avg_sparsity": 0.0,
            "target_loss": target_loss, "reached": 0, "projected": 1, "diverged": 0,
            "status": f"invalid: {message}", "method": str(config.get("sparsity.method", "")),
            "level": float(config.get("sparsity.level", 0.0) or 0.0), "node": _node(), "precision": "",
            "startup_s": 0.0, "eval_time_s": 0.0, "report_s": 0.0, "rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
