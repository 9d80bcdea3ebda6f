"""An experiment as stored on disk, shared by the search that writes it and the results that read it.

- the files of an experiment directory;
- what every trial reports (``TrialReport``; Ray Tune stores one JSON row per report in ``result.json``);
- how a trial's configuration (the sampled values, or the dense reference) becomes its spec.

Pure Python: reading an experiment never needs torch or Ray.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from .definitions import RUNNING
from .spec import Spec, spec_from_dict, with_values

STATE_FILE = "sparsesearch.json"  # the spec, the resolved target and what `resume` needs
STUDY_FILE = "study.db"  # the Optuna study (SQLite)
TUNER_FILE = "tuner.pkl"  # Ray Tune's own state: present once the search has started
CHECKPOINT_FILE = "trainer.pt"  # inside each of a trial's checkpoints
REFERENCE_KEY = "reference"  # config key of the dense reference trial of older experiments
ROLE_KEY = "role"  # config key of a dense family trial: its role
DENSE_FAMILY, SPARSE = "dense_family", "sparse"  # the roles of trials
SIZE_KEY, CONFIG_KEY = "family_size", "family_config"  # a dense family trial's size (0: the spec's model), config
CONFIRM_OF = "confirm_of"  # config key of a confirmation run: the search trial it repeats on another seed
CONFIRM_DIR = "confirm"  # the confirmation runs: an experiment directory of its own inside the experiment
META_KEYS = (REFERENCE_KEY, ROLE_KEY, SIZE_KEY, CONFIG_KEY, CONFIRM_OF)  # config keys that are not spec keys


# The shape of ``sparsesearch.json``. 1: everything written before the version was recorded (a target may be
# one ``target_loss``; the price reference, the corpus, the model shape and the family's configs may be missing).
# 2: the version recorded, a ladder of targets, the corpus with its fingerprint, the price with its machine.
EXPERIMENT_FORMAT = 2


def upgrade_state(state: dict) -> dict:
    """An experiment's state in the current format, from any older one: the one place that knows the history.
    What an older experiment never recorded is present as None, so that readers ask one question (is it known?)
    instead of knowing which version wrote what. Raises ``KeyError``/``TypeError``/``ValueError`` on a state too
    damaged to say what its target was."""
    out = dict(state)
    version = out.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version < 2:  # unrecorded (or damaged): 1
        if not isinstance(out.get("target"), dict) and out.get("target_loss") is not None:
            out["target"] = {"losses": [float(out["target_loss"])], "objective": 0, "source": "stored", "path": None}
        for key in ("reference", "corpus", "model_shape", "expected_masked", "family_configs", "dense_family"):
            out.setdefault(key, None)
    out["format"] = EXPERIMENT_FORMAT
    return out


class StorageError(Exception):
    """The experiment directory cannot be written (full, read-only, gone): the search stopped, resumable."""


@dataclass
class TrialReport:
    """One report of a trial, after an evaluation. Every report carries every field (a missing metric stops a
    Ray Tune run) and no NaN (Optuna would leave the trial running forever): an unreached trial reports its
    projected objective, a diverged or invalid one infinity. The defaults are those of a trial that did not
    train."""

    step: int = 0
    budget: float = 0.0  # what ASHA counts: dense-equivalent steps or net FLOPs so far (search.asha.unit)
    eval_loss: float = math.inf
    train_loss: float = math.inf
    train_time_s: float = 0.0
    flops: float = 0.0
    dense_flops: float = 0.0
    flop_ratio: float = math.inf
    net_time_s: float = math.inf  # dense-equivalent seconds of the experiment's reference (training.trainer)
    wall_net_time_s: float = math.inf  # wall-clock time-to-target x FLOP ratio (follows the node's load)
    method_overhead: float = 1.0  # the method's own time overhead, measured side by side in the trial
    net_flops: float = math.inf
    time_to_target_s: float = math.inf
    objective: float = math.inf  # what the search minimises: net_time_s or net_flops
    avg_sparsity: float = 0.0
    target_loss: float | None = None
    reached: int = 0
    projected: int = 1
    diverged: int = 0
    status: str = RUNNING  # a status of sparsesearch.definitions
    message: str = ""  # why a trial is invalid
    method: str = ""
    level: float = 0.0
    node: str = ""  # the Ray node it ran on
    trial_number: int = 0  # its number in the experiment (``trial_number``); 0 outside a search
    precision: str = ""
    corpus: str = ""  # the fingerprint of the corpus it trained on (data.batches.corpus_fingerprint)
    # Where a trial's wall time and memory go besides training (benchmarks/orchestration_overhead.py).
    startup_s: float = 0.0
    eval_time_s: float = 0.0
    report_s: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    # Per rung of the target ladder (``Trainer.rungs``): stored flat as rung<i>_<key> (RUNG_KEYS).
    rungs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as Ray Tune stores it: a flat dict (a rung's missing numbers are infinite, never NaN)."""
        out = dataclasses.asdict(self)
        for i, rung in enumerate(out.pop("rungs")):
            for k in RUNG_KEYS:
                v = rung.get(k)
                out[rung_key(i, k)] = int(v) if k == "reached" else (math.inf if v is None else v)
        return out


