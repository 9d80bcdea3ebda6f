"""Logger callbacks a spec names in ``tune.callbacks``: Ray Tune's own integrations, imported only when named.

Ray Tune already writes TensorBoard, CSV and JSON files of every trial (into the trial folders, and into its
session folder): ``tensorboard`` is accepted for clarity and adds nothing. ``mlflow`` logs every trial as an MLflow
run (default: a SQLite store in the experiment, ``EXPERIMENT/mlflow.db``; ``MLFLOW_TRACKING_URI`` overrides it);
``wandb`` logs to Weights & Biases, offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads later).
"""

from __future__ import annotations

import os
from pathlib import Path

from ray import tune

from ..spec import SpecError

LOGGERS = ("tensorboard", "mlflow", "wandb")
MLFLOW_DB = "mlflow.db"  # the default MLflow store, in the experiment


def logger_callbacks(names: tuple[str, ...], exp_dir: Path) -> list[tune.Callback]:
    """The callbacks of the named loggers for the experiment at ``exp_dir``."""
    out: list[tune.Callback] = []
    for name in names:
        if name == "mlflow":
            try:
                from ray.air.integrations.mlflow import MLflowLoggerCallback
            except ImportError as e:
                raise SpecError(f"tune.callbacks: mlflow needs its package: pip install mlflow ({e})") from None
            # MLflow 3 keeps its file store in maintenance mode: a SQLite file beside the Optuna study instead.
            uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(exp_dir / MLFLOW_DB).resolve()}"
            out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=exp_dir.name, save_artifact=False))
        elif name == "wandb":
            try:
                from ray.air.integrations.wandb import WandbLoggerCallback
            except ImportError as e:
                raise SpecError(f"tune.callbacks: wandb needs its package: pip install wandb ({e})") from None
            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_DIR", str(exp_dir))
            out.append(WandbLoggerCallback(project=exp_dir.name, group=exp_dir.name))
    return out
