"""Train one configuration until the held-out MLM loss reaches the target, a budget runs out, or it diverges.

Knows nothing about Ray: ``Trainer(...).run()`` yields one plain metric dict per evaluation; the final
``RunResult`` is in ``trainer.result``. Definitions (docs/ARCHITECTURE.md, "Definitions"):

* time-to-target: training wall seconds (evaluation excluded) until the held-out loss first reaches the target,
  interpolated linearly between the two evaluations that bracket it; steps and FLOPs are interpolated alike;
* FLOP ratio: cumulative FLOPs actually needed up to the target / the dense model's FLOPs for the same steps;
* net FLOPs = cumulative FLOPs up to the target;
* net time = time-to-target x FLOP ratio, in dense-equivalent seconds of one reference: net FLOPs priced at a
  reference's measured seconds per dense FLOP (``seconds_per_flop``, measured once per experiment), times the
  method's own overhead, measured side by side in this run: the time of whole training steps over the time of
  the steps without the sparsifier's work (CPU seconds of this process; on CUDA, synchronised wall seconds). A
  ratio of two clocks read in the same process barely moves when the machine is loaded, so the same configuration
  gets the same net time on a busy or an idle node. Without a reference, net time is the wall-clock one;
* wall net time = wall-clock time-to-target x FLOP ratio, reported beside it (it follows the machine's load).

Runs that stop without reaching the target report a *projected* time (``projected: true``): the remaining loss
gap divided by the rate at which the loss fell over the last quarter of the run (at least two evaluations),
added to the time spent; infinite when the loss was not falling. Diverged runs (non-finite loss) report
infinite times. Projected numbers are estimates for ranking only, never results.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..data.batches import Batches, TokenizedData
from ..definitions import DIVERGED, NOT_REACHED, REACHED, RUNNING, at_target
from ..model.embedding import resolve_model_dir, shared_token_embedding
from ..model.flops import Density, StepFlops, expected_masked, step_flops, weight_costs
from ..model.network import MLMModel, build_model
from ..model.shape import ModelShape
from ..model.units import live_units
from ..sparsity.sparsifier import Sparsifier
from ..spec import Spec, SpecError
from .precision import Precision, pick_device


@dataclass
class RunResult:
    """The outcome of one training run (see the module docstring for the definitions)."""

    status: str  # reached | not_reached | diverged (sparsesearch.definitions)
    reached_target: bool
    target_loss: float | None
    final_eval_loss: float
    best_eval_loss: float
    steps: int  # optimizer steps taken
    steps_to_target: float | None
    train_time_s: float  # training wall seconds, evaluation excluded
    time_to_target_s: float  # interpolated when reached, projected otherwise (see ``projected``)
    flop_ratio: float
    net_time_s: float  # dense-equivalent seconds (module docstring); wall_net_time_s without a reference
    net_flops: float
    dense_flops: float
    avg_sparsity: float
    projected: bool
    wall_net_time_s: float  # wall-clock time-to-target x FLOP ratio
    method_overhead: float  # whole steps' time over their time without the sparsifier's work (>= 1)
    seconds_per_flop: float | None  # the reference's price of a dense FLOP (None: none given)
    device: str
    precision: str  # resolved: fp32 | bf16 | fp16
    history: list[dict] = field(default_factory=list)
    rungs: list[dict] = field(default_factory=list)  # per rung of the target ladder (``Trainer.rungs``)

    def to_dict(self) -> dict:
        """The result as plain JSON-ready values."""
        return asdict(self)


KINDS = ("mask", "kept", "random")  # what the input holds at a labelled position: [MASK], the answer, another token
_AT_TARGET = ("step", "train_time_s", "flops", "dense_flops")  # interpolated at the target


class Trainer:
    """One training run of ``spec`` on prepared ``data`` towards its target(s).

    Args:
        targets: the rungs of the target ladder (held-out losses, easiest first), one loss, or None (run the whole
            budget). The run ends once it crossed every rung; the objective rung (``target.objective_rung`` when
            every rung is given, else the last) is what ``status``, the projection and the objective refer to.
        eval_steps: steps evaluated besides every ``train.eval_every`` (the auto target reads its rungs there).
        seconds_per_flop: the reference's measured seconds per dense training FLOP (``measure_reference``); net
            time is priced with it. None: net time is the wall-clock one.
        also_current: with ``train.eval_weights: ema``, every evaluation also scores the current weights
            (``eval_loss_current`` in the history), so one run shows what the average changed (the study uses it).
        by_kind: every evaluation also splits the evaluated weights' loss by what the input held at the labelled
            position (``KINDS``: ``eval_loss_mask``, ``eval_loss_kept``, ``eval_loss_random`` in the history):
            BERT's masking leaves 10% of them unchanged, where copying the input is the answer.
    """

    def __init__(
        self,
        spec: Spec,
        data: TokenizedData,
        targets: float | Sequence[float] | None,
        token_embedding: torch.Tensor | None = None,
        *,
        eval_steps: Iterable[int] = (),
        seconds_per_flop: float | None = None,
        also_current: bool = False,
        by_kind: bool = False,
    ):
        self.spec, self.data = spec, data
        self.also_current = also_current
        self.by_kind = by_kind
        self._kind_losses: dict[str, float] = {}  # the evaluated weights' loss by kind at the last evaluation
        self._eval_kinds: torch.Tensor | None = None  # index into KINDS of each labelled evaluation position
        self._current_loss = math.nan  # the current weights' loss at the last evaluation (``also_current``)
        self.seconds_per_flop = seconds_per_flop
        if targets is None:
            self.targets: tuple[float, ...] = ()
        elif isinstance(targets, (int, float)):
            self.targets = (float(targets),)
        else:
            self.targets = tuple(float(t) for t in targets)
        rungs = len(self.targets)
        self.objective = spec.target.objective_index if rungs == spec.target.rung_count else rungs - 1
        self.target = self.targets[self.objective] if rungs else None
        self.eval_steps = frozenset(eval_steps)
        tr = spec.train
        if tr.num_threads:
            torch.set_num_threads(tr.num_threads)
        self.device = pick_device(tr.device)
        self.precision = Precision.of(tr.precision, self.device)
        if token_embedding is None:
            token_embedding = shared_token_embedding(str(resolve_model_dir(spec.model.embedding)))
        if token_embedding.shape[0] != data.tokenizer.vocab_size:
            raise SpecError(
                f"model.embedding: embedding has {token_embedding.shape[0]} rows but the tokenizer "
                f"has {data.tokenizer.vocab_size} tokens"
            )
        self.model: MLMModel = build_model(spec.model, token_embedding, tr.seed, self.device)
        self.shape: ModelShape = self.model.shape
        self.batches = Batches(
            data,
            batch_size=tr.batch_size,
            mask_prob=spec.data.mask_prob,
            seed=tr.seed,
            eval_sequences=tr.eval_sequences,
        )
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        groups: list[dict] = [{"params": decay, "weight_decay": tr.weight_decay}]
        # sparsity.lr_scale: density: every sparsifiable weight in a group of its own, its rate scaled by its density.
        scaled = self.model.sparsifiable_weights() if spec.sparsity.lr_scale == "density" else {}
        if scaled:
            own = {id(p) for p in scaled.values()}
            groups[0]["params"] = [p for p in decay if id(p) not in own]
            groups += [{"params": [p], "weight_decay": tr.weight_decay, "name": n} for n, p in scaled.items()]
        groups.append({"params": no_decay, "weight_decay": 0.0})
        # One fused kernel for all parameters instead of a dozen small ops per parameter (same arithmetic).
        self.optimizer = torch.optim.AdamW(groups, lr=tr.lr, betas=(tr.adam_beta1, tr.adam_beta2), fused=True)
        self.scaler = self.precision.grad_scaler()
        self.sparsifier = Sparsifier(
            self.model,
            self.optimizer,
            spec.sparsity,
            seed=tr.seed,
            horizon=spec.sparsity.horizon_steps or spec.target.horizon,
            weight_cost=weight_costs(self.shape, tr.batch_size, self.expected_masked()),
            tokens_per_step=float(tr.batch_size * spec.model.seq_len),
        )
        # After the sparsifier: a density-scaled rate reads the densities of the moment at every step.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [self._group_lr_factor(g.get("name")) for g in self.optimizer.param_groups]
        )
        # train.eval_weights: ema. Evaluations use an exponential moving average of the weights (Polyak & Juditsky
        # 1992; as an anytime-fair evaluation, e.g. Kaddour et al. 2023), one copy of every trainable weight.
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.ema: list[torch.Tensor] | None = None
        if tr.eval_weights == "ema":
            self.ema = [p.detach().clone() for p in self._trainable]
        self.step = 0
        self.train_time = self.flops = self.dense_flops = 0.0  # training seconds, cumulative FLOPs
        self.decoder_flops = 0.0  # cumulative FLOPs of the frozen decoder's matmuls (part of ``flops``)
        self.eval_time = 0.0  # evaluation seconds (excluded from train_time)
        # The method's overhead, read on one clock (``_clock``): whole steps, and the sparsifier's part of them.
        self.step_clock = self.method_clock = 0.0
        self.history: list[dict] = []  # one metric dict per evaluation
        self.pending_losses: list[float] = []  # training losses since the last evaluation
        self.status = RUNNING
        self.crossed: dict[int, dict] = {}  # rung -> step, time and FLOPs where the loss crossed it
        self._reported_updates = 0
        self.result: RunResult | None = None

    def expected_masked(self) -> float:
        """Expected positions per step that reach the MLM head."""
        return expected_masked(self.shape, self.spec.train.batch_size, self.spec.data.mask_prob)

    def _group_lr_factor(self, name: str | None) -> Callable[[int], float]:
        """The schedule of one parameter group: the run's, divided for a named (density-scaled) weight by its
        forward density of the moment (``sparsity.lr_scale: density``)."""
        if name is None:
            return self._lr_factor
        return lambda step: self._lr_factor(step) / max(self.sparsifier.density(name), 1e-6)

    def _lr_factor(self, step: int) -> float:
        tr = self.spec.train
        if step < tr.warmup_steps:
            return (step + 1) / (tr.warmup_steps + 1)
        if tr.lr_schedule == "constant":
            return 1.0
        if tr.lr_schedule == "wsd":  # Hägele et al. 2024: constant, then a linear cooldown ending at the horizon
            end = self.spec.target.horizon
            start = end * (1.0 - tr.cooldown)
            return 1.0 if step < start else max(0.0, (end - step) / (end - start))
        progress = min(1.0, (step - tr.warmup_steps) / max(1, tr.max_steps - tr.warmup_steps))
        return 1.0 - progress if tr.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    def avg_sparsity(self) -> float:
        """Fraction of zero (masked) weights among all sparsifiable weights."""
        weights = self.sparsifier.weights
        dens = self.sparsifier.densities()
        total = sum(w.numel() for w in weights.values())
        return 1.0 - sum(dens[n] * w.numel() for n, w in weights.items()) / total

    def step_flops(self, n_masked: float, densities: dict[str, Density] | None = None) -> tuple[StepFlops, StepFlops]:
        """(actual, dense-equivalent) FLOPs of a step with ``n_masked`` positions at the head; ``densities``
        default to the current step's, method overheads (e.g. a dense gradient on update steps) included."""
        bs = self.spec.train.batch_size
        dens = self.sparsifier.flop_densities(self.step) if densities is None else densities
        return step_flops(self.shape, bs, n_masked, dens), step_flops(self.shape, bs, n_masked)

    def evaluate(self) -> float:
        """Token-weighted mean MLM loss on the fixed held-out set."""
        start = time.perf_counter()
        try:
            return self._evaluate()
        finally:
            self.eval_time += time.perf_counter() - start

    @torch.no_grad()  # not inference_mode: the model's cached bf16 table is also used in training
    def _evaluate(self) -> float:
        if self.ema is not None and self.also_current:
            self._current_loss = self._evaluate_model()
        with self._evaluated_weights():
            if self.by_kind:
                return self._evaluate_by_kind()
            return self._evaluate_model()

    def _evaluate_by_kind(self) -> float:
        """``_evaluate_model``'s loss from per-position losses, keeping their means by input kind (``KINDS``)."""
        if self._eval_kinds is None:  # the evaluation set is fixed: classify its labelled positions once
            labels = self.batches.eval_labels
            shown, answer = self.batches.eval_inputs[labels != -100], labels[labels != -100]
            mask_id = self.data.tokenizer.mask_id
            self._eval_kinds = torch.where(shown == mask_id, 0, torch.where(shown == answer, 1, 2))
        self.model.eval()
        losses = []
        with self.precision.autocast():
            for inputs, labels in self.batches.eval_chunks():
                losses.append(self.model.token_losses(inputs.to(self.device), labels.to(self.device)).double().cpu())
        self.model.train()
        loss, kind = torch.cat(losses), self._eval_kinds
        self._kind_losses = {
            name: float(loss[kind == i].mean()) if bool((kind == i).any()) else math.nan for i, name in enumerate(KINDS)
        }
        return float(loss.mean()) if len(loss) else 0.0

    @contextlib.contextmanager
    def _evaluated_weights(self) -> Iterator[None]:
        """The weights an evaluation uses: the current ones, or (``train.eval_weights: ema``) their moving average
        with the current forward masks applied, so the evaluated model has exactly the run's sparsity; the
        current weights are back, bit for bit, afterwards."""
        if self.ema is None:
            yield
            return
        masks = {id(self.sparsifier.weights[n]): m for n, m in self.sparsifier.forward_masks().items()}
        current = [p.detach().clone() for p in self._trainable]
        for p, avg in zip(self._trainable, self.ema):
            mask = masks.get(id(p))
            p.copy_(avg if mask is None else avg.masked_fill(~mask, 0.0))
        try:
            yield
        finally:
            for p, saved in zip(self._trainable, current):
                p.copy_(saved)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """One step of the moving average; its decay grows from 0.1 towards the half-life's so that early
        evaluations are not dominated by the initial weights (the usual EMA warm-up)."""
        if self.ema is None:
            return
        decay = min(0.5 ** (1.0 / self.spec.train.ema_half_life), (1.0 + self.step) / (10.0 + self.step))
        for avg, p in zip(self.ema, self._trainable):
            avg.lerp_(p.detach(), 1.0 - decay)

    def _evaluate_model(self) -> float:
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = torch.zeros((), dtype=torch.int64, device=self.device)
        with self.precision.autocast():
            for inputs, labels in self.batches.eval_chunks():
                loss, n = self.model(inputs.to(self.device), labels.to(self.device))
                total += loss.double() * n  # summed on the device: one synchronisation per evaluation
                count += n
        self.model.train()
        return float(total) / max(int(count), 1)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _clock(self) -> float:
        """The clock the method's overhead is measured on: this process's CPU seconds (other processes' load
        does not advance it), or on CUDA synchronised wall seconds (the host's CPU time says nothing there)."""
        if self.device.type == "cuda":
            self._sync()
            return time.perf_counter()
        return time.process_time()

    def _has_overhead(self) -> bool:
        """Whether steps do work beyond the plain step: the sparsifier's (masks) or the weight averaging."""
        return bool(self.sparsifier.masks) or self.ema is not None

    def _method_clock(self) -> float:
        """``_clock`` where the overhead is measured; 0 for a plain dense run (nothing to measure, and on CUDA no
        synchronisation added to its steps)."""
        return self._clock() if self._has_overhead() else 0.0

    def method_overhead(self) -> float:
        """Whole training steps' time over their time without the sparsifier's work and the weight averaging
        (1.0 for a plain dense run)."""
        base = self.step_clock - self.method_clock
        if not self._has_overhead() or base <= 0 or self.method_clock <= 0:
            return 1.0
        return self.step_clock / base

    def _net_time(self, flops: float, ratio: float, wall_s: float) -> float:
        """Net time of ``flops`` (module docstring): priced at the reference, or wall time x FLOP ratio."""
        if self.seconds_per_flop is None:
            return wall_s * ratio
        return flops * self.seconds_per_flop * self.method_overhead()

    def train_step(self) -> tuple[float, int, dict]:
        """One optimizer step (masks kept exact around it). Returns the training loss, the number of masked
        positions and the per-weight densities the step cost; a non-finite loss takes no step."""
        inputs, labels = self.batches.train_batch(self.step)
        with self.precision.autocast():
            loss, n = self.model(inputs.to(self.device), labels.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        loss_value, n_masked = float(loss.detach()), int(n)
        step_densities = self.sparsifier.flop_densities(self.step)  # before this step's mask update
        if math.isfinite(loss_value):
            if self.scaler is not None:  # methods and clipping see true gradients
                self.scaler.unscale_(self.optimizer)
            c0 = self._method_clock()
            self.sparsifier.before_optimizer_step(self.step)
            self.method_clock += self._method_clock() - c0
            if self.spec.train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
            if self.scaler is None:
                self.optimizer.step()
            else:  # skips the step when the scaled gradients overflowed, and adapts the scale
                self.scaler.step(self.optimizer)
                self.scaler.update()
            c0 = self._method_clock()
            self.sparsifier.after_optimizer_step(self.step)
            self._update_ema()  # of the weights as the step left them, masks applied
            self.method_clock += self._method_clock() - c0
            self.scheduler.step()  # after the masks changed: a density-scaled rate reads the new densities
            self.step += 1
        self._sync()
        return loss_value, n_masked, step_densities

    def run(self) -> Iterator[dict]:
        """Train, yielding a metric dict after every evaluation; sets ``self.result`` at the end.

        After ``load_state_dict`` it continues where the checkpointed run stopped (no repeated evaluation)."""
        tr = self.spec.train
        if not self.history:
            torch.manual_seed(tr.seed)  # dropout
            row = self._record(self.evaluate(), None)
            self._cross(None, row)
            if self.targets and len(self.crossed) == len(self.targets):
                self.status = REACHED
            row["status"] = self.status
            yield row
        self.model.train()
        while self.status == RUNNING:
            start, c0 = time.perf_counter(), self._method_clock()
            loss_value, n_masked, step_densities = self.train_step()
            self.train_time += time.perf_counter() - start
            self.step_clock += self._method_clock() - c0
            if not math.isfinite(loss_value):
                self.status = DIVERGED
                row = self._record(float("inf"), loss_value)
                row["status"] = self.status
                yield row
                break
            actual, dense = self.step_flops(n_masked, step_densities)
            self.flops += actual.total
            self.dense_flops += dense.total
            self.decoder_flops += actual.by_group().get("decoder", 0.0)
            self.pending_losses.append(loss_value)
            out_of_budget = self.step >= tr.max_steps or (
                tr.max_time_s is not None and self.train_time >= tr.max_time_s
            )
            if self.step % tr.eval_every and not out_of_budget and self.step not in self.eval_steps:
                continue
            prev = self.history[-1]
            row = self._record(self.evaluate(), sum(self.pending_losses) / len(self.pending_losses))
            self.pending_losses.clear()
            if not math.isfinite(row["eval_loss"]):
                self.status = DIVERGED
            else:
                self._cross(prev, row)
                if self.targets and len(self.crossed) == len(self.targets):
                    self.status = REACHED
                elif out_of_budget:
                    self.status = REACHED if self.at_target is not None else NOT_REACHED
            row["status"] = self.status
            yield row
        self.result = self._finish()

    def _cross(self, prev: dict | None, row: dict) -> None:
        """Record every rung this evaluation reached for the first time, interpolated like the target."""
        for i, t in enumerate(self.targets):
            if i not in self.crossed and row["eval_loss"] <= t:
                self.crossed[i] = at_target(prev, row, t, _AT_TARGET)

    @property
    def at_target(self) -> dict | None:
        """Step, time and FLOPs where the loss crossed the objective rung (None: not yet)."""
        return self.crossed.get(self.objective)

    def rungs(self) -> list[dict]:
        """Per rung: its loss, whether the run crossed it, and steps, time, FLOPs, net time and net FLOPs there."""
        out = []
        for i, t in enumerate(self.targets):
            c = self.crossed.get(i)
            ratio = c["flops"] / c["dense_flops"] if c and c["dense_flops"] > 0 else 1.0
            out.append(
                {
                    "loss": t,
                    "reached": c is not None,
                    "steps": c["step"] if c else None,
                    "train_time_s": c["train_time_s"] if c else None,
                    "flops": c["flops"] if c else None,
                    "net_time_s": self._net_time(c["flops"], ratio, c["train_time_s"]) if c else None,
                    "wall_net_time_s": c["train_time_s"] * ratio if c else None,
                    "net_flops": c["flops"] if c else None,
                }
            )
        return out

    def _record(self, eval_loss: float, train_loss: float | None) -> dict:
        ratio = self.flops / self.dense_flops if self.dense_flops > 0 else 1.0
        updates = self.sparsifier.updates[self._reported_updates :]
        self._reported_updates = len(self.sparsifier.updates)
        row = {
            "step": self.step,
            "train_loss": train_loss,
            "eval_loss": eval_loss,
            "train_time_s": self.train_time,
            "flops": self.flops,
            "dense_flops": self.dense_flops,
            "decoder_flops": self.decoder_flops,
            "flop_ratio": ratio,
            "net_time_s": self._net_time(self.flops, ratio, self.train_time),
            "wall_net_time_s": self.train_time * ratio,
            "method_overhead": self.method_overhead(),
            "net_flops": self.flops,
            "avg_sparsity": self.avg_sparsity(),
            **live_units(self.model.encoder.layer, self.spec.model.num_heads),
            "lr": self.scheduler.get_last_lr()[0],
            "layer_density": {n: d for n, d in self.sparsifier.densities().items() if n in self.sparsifier.masks},
            "mask_updates": updates,
        }
        if self.ema is not None and self.also_current:
            row["eval_loss_current"] = self._current_loss
        if self.by_kind:
            row |= {f"eval_loss_{k}": v for k, v in self._kind_losses.items()}
        self.history.append(row)
        return row

    # ----- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: model, optimizer, schedule, masks and method state, data
        position (the step: batches are a function of it), RNG, and the metrics so far."""
        model = self.model.state_dict()
        if self.spec.model.freeze_embedding:  # 47 MB that never changes: reloaded from the pre-trained files
            model.pop("token_embedding.weight")
        return {
            "model": model,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sparsifier": self.sparsifier.state_dict(),
            "step": self.step,
            "train_time": self.train_time,
            "step_clock": self.step_clock,
            "method_clock": self.method_clock,
            "flops": self.flops,
            "dense_flops": self.dense_flops,
            "decoder_flops": self.decoder_flops,
            "eval_time": self.eval_time,
            "history": self.history,
            "pending_losses": self.pending_losses,
            "status": self.status,
            "crossed": self.crossed,
            "reported_updates": self._reported_updates,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": None if self.ema is None else [t.detach().cpu().clone() for t in self.ema],
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict``: the next step is the one the checkpointed run would have taken."""
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        if unexpected or set(missing) - {"token_embedding.weight"}:
            raise ValueError(f"checkpoint does not fit this model (missing {missing}, unexpected {unexpected})")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sparsifier.load_state_dict(state["sparsifier"])
        self.step, self.train_time = state["step"], state["train_time"]
        self.flops, self.dense_flops = state["flops"], state["dense_flops"]
        self.decoder_flops = state.get("decoder_flops", 0.0)
        self.eval_time = state.get("eval_time", 0.0)
        self.step_clock, self.method_clock = state.get("step_clock", 0.0), state.get("method_clock", 0.0)
        self.history, self.pending_losses = list(state["history"]), list(state["pending_losses"])
        self.status, self.crossed = state["status"], dict(state["crossed"])
        self._reported_updates = state["reported_updates"]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("checkpoint has no weight average, but train.eval_weights is ema")
            with torch.no_grad():
                for avg, saved in zip(self.ema, state["ema"]):
                    avg.copy_(saved.to(avg.device))
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)

    def _finish(self) -> RunResult:
        status, at_target, history = self.status, self.at_target, self.history
        last = history[-1]
        finite = [h["eval_loss"] for h in history if math.isfinite(h["eval_loss"])]
        obj = self.objective_so_far()
        return RunResult(
            status=status,
            reached_target=status == REACHED,
            target_loss=self.target,
            final_eval_loss=last["eval_loss"],
            best_eval_loss=min(finite) if finite else math.inf,
            steps=self.step,
            steps_to_target=at_target["step"] if at_target else None,
            train_time_s=last["train_time_s"],
            time_to_target_s=obj["time_to_target_s"],
            flop_ratio=obj["flop_ratio"],
            net_time_s=obj["net_time_s"],
            net_flops=obj["net_flops"],
            dense_flops=obj["dense_flops"],
            avg_sparsity=self.avg_sparsity(),
            projected=obj["projected"],
            wall_net_time_s=obj["wall_net_time_s"],
            method_overhead=self.method_overhead(),
            seconds_per_flop=self.seconds_per_flop,
            device=str(self.device),
            precision=self.precision.name,
            history=history,
            rungs=self.rungs(),
        )

    def objective_so_far(self) -> dict:
        """Time-to-target, net time and net FLOPs as they stand now: interpolated once the target is reached,
        else projected by the documented rule (infinite for diverged runs)."""
        if self.at_target is not None:
            t, f, d = (self.at_target[k] for k in ("train_time_s", "flops", "dense_flops"))
            projected = False
        elif self.status == DIVERGED:
            t = f = d = math.inf
            projected = True
        else:
            t, f, d = self._project(self.history)
            projected = True
        if d and math.isfinite(d) and d > 0:
            ratio = f / d
        else:  # no FLOPs yet, or no finite projection: the ratio so far (diverged: infinite)
            ratio = math.inf if self.status == DIVERGED else self.history[-1]["flop_ratio"]
        return {
            "time_to_target_s": t,
            "flop_ratio": ratio,
            "net_time_s": self._net_time(f, ratio, t) if math.isfinite(f) else math.inf,
            "wall_net_time_s": t * ratio,
            "net_flops": f,
            "dense_flops": d,
            "projected": projected,
        }

    def _project(self, history: list[dict]) -> tuple[float, float, float]:
        """Projected (time, FLOPs, dense FLOPs) to the target for a run that stopped short of it."""
        last = history[-1]
        if self.target is None:
            return last["train_time_s"], last["flops"], last["dense_flops"]
        window = history[-(max(1, (len(history) - 1) // 4) + 1) :]  # the last quarter of the intervals
        first = window[0]
        fall = first["eval_loss"] - last["eval_loss"]
        if len(window) < 2 or fall <= 0 or not math.isfinite(fall):
            return math.inf, math.inf, math.inf
        scale = (last["eval_loss"] - self.target) / fall  # windows still needed at the recent rate
        return tuple(last[k] + scale * (last[k] - first[k]) for k in ("train_time_s", "flops", "dense_flops"))


def train(spec: Spec, data: TokenizedData, targets: float | Sequence[float] | None, **kwargs) -> RunResult:
    """Run a Trainer to the end and return its result."""
    trainer = Trainer(spec, data, targets, **kwargs)
    for _ in trainer.run():
        pass
    assert trainer.result is not None
    return trainer.result