METRICS = tuple(f.name for f in dataclasses.fields(TrialReport) if f.name != "rungs")
RUNG_KEYS = ("loss", "reached", "steps", "train_time_s", "flops", "net_time_s", "wall_net_time_s", "net_flops")


def trial_number(dir_name: str) -> int:
    """A trial's number from its folder's name (Ray Tune's ``run_trial_<id>_<n>_...``: n counts the trials of an
    experiment in the order they were created, from 1); 0 when the name has none."""
    parts = dir_name.split("_")
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0


def trial_label(number: Any, trial_id: str) -> str:
    """The one name of a trial that the console, the report, trials.csv and the Optuna study all show."""
    return f"trial {number} ({trial_id})" if isinstance(number, int) and number > 0 else f"trial {trial_id}"


def rung_key(rung: int, key: str) -> str:
    """The flat name of a rung's metric in a report or a table, e.g. rung1_net_flops."""
    return f"rung{rung}_{key}"


def encode_value(value: Any) -> Any:
    """A searched value as Optuna can store it: list-valued choices (e.g. dense_groups) travel as JSON text."""
    return json.dumps(list(value)) if isinstance(value, (tuple, list)) else value


def decode_value(value: Any) -> Any:
    """A sampled value as the spec wants it (inverse of ``encode_value``)."""
    if isinstance(value, str) and value.startswith("["):
        return tuple(json.loads(value))
    return value


def base_raw(raw: dict) -> dict:
    """The part of an experiment's spec that a trial trains with (its search and tune sections left out)."""
    return {k: v for k, v in raw.items() if k not in ("search", "tune")}


def role(config: dict) -> str:
    """A trial's role: dense_family (a dense baseline, the old dense reference included) or sparse."""
    return DENSE_FAMILY if config.get(ROLE_KEY) == DENSE_FAMILY or config.get(REFERENCE_KEY) else SPARSE


def family_size(config: dict) -> int | None:
    """A dense family trial's size (0: the spec's own model); None for a sparse trial."""
    if role(config) != DENSE_FAMILY:
        return None
    return int(config.get(SIZE_KEY, 0))


def trial_spec(raw: dict, config: dict) -> Spec:
    """The spec of one trial: the experiment's spec with the trial's values (a dense family trial: dense, at its
    size, with its values of the searched keys).

    Raises ``SpecError`` when the values clash with each other or with the rest of the spec."""
    base = base_raw(raw)
    values = {k: decode_value(v) for k, v in config.items() if k not in META_KEYS}
    if role(config) == DENSE_FAMILY:
        base = {**base, "sparsity": {"method": "dense"}}
    return spec_from_dict(with_values(base, values))
