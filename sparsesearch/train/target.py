"""Resolve ``target.loss``: a number from the spec, or ``auto``: the held-out loss of a dense reference run.

The reference run trains the spec's model, data and train settings densely for ``target.dense_steps`` steps (no
time budget) and takes the held-out loss at its last step. It is cached by everything that can change that
number (model, data, masking, optimisation settings, seed, dense_steps, and the *resolved* precision: an
``auto`` precision that means bf16 on one machine and fp32 on another gives two cache entries), so every trial
of a search chases the same target and the reference runs once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.batches import TokenizedData, cache_root
from ..spec import Spec, SpecError
from .precision import pick_device, resolve_precision
from .trainer import train

# Settings that do not change the loss after dense_steps steps (budget, eval cadence, where it runs).
_IRRELEVANT_TRAIN_KEYS = ("max_steps", "max_time_s", "eval_every", "device", "num_threads", "precision")
TARGET_FORMAT_VERSION = 2  # 2: keyed by the resolved precision


@dataclass(frozen=True)
class Target:
    """The target loss and where it came from."""

    loss: float
    source: str  # spec | cached | computed
    path: str | None = None  # the cache file for auto targets


def reference_spec(spec: Spec) -> Spec:
    """The dense run that defines the auto target."""
    return dataclasses.replace(
        spec,
        train=dataclasses.replace(spec.train, max_steps=spec.target.dense_steps, max_time_s=None),
        sparsity=dataclasses.replace(spec.sparsity, method="dense"),
    )


def run_precision(spec: Spec) -> str:
    """The precision a run of ``spec`` uses on this machine (``train.precision`` resolved for its device)."""
    return resolve_precision(spec.train.precision, pick_device(spec.train.device))


def target_key(spec: Spec, data: TokenizedData) -> str:
    """The cache key of the auto target: everything that can change its value."""
    train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in _IRRELEVANT_TRAIN_KEYS}
    ident = {
        "version": TARGET_FORMAT_VERSION,
        "model": dataclasses.asdict(spec.model),
        "data": data.fingerprint,
        "mask_prob": spec.data.mask_prob,
        "train": train,
        "dense_steps": spec.target.dense_steps,
        "precision": run_precision(spec),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def target_path(spec: Spec, data: TokenizedData) -> Path:
    """The cache file of the auto target of ``spec`` on ``data``."""
    return cache_root(spec.data) / "targets" / f"{target_key(spec, data)}.json"


def resolve_target(spec: Spec, data: TokenizedData, *, log=None) -> Target:
    """The target loss for ``spec``: from the spec, from the cache, or by running the dense reference once."""
    if spec.target.loss != "auto":
        return Target(float(spec.target.loss), "spec")
    path = target_path(spec, data)
    if path.is_file():
        return Target(float(json.loads(path.read_text())["loss"]), "cached", str(path))
    if log:
        log(f"computing the auto target: dense reference run of {spec.target.dense_steps} steps ...")
    ref = reference_spec(spec)
    result = train(ref, data, target_loss=None)
    if result.status == "diverged":
        raise SpecError("target.loss: the dense reference run diverged; lower train.lr or set target.loss")
    record = {
        "loss": result.final_eval_loss,
        "dense_steps": spec.target.dense_steps,
        "train_time_s": result.train_time_s,
        "device": result.device,
        "precision": result.precision,
        "created": time.time(),
        "spec": ref.to_dict(),
        "history": [{k: h[k] for k in ("step", "eval_loss", "train_time_s")} for h in result.history],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return Target(result.final_eval_loss, "computed", str(path))
