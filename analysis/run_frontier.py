"""Train configurations of the frontier study to a fixed FLOP budget and append each run to a results file.

Study v3 compares recipes at equal training FLOPs, not equal steps: every run trains until it has spent
``--horizon`` FLOPs (total training FLOPs, the frozen decoder included), so a narrow dense model takes many
cheap steps and a sparse model whose density ramps up takes cheap steps early. Every evaluation scores both the
exponential moving average of the weights (``train.eval_weights: ema``, half-life ``train.ema_half_life``) and the
current weights (``eval_loss_current``), so one run answers for both evaluation rules; the decoder's share of the
FLOPs is recorded too (``decoder_flops``), for the accounting without it, and the average's loss split by what the
input held at the labelled position (``eval_loss_mask``, ``eval_loss_kept``, ``eval_loss_random``).

Sparse schedules span the run's budget (``sparsity.horizon_steps`` = the steps the budget buys at the target
density), as RigL's paper lays its update schedule over the whole run. A ``wsd`` configuration's cooldown ends at
the same budget (``target.dense_steps``), so a decayed run is measured at the one horizon it was decayed for.

Resumable: a (configuration, seed, horizon) already in the results file is skipped, and each finished run is
appended at once, so the work can stop and go on at any time. Seeds are outermost.

    python analysis/run_frontier.py --set recipes --seeds 0 1 2          # the frontier-recipes measurement
    python analysis/run_frontier.py --configs dense_64_lr0.0035 --seeds 0 --horizon 8e13
    python analysis/run_frontier.py --list
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analysis"))

from frontier import final_loss  # the study's rule for a family's rate, shared with its analysis

from sparsesearch.checks import matched_level, step_cost
from sparsesearch.data.batches import prepare_data
from sparsesearch.sparsity.registry import check_sparsity
from sparsesearch.spec import Spec, load_spec
from sparsesearch.training.trainer import KINDS, Trainer

BASE_SPEC = ROOT / "search_spaces" / "rigl.yaml"
RESULTS = ROOT / "analysis" / "results" / "frontier_runs.jsonl"
HORIZON = 3.2e13  # FLOPs: past 3e13, 1.5x the old study's sparse budget
STUDY_RESULTS = ROOT / "analysis" / "results" / "study_runs.jsonl"
STUDY_HORIZON = 8e13  # 4x the old study's compute: ~10M tokens, two passes over package-docs
EVAL = ["train.eval_weights=ema", "train.eval_every=50", "target.loss=0.01"]
_SPARSE_80 = ["sparsity.level=0.8", "sparsity.distribution=erk"]


def dense(hidden: int, lr: float, layers: int = 2) -> list[str]:
    """A dense model of ``hidden`` width: the spec's FFN ratio (4x), as many of 4 heads as keep 16 dimensions."""
    heads = max(d for d in range(1, 5) if hidden % d == 0 and hidden // d >= 16)
    return [
        "sparsity.method=dense",
        f"model.hidden_size={hidden}",
        f"model.ffn_size={4 * hidden}",
        f"model.num_heads={heads}",
        f"model.num_layers={layers}",
        f"train.lr={lr}",
    ]


def _configs() -> dict[str, list[str]]:
    """Configuration name -> overrides of the base spec. Learning rates are the old study's best per width
    (analysis/STUDY.md): 1.5e-3 at 256, 3.5e-3 at 64; RigL's 2e-3."""
    out = {
        "dense_256_lr0.0015": dense(256, 1.5e-3),
        "dense_64_lr0.0035": dense(64, 3.5e-3),
        "rigl_erk_0.8_lr0.002": ["sparsity.method=rigl", *_SPARSE_80, "train.lr=0.002"],
        # Density-scaled (SuPar): initial std and learning rate of masked weights over the density, from the
        # dense-256 optimum (masked weights then train at ~5x 1.5e-3, Dietrich et al.'s ~4.5x).
        "rigl_erk_0.8_scaled_lr0.0015": [
            "sparsity.method=rigl",
            *_SPARSE_80,
            "sparsity.init_scale=density",
            "sparsity.lr_scale=density",
            "train.lr=0.0015",
        ],
        # The data-led ramp: from 5% density, ~5 tokens per active sparsifiable weight, up to 20%.
        "grow_tpw5_erk_0.8_lr0.002": [
            "sparsity.method=grow",
            *_SPARSE_80,
            "sparsity.initial_level=0.95",
            "sparsity.tokens_per_weight=5",
            "train.lr=0.002",
        ],
        # Dense core, sparse periphery: a dense 64-wide core (one head) until it has read ~10 tokens per weight
        # (~720 steps), then RigL at 80% (ERK) on the whole 256-wide model; one rate between the core's optimum
        # (3.5e-3 at width 64) and the wide sparse model's (2e-3).
        "core_grow_tpw10_erk_0.8_lr0.003": [
            "sparsity.method=core_grow",
            *_SPARSE_80,
            "sparsity.core_width=64",
            "sparsity.tokens_per_weight=10",
            "train.lr=0.003",
        ],
        # The control for core_grow's core: the same dense width-64 model with one head of 64 dimensions (the
        # core's heads are whole heads of the wide model) instead of four of 16.
        "dense_64x1head_lr0.0035": [*dense(64, 3.5e-3), "model.num_heads=1"],
        # A cooldown to the budget: the same runs with the last 20% of their steps decayed linearly to zero.
        "dense_64_lr0.0035_wsd": [*dense(64, 3.5e-3), "train.lr_schedule=wsd", "train.cooldown=0.2"],
        "rigl_erk_0.8_lr0.002_wsd": [
            "sparsity.method=rigl",
            *_SPARSE_80,
            "train.lr=0.002",
            "train.lr_schedule=wsd",
            "train.cooldown=0.2",
        ],
    }
    return out


# The grid: centre x 1.5^k; the study runs k = -1, 0, 1 and one more past an edge while the best is on it. Seven
# rates since 61 runs (dense 64 x 1 was still improving at k = 2, the end of the first five-rate grid).
RATE_STEPS = (-3, -2, -1, 0, 1, 2, 3)
CENTRE = RATE_STEPS.index(0)


def lr_name(family: str, lr: float) -> str:
    return f"{family}_lr{lr:.3g}"


def _rates(centre: float) -> list[float]:
    return [float(f"{centre * 1.5**k:.3g}") for k in RATE_STEPS]


def _grid(name: str, overrides: list[str], centre: float) -> dict[str, list[str]]:
    """Learning rates around ``centre`` on the dense family's grid (x1.5 apart), so the best can be inside."""
    return {lr_name(name, lr): [*overrides, f"train.lr={lr}"] for lr in _rates(centre)}


def _study_families() -> dict[str, tuple[list[str], float]]:
    """Study v3's families, in the order they are run: name -> (overrides without the rate, the grid's centre).

    Dense widths 32-256, two more depths at the width-64 cost and one layer at widths 64 to 288, centred on
    the width rule
    (2e-3 x (w / 256) ^ -0.5); the sparse recipes at 256, at iso-FLOP widths and at 512, centred on RigL's 2e-3
    (core_grow on 3e-3, its best in the recipes runs; the density-scaled one on the dense-256 optimum 1.5e-3);
    ``flop_rigl`` at one layer too.
    The likely frontier and headline families come first, so a partial study already answers the question."""

    def dense_family(width: int, layers: int = 2) -> tuple[list[str], float]:
        centre = float(f"{2e-3 * (width / 256) ** -0.5:.3g}")
        return dense(width, centre, layers)[:-1], centre

    sparse = {
        "rigl_erk_0.8": (["sparsity.method=rigl", *_SPARSE_80], 2e-3),
        "flop_rigl_erk_0.8": (["sparsity.method=flop_rigl", *_SPARSE_80], 2e-3),
        "core_grow_tpw10_erk_0.8": (CONFIGS_BASE["core_grow_tpw10_erk_0.8_lr0.003"][:-1], 3e-3),
        "rigl_iso64": (
            [
                "sparsity.method=rigl",
                "sparsity.distribution=erk",
                "sparsity.match_flops_of={hidden_size: 64, ffn_size: 256}",
            ],
            2e-3,
        ),
        "rigl_iso96": (
            [
                "sparsity.method=rigl",
                "sparsity.distribution=erk",
                "sparsity.match_flops_of={hidden_size: 96, ffn_size: 384}",
            ],
            2e-3,
        ),
        "rigl_512_iso128": (
            [
                "sparsity.method=rigl",
                "sparsity.distribution=erk",
                "model.hidden_size=512",
                "model.ffn_size=2048",
                "sparsity.match_flops_of={hidden_size: 128, ffn_size: 512}",
            ],
            2e-3,
        ),
        "grow_tpw5_erk_0.8": (CONFIGS_BASE["grow_tpw5_erk_0.8_lr0.002"][:-1], 2e-3),
        "rigl_erk_0.8_scaled": (CONFIGS_BASE["rigl_erk_0.8_scaled_lr0.0015"][:-1], 1.5e-3),
    }
    return {
        "dense_64": dense_family(64),
        "rigl_erk_0.8": sparse["rigl_erk_0.8"],
        "flop_rigl_erk_0.8": sparse["flop_rigl_erk_0.8"],
        "core_grow_tpw10_erk_0.8": sparse["core_grow_tpw10_erk_0.8"],
        "dense_96": dense_family(96),
        "dense_128": dense_family(128),
        "dense_48": dense_family(48),
        "rigl_iso64": sparse["rigl_iso64"],
        "rigl_iso96": sparse["rigl_iso96"],
        "rigl_512_iso128": sparse["rigl_512_iso128"],
        "dense_88x1": dense_family(88, 1),  # the family's shallower-wider and deeper-thinner at the 64 cost
        "dense_56x3": dense_family(56, 3),
        # One layer turned out to be the first dense model past the plateau (seed 0: dense_88x1 at 3e13 FLOPs, the
        # 2-layer ones at 5.5e13 or later): the 1-layer family at a narrower and a wider width too.
        "dense_64x1": dense_family(64, 1),
        "dense_128x1": dense_family(128, 1),
        # dense_128x1 then ended lowest of all on seed 0: one width further, and the sparse side at one layer too
        # (flop_rigl, the 2-layer recipe that ended lowest), so each side is tried at the depth where dense is best.
        "dense_192x1": dense_family(192, 1),
        "dense_288x1": dense_family(288, 1),  # dense_192x1 lower still on seed 0: until the best width is inside
        "flop_rigl_erk_0.8_256x1": (["sparsity.method=flop_rigl", *_SPARSE_80, "model.num_layers=1"], 2e-3),
        "grow_tpw5_erk_0.8": sparse["grow_tpw5_erk_0.8"],
        "dense_32": dense_family(32),
        "dense_256": dense_family(256),
        "rigl_erk_0.8_scaled": sparse["rigl_erk_0.8_scaled"],
        # The issue asks for flop_rigl at the iso-FLOP widths too; missed in the first plan, added after seed 0.
        "flop_rigl_iso96": _with_method(sparse["rigl_iso96"], "flop_rigl"),
        "flop_rigl_512_iso128": _with_method(sparse["rigl_512_iso128"], "flop_rigl"),
        # Added after 65 runs, post hoc: core_grow led the 1-layer dense frontier on the mean below the plateau but
        # no interval cleared 1x, and one layer is where dense leaves the plateau first; the same recipe at that depth.
        "core_grow_tpw10_erk_0.8_256x1": (
            [*sparse["core_grow_tpw10_erk_0.8"][0], "model.num_layers=1"],
            sparse["core_grow_tpw10_erk_0.8"][1],
        ),
        # Added after 89 runs: the same-size dense for that 1-layer recipe (the study had a 256-wide dense at 2 layers
        # only). Centred two grid steps under the width rule, where dense_288x1 ended best (8.4e-4; its 1.89e-3 and
        # 2.83e-3 stayed on the plateau), so the grid spends its runs around the likely optimum.
        "dense_256x1": (dense(256, 8.89e-4, 1)[:-1], 8.89e-4),
        # Added after 89 runs, a control: the same core phase and switch with nothing sparse after it (level 0: the
        # wide model dense from the switch on), to tell what the 1-layer recipe owes to its sparsity from what it
        # owes to starting as a narrow model. Centred on the recipe's chosen rate.
        "core_grow_tpw10_level0_256x1": (
            [
                "sparsity.method=core_grow",
                "sparsity.level=0",
                "sparsity.core_width=64",
                "sparsity.tokens_per_weight=10",
                "model.num_layers=1",
            ],
            2e-3,
        ),
        # Added after 155 runs, post hoc: core_grow at one layer stalls near 4.85 where flop_rigl at the same level
        # goes on to ~4.4; the same core and switch with flop_rigl's regrowth after it, to test whether the fixed
        # layer densities are why (analysis/METHODS.md). Centred as core_grow is, so the grid spans both rates.
        "core_flop_rigl_tpw10_erk_0.8_256x1": (
            _with_method(
                ([*sparse["core_grow_tpw10_erk_0.8"][0], "model.num_layers=1"], sparse["core_grow_tpw10_erk_0.8"][1]),
                "core_flop_rigl",
            )
        ),
        # Added after 164 runs, post hoc: core_flop_rigl did not lift core_grow's stall near 4.85, and every core run
        # (the growth control too) keeps the LayerNorm statistics on the 64 core channels after the switch, which no
        # other model does. The same recipe with them moved to all channels over 250 steps after the switch (about
        # half the core phase; done before the drop from the plateau begins, ~1,250 steps). Centred on core_grow's
        # chosen rate at one layer, 2e-3.
        "core_grow_tpw10_release250_erk_0.8_256x1": (
            [*sparse["core_grow_tpw10_erk_0.8"][0], "model.num_layers=1", "sparsity.norm_release=250"],
            2e-3,
        ),
        # Added after 167 runs, post hoc: the release did not lift the stall (seed 0 ends at 4.83 against 4.85), and
        # a check of the switch found why every core run stalls: growth by gradient never opens the heads and FFN
        # units outside the core (their input and output weights both start at zero, so neither gets a gradient),
        # so after the switch these runs train the core's 1 head and 256 FFN units on a 256-wide hidden state. The
        # same recipe with the periphery opened at random, weights into new units drawn from the initialisation
        # (sparsity.core_open=random): the wide sparse model the method was meant to open into. Centred as the
        # release family.
        "core_grow_tpw10_random_erk_0.8_256x1": (
            [*sparse["core_grow_tpw10_erk_0.8"][0], "model.num_layers=1", "sparsity.core_open=random"],
            2e-3,
        ),
        # Added after 173 runs, post hoc: the random opening at one layer kept the early drop and went on to
        # 4.33-4.38 where the gradient opening stalled near 4.85; the planned 2-layer core_grow opens by gradient too
        # (ahead of the frontier on the mean only, 5.75-5.15). The same fix at two layers, centred on that family's
        # chosen rate (2e-3).
        "core_grow_tpw10_random_erk_0.8": (
            [*sparse["core_grow_tpw10_erk_0.8"][0], "sparsity.core_open=random"],
            2e-3,
        ),
    }


def _with_method(family: tuple[list[str], float], method: str) -> tuple[list[str], float]:
    """The same family with another sparsity method."""
    overrides, centre = family
    return [f"sparsity.method={method}" if o.startswith("sparsity.method=") else o for o in overrides], centre


def _study() -> dict[str, list[str]]:
    """Every configuration the study may run: each family on its whole rate grid (RATE_STEPS)."""
    out: dict[str, list[str]] = {}
    for name, (overrides, centre) in FAMILIES.items():
        out |= _grid(name, overrides, centre)
    return out


def best_rate(family: str, runs: dict[tuple[str, int, float], dict], horizon: float) -> tuple[float | None, list]:
    """The family's best rate on seed 0 (lowest ``final_loss``) and the rates still to try on seed 0 before the
    best is inside the tried ones (the grid's next rate past an edge, while the grid has one)."""
    rates = _rates(FAMILIES[family][1])
    tried = [lr for lr in rates if (lr_name(family, lr), 0, horizon) in runs]
    if not tried:
        return None, [rates[CENTRE]]
    missing = [lr for lr in rates[CENTRE - 1 : CENTRE + 2] if lr not in tried]
    if missing:
        return None, missing
    best = min(tried, key=lambda lr: final_loss(runs[(lr_name(family, lr), 0, horizon)]))
    i = rates.index(best)
    edge = (i == rates.index(min(tried)) and i > 0) or (i == rates.index(max(tried)) and i < len(rates) - 1)
    if edge:
        return None, [rates[i - 1] if best == min(tried) else rates[i + 1]]
    return best, []


def study_plan(
    runs: dict[tuple[str, int, float], dict], horizon: float, seeds: int = 5, first: tuple[str, ...] = ()
) -> list[tuple[str, int]]:
    """The study's runs still to do, in order: seed 0 on every family's centre rate, then its two neighbours, then
    one more rate past an edge until the best is inside; then seeds 1 and 2 at each family's best rate; then
    seeds 3 to ``seeds - 1`` at the best rates, the best families (lowest mean loss) first. Rates are chosen on
    seed 0 alone, the same way for every family (the same tuning effort on both sides).

    ``first``: families that go through all of it (every phase, every seed) before the others start their next
    phase; it changes the order of the runs, never which runs are made."""
    unknown = sorted(set(first) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choices: {', '.join(FAMILIES)}")
    if first:
        return list(dict.fromkeys([*_plan(runs, horizon, seeds, list(first)), *_plan(runs, horizon, seeds, None)]))
    return _plan(runs, horizon, seeds, None)


def _plan(
    runs: dict[tuple[str, int, float], dict], horizon: float, seeds: int, only: list[str] | None
) -> list[tuple[str, int]]:
    families = {f: FAMILIES[f] for f in (only if only is not None else FAMILIES)}

    def todo(pairs):
        return [(n, s) for n, s in pairs if (n, s, horizon) not in runs]

    plan: list[tuple[str, int]] = []
    picked: dict[str, float] = {}
    for phase in (0, 1):
        for family, (_, centre) in families.items():
            rates = _rates(centre)
            want = [rates[CENTRE]] if phase == 0 else [rates[CENTRE - 1], rates[CENTRE + 1]]
            plan += todo((lr_name(family, lr), 0) for lr in want)
    for family in families:
        best, more = best_rate(family, runs, horizon)
        plan += todo((lr_name(family, lr), 0) for lr in more)
        if best is not None:
            picked[family] = best
    for family, lr in picked.items():
        plan += todo((lr_name(family, lr), s) for s in (1, 2))

    def mean_loss(family: str) -> float:
        name = lr_name(family, picked[family])
        losses = [final_loss(r) for (n, _, h), r in runs.items() if n == name and h == horizon]
        return sum(losses) / len(losses)

    for family in sorted(picked, key=mean_loss):
        plan += todo((lr_name(family, picked[family]), s) for s in range(3, seeds))
    return list(dict.fromkeys(plan))


CONFIGS_BASE = _configs()
FAMILIES = _study_families()
STUDY = _study()
CONFIGS = {**CONFIGS_BASE, **STUDY}
SETS = {
    "recipes": [
        "dense_64_lr0.0035",
        "dense_256_lr0.0015",
        "rigl_erk_0.8_lr0.002",
        "rigl_erk_0.8_scaled_lr0.0015",
        "grow_tpw5_erk_0.8_lr0.002",
        "core_grow_tpw10_erk_0.8_lr0.003",
        "dense_64x1head_lr0.0035",
        "dense_64_lr0.0035_wsd",
        "rigl_erk_0.8_lr0.002_wsd",
    ],
}


def stored(path: Path) -> dict[tuple[str, int, float], dict]:
    """(configuration, seed, horizon) -> the last run stored for it."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["config"], r["seed"], r["horizon"]): r for r in rows}


def checked(overrides: list[str]) -> Spec:
    """The base spec with ``overrides``, the method's rules checked and an iso-FLOP level resolved, as a trial's
    spec is (the base spec's search section does not apply: these are single runs)."""
    spec = load_spec(str(BASE_SPEC), overrides)
    check_sparsity(spec.sparsity)
    return matched_level(spec)


def budget_steps(spec: Spec, horizon: float) -> int:
    """Steps the FLOP budget buys with every mask at its target density (a ramp's cheaper steps buy more)."""
    return math.ceil(horizon / step_cost(spec))


LIVE = ("live_heads", "live_ffn_units")  # kept in the stored history since 178 runs (model.units)


def run_config(name: str, seed: int, horizon: float, data) -> dict:
    """Train one configuration on ``seed`` until it has spent ``horizon`` training FLOPs; the stored row."""
    overrides = [*CONFIGS[name], *EVAL, f"train.seed={seed}"]
    steps = budget_steps(checked(overrides), horizon)
    overrides += [f"sparsity.horizon_steps={steps}", f"target.dense_steps=[{steps}]"]
    # Room for a ramp's cheaper steps; the loop stops at the budget.
    overrides.append(f"train.max_steps={4 * steps}")
    spec = checked(overrides)
    trainer = Trainer(spec, data, None, also_current=True, by_kind=True)
    keys: tuple[str, ...] = (
        "step",
        "eval_loss",
        "eval_loss_current",
        "flops",
        "dense_flops",
        "decoder_flops",
        "train_time_s",
    )
    # live units: whether a method's growth reaches every head and FFN unit (core_grow's did not, 167 runs)
    keys += (*(f"eval_loss_{k}" for k in KINDS), *LIVE, "avg_sparsity")
    history, status = [], "budget"
    for row in trainer.run():
        history.append({k: row[k] for k in keys})
        if not math.isfinite(row["eval_loss"]):
            status = "diverged"
            break
        if row["flops"] >= horizon:
            break
    else:
        status = "step_limit"
    return {
        "config": name,
        "seed": seed,
        "horizon": horizon,
        "status": status,
        "budget_steps": steps,
        "overrides": overrides,
        "history": history,
        "spec": spec.to_dict(),
        "corpus": data.fingerprint,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "host": platform.node(),
        "finished": time.time(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", default=[], help="configurations to run")
    p.add_argument("--set", choices=sorted(SETS), help="a named set of configurations")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument(
        "--study",
        action="store_true",
        help=f"run study v3's plan (study_plan: rates on seed 0, then more seeds at the best), to {STUDY_HORIZON:g} "
        f"FLOPs into {STUDY_RESULTS.relative_to(ROOT)} unless --horizon/--out say otherwise; --seeds is ignored",
    )
    p.add_argument("--study-seeds", type=int, default=5, help="seeds per family at its best rate (study)")
    p.add_argument(
        "--first",
        nargs="*",
        default=[],
        metavar="FAMILY",
        help="study families to take through every phase before the others (the runs are the same, their order "
        "is not); choices: " + ", ".join(FAMILIES),
    )
    p.add_argument("--max-runs", type=int, help="stop after this many runs")
    p.add_argument("--horizon", type=float, help=f"training FLOPs per run (default {HORIZON:g})")
    p.add_argument("--out", type=Path, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    p.add_argument("--list", action="store_true", help="print the configurations and their step budgets")
    args = p.parse_args(argv)
    horizon = args.horizon or (STUDY_HORIZON if args.study else HORIZON)
    out = args.out or (STUDY_RESULTS if args.study else RESULTS)
    names = list(dict.fromkeys([*(SETS[args.set] if args.set else []), *args.configs]))
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        p.error(f"unknown configurations {unknown}; choices: {', '.join(CONFIGS)}")
    if args.list:
        for n in CONFIGS:
            spec = checked(CONFIGS[n])
            print(f"{n:34s} {step_cost(spec) / 1e9:8.2f} GFLOP/step  {budget_steps(spec, horizon):6d} steps")
        return 0
    if args.study and names:
        p.error("--study runs its own plan: leave out --configs and --set")
    if args.first and not args.study:
        p.error("--first orders the study's plan: use it with --study")
    bad = sorted(set(args.first) - set(FAMILIES))
    if bad:
        p.error(f"--first: unknown families {bad}; choices: {', '.join(FAMILIES)}")
    if not (names or args.study):
        p.error("name --configs, a --set or --study (or --list)")
    base = load_spec(str(BASE_SPEC), [])
    data = prepare_data(base.data, base.model)
    source = data.stats["source"]
    print(f"corpus fingerprint {data.fingerprint} ({source}); horizon {horizon:.3g} FLOPs", flush=True)
    others = {r["corpus"] for r in stored(out).values()} - {data.fingerprint}
    if others:
        print(f"warning: {out} also holds runs on other corpora ({', '.join(sorted(others))})", flush=True)

    def todo() -> list[tuple[str, int]]:
        runs = stored(out)
        if args.study:
            return study_plan(runs, horizon, args.study_seeds, tuple(args.first))
        return [(n, s) for s in args.seeds for n in names if (n, s, horizon) not in runs]

    out.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    while (left := todo()) and (args.max_runs is None or done < args.max_runs):
        name, seed = left[0]  # planned again after every run: the study's later phases follow the results
        t0 = time.time()
        row = run_config(name, seed, horizon, data)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done += 1
        last = row["history"][-1]
        print(
            f"[{done}, {len(left) - 1} planned] {name} seed {seed}: {row['status']}, ema {last['eval_loss']:.4f} "
            f"current {last['eval_loss_current']:.4f} at step {last['step']}, {last['flops']:.3g} FLOPs "
            f"({time.time() - t0:.0f}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
