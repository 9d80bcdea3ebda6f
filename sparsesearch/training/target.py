"""Resolve ``target.loss`` into the rungs of the target ladder: numbers from the spec, or ``auto``: the held-out
losses of one dense reference run.

The reference run trains the spec's model, data and train settings densely for the last rung's
``target.dense_steps`` (no time budget) and reads the held-out loss at each rung's step. It is cached by
everything that can change those numbers (model, data, masking, optimisation settings, seed, dense_steps, and the
*resolved* precision: an ``auto`` precision that means bf16 on one machine and fp32 on another gives two cache
entries), so every trial of a search chases the same targets and the reference runs once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..data.batches import TokenizedData, cache_root
from ..definitions import DIVERGED
from ..spec import Spec, SpecError
from .precision import pick_device, resolve_precision
from .trainer import Trainer

# Settings that do not change the loss after dense_steps steps (budget, eval cadence, where it runs).
_IRRELEVANT_TRAIN_KEYS = ("max_steps", "max_time_s", "eval_every", "device", "num_threads", "precision")
TARGET_FORMAT_VERSION = 3  # 2: keyed by the resolved precision; 3: by the corpus fingerprint


@dataclass(frozen=True)
class Target:
    """The rungs of the target ladder (held-out losses, easiest first) and where they came from."""

    losses: tuple[float, ...]
    objective: int  # index of the objective rung
    source: str  # spec | cached | computed
    path: str | None = None  # the cache file for auto targets

    @property
    def loss(self) -> float:
        """The objective rung's loss."""
        return self.losses[self.objective]

    def describe(self) -> str:
        """The rungs in one line, the objective marked."""
        return ", ".join(
            f"{v:.4f}" + (" (objective)" if i == self.objective and len(self.losses) > 1 else "")
            for i, v in enumerate(self.losses)
        )


def reference_spec(spec: Spec) -> Spec:
    """The dense run that defines the auto target."""
    return dataclasses.replace(
        spec,
        train=dataclasses.replace(spec.train, max_steps=spec.target.rung_steps[-1], max_time_s=None),
        sparsity=dataclasses.replace(spec.sparsity, method="dense"),
    )


def run_precision(spec: Spec) -> str:
    """The precision a run of ``spec`` uses on this machine (``training.precision`` resolved for its device)."""
    return resolve_precision(spec.train.precision, pick_device(spec.train.device))


def target_key(spec: Spec, data: TokenizedData) -> str:
    """The cache key of the auto target: everything that can change its value."""
    train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in _IRRELEVANT_TRAIN_KEYS}
    ident = {
        "version": TARGET_FORMAT_VERSION,
        "model": dataclasses.asdict(spec.model),
        "data": data.fingerprint,  # the corpus fingerprint: the token ids both splits hold
        "tokenizer": data.tokenizer.fingerprint,
        "mask_prob": spec.data.mask_prob,
        "train": train,
        "dense_steps": list(spec.target.dense_steps)
        if isinstance(spec.target.dense_steps, tuple)
        else spec.target.dense_steps,
        "precision": run_precision(spec),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def target_path(spec: Spec, data: TokenizedData) -> Path:
    """The cache file of the auto target of ``spec`` on ``data``."""
    return cache_root(spec.data) / "targets" / f"{target_key(spec, data)}.json"


def rung_eval_steps(spec: Spec) -> tuple[int, ...]:
    """The steps a run of ``spec`` also evaluates at: an ``auto`` ladder's rungs are read at their dense steps, so
    a run evaluates there too (a dense run of the target's own configuration then crosses each rung exactly
    there); none for losses given in the spec."""
    return spec.target.rung_steps if spec.target.loss == "auto" else ()


def resolve_target(spec: Spec, data: TokenizedData, *, log=None) -> Target:
    """The target rungs for ``spec``: from the spec, from the cache, or by running the dense reference once."""
    objective = spec.target.objective_index
    if spec.target.loss != "auto":
        losses = spec.target.loss if isinstance(spec.target.loss, tuple) else (float(spec.target.loss),)
        return Target(tuple(losses), objective, "spec")
    path = target_path(spec, data)
    if path.is_file():
        record = json.loads(path.read_text())
        return Target(tuple(record.get("losses", [record["loss"]])), objective, "cached", str(path))
    steps = spec.target.rung_steps
    if log:
        log(f"computing the auto target: dense reference run of {steps[-1]} steps ...")
    ref = reference_spec(spec)
    trainer = Trainer(ref, data, None, eval_steps=steps)
    started = time.perf_counter()
    # A bar on a terminal: this run takes minutes, and before it nothing else would move on the screen.
    with tqdm(total=steps[-1], desc="auto target", unit="step", disable=not sys.stderr.isatty(), leave=False) as bar:
        for row in trainer.run():
            bar.update(row["step"] - bar.n)
    result = trainer.result
    assert result is not None  # set when run() ends
    if log:
        log(f"computed the auto target in {time.perf_counter() - started:.0f} s")
    if result.status == DIVERGED:
        raise SpecError("target.loss: the dense reference run diverged; lower train.lr or set target.loss")
    at_step = {h["step"]: h["eval_loss"] for h in result.history}
    losses = tuple(at_step[s] for s in steps)
    if any(b >= a for a, b in itertools.pairwise(losses)):
        raise SpecError(
            f"target.dense_steps: the dense reference's loss did not fall from rung to rung "
            f"({', '.join(f'{s} steps: {v:.4f}' for s, v in zip(steps, losses))}); choose rungs "
            "further apart"
        )
    record = {
        "loss": losses[-1],
        "losses": list(losses),
        "dense_steps": list(steps) if len(steps) > 1 else steps[0],
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
    return Target(losses, objective, "computed", str(path))
