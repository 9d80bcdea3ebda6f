"""Study v3 (STUDY.md, Part A): each sparse recipe against the best dense model of any size, at equal training FLOPs.

Reads ``results/study_runs.jsonl`` (``run_frontier.py --study``: every run trained to the same FLOP budget, scored
at every evaluation on the weight average and on the current weights, with the frozen decoder's FLOPs recorded).
The rules, applied alike to both sides:

- A *family* is a configuration without its learning rate (the run name less ``_lr<rate>``). Its rate is the one
  with the lowest smoothed loss at the budget on seed 0 (``frontier.final_loss``, the plan's rule); only the
  family's runs at that rate take part, and only once it has ``min_seeds`` seeds there.
- *Targets*: the old study's ladder (the losses its dense-256 reference had after 200, 500, 1000 and 1200 steps,
  read from ``fair_runs.jsonl``) and an even grid of losses down to the *hardest* target, the lowest loss some
  dense family reaches on every seed within the budget.
- A run's cost to a target is the FLOPs where its loss first reached it, interpolated between evaluations (the
  trainer's rule). The *dense frontier* a recipe is scored against at a target is, among the dense families
  reaching it on every seed they ran, the one with the lowest geometric-mean speedup over the recipe, paired on
  the seeds both ran: the hardest dense opponent (the rule since 155 runs; from 101 to 154 runs the frontier was
  the family with the fewest mean FLOPs over the seeds every dense family ran, then paired on all its seeds). The
  tables' frontier column keeps that shared-seed choice, and a cell scored against another family names it. The
  *same-size dense* is the 256-wide dense at the recipe's depth (256 x 2, and 256 x 1 since 89 runs), once that
  family is in the panel. Speedups (dense FLOPs over the recipe's) are paired by seed over the seeds both ran;
  geometric means with log-scale 95% t intervals, the worst seed, and a paired t-test of log FLOPs.
- The *best sparse recipe* (controls aside) is the one with the highest geometric-mean speedup against the
  frontier at the hardest target among those reaching it on every seed (else the one reaching the lowest loss on
  every seed).
- Headline accounting: all training FLOPs; beside it, the same without the frozen decoder's matmuls.

    python analysis/frontier_study.py               # the tables to stdout
    python analysis/frontier_study.py --min-seeds 1 # a first look while seeds are still running
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analysis"))

import fair
import frontier
from frontier import costs, curve, final_loss, loss_at

from sparsesearch.model.shape import ModelShape
from sparsesearch.results.stats import ratio_ci
from sparsesearch.spec.schema import ModelSpec

RESULTS = ROOT / "analysis" / "results" / "study_runs.jsonl"
FAIR_RESULTS = ROOT / "analysis" / "results" / "fair_runs.jsonl"
SAME_SIZE = 256
GRID_POINTS = 41  # targets of the speedup curve
TABLE_STEP = 0.05  # loss between the tabulated targets below the ladder
VOCAB, EMB_DIM = 30522, 384  # the frozen all-MiniLM-L6-v2 table every run uses
PACKAGE_DOCS, PACKAGE_DOCS_SEQUENCES = "4fcff2e7582f5fab", 63_526  # the pinned corpus and its training sequences
# Families added to the plan after runs had been seen (run_frontier.FAMILIES says why): the choice of what to try
# was led by the data, so a win of theirs is a lead for fresh runs rather than the goal met as stated beforehand.
POST_HOC = {  # family -> runs then
    "core_grow_tpw10_erk_0.8_256x1": 65,
    "core_flop_rigl_tpw10_erk_0.8_256x1": 155,
    "core_grow_tpw10_release250_erk_0.8_256x1": 164,
    "core_grow_tpw10_random_erk_0.8_256x1": 167,
    "core_grow_tpw10_random_erk_0.8": 173,
}
# Controls: families run to explain a recipe's result, not recipes (run_frontier.FAMILIES says what each holds
# fixed). The tables show them beside the recipes; they are never the best recipe, a win or a sparse envelope.
CONTROLS = {"core_grow_tpw10_level0_256x1": "control: no sparsity"}


def family_label(family: str) -> str:
    """The family's name as the tables print it, marked when it was added post hoc or is a control."""
    if family in CONTROLS:
        return f"`{family}` ({CONTROLS[family]})"
    return f"`{family}` (post hoc)" if family in POST_HOC else f"`{family}`"


def recipes(p: pd.DataFrame) -> list[str]:
    """The sparse families of ``p`` that are recipes (not controls), in order."""
    return [f for f in dict.fromkeys(p.loc[~p["dense"], "family"]) if f not in CONTROLS]


def load(path: Path = RESULTS) -> pd.DataFrame:
    """One row per (configuration, seed, horizon), with its family, rate, width and depth."""
    df = frontier.load(path)
    df["family"] = [re.sub(r"_lr[0-9.e-]+", "", c) for c in df["config"]]
    df["layers"] = [s["model"]["num_layers"] for s in df["spec"]]
    df["final"] = [final_loss(r) for _, r in df.iterrows()]
    return df


def rates(df: pd.DataFrame) -> pd.DataFrame:
    """family x rate: the seed-0 smoothed final loss, the seeds run, and whether it is the family's chosen rate."""
    rows = []
    for family, g in df.groupby("family", sort=False):
        zero = g[g["seed"] == 0]
        best = zero.loc[zero["final"].idxmin(), "lr"] if len(zero) else math.nan
        for lr, r in g.groupby("lr"):
            z = r[r["seed"] == 0]
            rows.append(
                {
                    "family": family,
                    "dense": bool(r["dense"].iloc[0]),
                    "lr": lr,
                    "config": r["config"].iloc[0],
                    "seed0": float(z["final"].iloc[0]) if len(z) else math.nan,
                    "seeds": len(r),
                    "chosen": lr == best,
                }
            )
    return pd.DataFrame(rows)


def panel(df: pd.DataFrame, min_seeds: int = 3) -> pd.DataFrame:
    """The runs that take part: each family's chosen rate, where it has at least ``min_seeds`` seeds."""
    r = rates(df)
    keep = set(r.loc[r["chosen"] & (r["seeds"] >= min_seeds), "config"])
    return df[df["config"].isin(keep)].reset_index(drop=True)


def hardest(p: pd.DataFrame, rule: str = "ema") -> float:
    """The lowest loss some dense family of the panel reaches on every seed (nan without one)."""
    return frontier.hardest(p, rule) if p["dense"].any() else math.nan


def ladder(path: Path = FAIR_RESULTS) -> dict[str, float]:
    """The old study's targets (label -> loss) from its results file (none without it)."""
    if not path.is_file():
        return {}
    return {f"old @{n}": loss for n, loss in fair.targets(fair.load(path)).items()}


def targets(p: pd.DataFrame, old: dict[str, float], rule: str = "ema") -> dict[str, float]:
    """The tabulated targets: the old ladder ``old``, then every ``TABLE_STEP`` below its last rung, then the
    hardest."""
    out = dict(old)
    low = hardest(p, rule)
    if math.isnan(low):
        return out
    top = min(out.values(), default=low + TABLE_STEP)
    loss = math.floor(top / TABLE_STEP) * TABLE_STEP
    loss -= TABLE_STEP if loss > top - 1e-9 else 0.0
    while loss > low + 1e-9:
        out[f"{loss:.2f}"] = loss
        loss -= TABLE_STEP
    out["hardest"] = low
    return out


def compare(p: pd.DataFrame, loss: float, rule: str = "ema", decoder: bool = True) -> dict:
    """At one target: the frontier and same-size dense families, their mean FLOPs, and per sparse family the
    paired speedups over each (a Series over the seeds both ran and reached) and seeds reached. Families may
    have run different seeds (the study adds seeds 3-4 family by family): a seed a family has not run is not a
    miss."""
    c = costs(p, loss, rule, decoder).rename(index=dict(zip(p["config"], p["family"])))
    c.index.name = "family"
    ran = ran_seeds(p, c)
    fam = p.drop_duplicates("family").set_index("family")
    dense = fam.index[fam["dense"]]
    front = _cheapest(c, ran, list(dense))

    def same_size(layers: int) -> list[str]:  # the same-size dense is the same depth too
        return [f for f in dense if fam.loc[f, "layers"] == layers and fam.loc[f, "hidden"] == SAME_SIZE]

    same = _cheapest(c, ran, same_size(2))
    out = {"front": front, "same": same, "costs": c, "sparse": {}}
    for name in fam.index[~fam["dense"]]:
        row = c.loc[name]
        candidates = same_size(int(fam.loc[name, "layers"]))
        own = _cheapest(c, ran, candidates)
        opponent, vs_front = _hardest_opponent(c, ran, list(dense), row, front)
        out["sparse"][name] = {
            "reached": int(row.notna().sum()),
            "seeds": int(ran.loc[name].sum()),
            "front": opponent,
            "vs_front": vs_front,
            "vs_same": (c.loc[own] / row).dropna() if own else pd.Series(dtype=float),
            "same": own,
            "same_exists": bool(candidates),  # False where no 256-wide dense of its depth is in the panel
        }
    return out


def ran_seeds(p: pd.DataFrame, c: pd.DataFrame) -> pd.DataFrame:
    """family x seed, aligned with the costs ``c``: whether the family ran that seed (a NaN cost is a miss only
    where it did)."""
    runs = p.assign(ran=True).pivot_table(index="family", columns="seed", values="ran", aggfunc="any")
    return runs.reindex(index=c.index, columns=c.columns).fillna(False).astype(bool)


def _cheapest(c: pd.DataFrame, ran: pd.DataFrame, families: list[str]) -> str | None:
    """Among ``families``, the one with the fewest mean FLOPs among those that reached the target on every seed
    they ran, the means taken over the seeds every one of ``families`` ran (the same seeds at every target): a mean
    over a family's own seeds would favour the family whose few seeds were fast ones. It names the tables'
    reference column; a recipe is scored by ``_hardest_opponent``, because a seed is not fast or slow for every
    family alike (seed 4 is slow for dense 192 x 1, 128 x 1 and 88 x 1, fast for 64 x 1)."""
    full = [f for f in families if not (ran.loc[f] & c.loc[f].isna()).any()]
    if not full:
        return None
    shared = ran.loc[families].all(axis=0)
    seeds = shared.index[shared] if shared.any() else c.columns
    return str(c.loc[full, seeds].mean(axis=1).idxmin())


def _hardest_opponent(
    c: pd.DataFrame, ran: pd.DataFrame, dense: list[str], row: pd.Series, front: str | None
) -> tuple[str | None, pd.Series]:
    """The dense family a recipe is scored against: of those reaching the target on every seed they ran, the one
    with the lowest geometric-mean speedup over the recipe, paired on the seeds both ran (the rule since 155 runs).

    Choosing the frontier on the seeds every dense family ran and then pairing it on all of its own seeds let a
    family's later seeds decide a cell they had no say in choosing: dense 192 x 1's seeds 4, 6 and 7 are slow ones,
    and dense 256 x 1, cheaper on seeds 0-4, was not the opponent. The minimum over families favours dense (it
    keeps the luckiest pairing), so a recipe ahead under it is ahead of every dense family on the seeds they share.
    Without any pairing (the recipe reached no seed), the table's frontier ``front`` and an empty series."""
    best: tuple[float, str, pd.Series] | None = None
    for f in dense:
        if (ran.loc[f] & c.loc[f].isna()).any():
            continue
        x = (c.loc[f] / row).dropna()
        if x.empty:
            continue
        g = interval(x)[0]
        if best is None or g < best[0]:
            best = (g, f, x)
    if best is None:
        return front, pd.Series(dtype=float)
    return best[1], best[2]


def interval(x: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean and log-scale ``level`` t interval (nan bounds with fewer than two seeds)."""
    v = [float(a) for a in x]
    if not v:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return v[0], math.nan, math.nan
    return ratio_ci(v, level)


def cell(s: dict, key: str) -> str:
    """A speedup cell: geometric mean [95% interval] (worst seed), with the seeds reached when not all."""
    x = s[key]
    if key == "vs_same" and not s["same_exists"]:
        return f"no {SAME_SIZE}-wide dense of its depth in the panel"
    if key == "vs_same" and s["same"] is None:  # the recipe may have reached it; its same-size dense did not
        return f"the {SAME_SIZE}-wide dense misses it on some seed (recipe: {s['reached']}/{s['seeds']})"
    if x.empty:
        return f"– ({s['reached']}/{s['seeds']})"
    m, lo, hi = interval(x)
    text = f"{m:.2f}" if math.isnan(lo) else f"{m:.2f} [{lo:.2f}, {hi:.2f}] (worst {x.min():.2f})"
    if len(x) < s["reached"]:  # the dense family has not run every seed the recipe reached
        text += f" (paired on {len(x)} seeds)"
    return text if s["reached"] == s["seeds"] else f"{text} ({s['reached']}/{s['seeds']})"


def best_recipe(p: pd.DataFrame, rule: str = "ema") -> str | None:
    """The best sparse recipe (module docstring's rule)."""
    low = hardest(p, rule)
    sparse = recipes(p)
    if not sparse or math.isnan(low):
        return None
    at = {n: s for n, s in compare(p, low, rule)["sparse"].items() if n in sparse}
    full = {n: interval(s["vs_front"])[0] for n, s in at.items() if s["reached"] == s["seeds"] and len(s["vs_front"])}
    if full:
        return max(full, key=lambda n: full[n])
    reach = {
        n: max(min(q["eval_loss"] for q in curve(h, rule)) for h in p.loc[p["family"] == n, "history"]) for n in sparse
    }
    return min(reach, key=lambda n: reach[n])


def _md(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    )


def read(row: dict, spec: dict) -> int:
    """Training tokens a run had read by an evaluation row (masked and unmasked positions alike)."""
    return row["step"] * spec["train"]["batch_size"] * spec["model"]["seq_len"]


def setup_text(df: pd.DataFrame, p: pd.DataFrame, min_seeds: int) -> str:
    """Runs, budget, tokens read, evaluation cadence, environment."""
    first = df.iloc[0]
    spec = first["spec"]
    tokens = [
        h[-1]["step"] * s["train"]["batch_size"] * s["model"]["seq_len"] for h, s in zip(df["history"], df["spec"])
    ]
    passes = ""
    if first["corpus"] == PACKAGE_DOCS:
        corpus = PACKAGE_DOCS_SEQUENCES * spec["model"]["seq_len"]
        passes = (
            f" ({min(tokens) / corpus:.2f} to {max(tokens) / corpus:.2f} passes over the corpus's "
            f"{corpus / 1e6:.2f}M training tokens, in a new order each pass)"
        )
    return (
        f"{len(df)} runs of {df['family'].nunique()} families ({df['config'].nunique()} configurations), "
        f"{p['family'].nunique()} families with >= {min_seeds} seeds at their chosen rate; budget "
        f"{df['horizon'].iloc[0]:.2g} training FLOPs per run; each run read {min(tokens) / 1e6:.1f}M to "
        f"{max(tokens) / 1e6:.1f}M tokens{passes}; evaluated every {spec['train']['eval_every']} steps on "
        f"{spec['train']['eval_sequences']} held-out sequences (weight average, half-life "
        f"{spec['train']['ema_half_life']} steps, and current weights); corpus `{first['corpus']}`; precision "
        f"`{spec['train']['precision']}`, torch {first['torch']}, {first['threads']} CPU threads."
    )


def panel_text(df: pd.DataFrame, p: pd.DataFrame, min_seeds: int) -> str:
    """Which families the tables rest on and which are still out: a frontier of fewer dense families is easier
    to beat, so a reader must see it."""
    inside = set(p["family"])
    every = df.drop_duplicates("family")

    def names(dense: bool, taking: bool) -> str:
        picked = [
            family_label(f) for f, d in zip(every["family"], every["dense"]) if d == dense and (f in inside) == taking
        ]
        return ", ".join(picked) or "none"

    return (
        f"Families with >= {min_seeds} seeds at their chosen rate, the only ones in these tables: dense "
        f"{names(True, True)}; sparse {names(False, True)}. Still out (fewer seeds): dense {names(True, False)}; "
        f"sparse {names(False, False)}. The frontier is the best of the dense families in: until every dense "
        "family is in, it is at most as strong as the full frontier, and a win against it is not yet a win."
    )


def active_weights(spec: dict, sparsity: float) -> float:
    """Trained weights of a run's matmuls at its final density (the biases and norms are few)."""
    shape = ModelShape.from_spec(ModelSpec(**spec["model"]), VOCAB, EMB_DIM)
    return sum(a * b for a, b in shape.weight_shapes().values()) * (1.0 - sparsity)


def tuning_table(df: pd.DataFrame) -> str:
    """Per family: the rates tried with their seed-0 losses (the chosen one in bold, and whether it is inside),
    seeds at it, runs and FLOPs spent, the decoder's share of the FLOPs and tokens per trained weight."""
    r = rates(df)
    rows = []
    for family, g in r.groupby("family", sort=False):
        g = g.sort_values("lr")
        tried = [
            (f"**{lr:.3g}: {loss:.4f}**" if ch else f"{lr:.3g}: {loss:.4f}")
            for lr, loss, ch in zip(g["lr"], g["seed0"], g["chosen"])
        ]
        chosen = g[g["chosen"]]
        where = "–"
        if len(chosen):
            i = list(g["lr"]).index(chosen["lr"].iloc[0])
            where = "one rate" if len(g) == 1 else "inside" if 0 < i < len(g) - 1 else "edge"
        runs = df[df["family"] == family]
        at = runs[runs["config"].isin(chosen["config"])]
        last = [h[-1] for h in at["history"]] or [h[-1] for h in runs["history"]]
        specs = list(at["spec"]) or list(runs["spec"])
        decoder = np.mean([h["decoder_flops"] / h["flops"] for h in last])
        tokens = [read(h, s) for h, s in zip(last, specs)]
        weights = [active_weights(s, h["avg_sparsity"]) for h, s in zip(last, specs)]
        shape = specs[0]["model"]
        rows.append(
            [
                f"`{family}`",
                "dense" if g["dense"].iloc[0] else "control" if family in CONTROLS else "sparse",
                f"{shape['hidden_size']} x {shape['num_layers']}",
                ", ".join(tried),
                where,
                str(int(chosen["seeds"].iloc[0])) if len(chosen) else "0",
                str(len(runs)),
                f"{sum(h[-1]['flops'] for h in runs['history']):.3g}",
                f"{decoder:.0%}",
                f"{np.mean(weights) / 1e6:.2f}M",
                f"{np.mean(tokens) / np.mean(weights):.1f}",
            ]
        )
    head = [
        "family",
        "side",
        "width x layers",
        "rate: seed-0 loss at the budget (chosen in bold)",
        "chosen rate",
        "seeds at it",
        "runs",
        "FLOPs spent",
        "decoder share",
        "trained weights",
        "tokens per weight",
    ]
    return _md(head, rows)


def speedup_table(p: pd.DataFrame, old: dict[str, float], key: str, rule: str = "ema", decoder: bool = True) -> str:
    """Targets down the rows; the frontier (or same-size dense) and its FLOPs, then each sparse recipe's speedup
    over it (``key``: ``vs_front`` or ``vs_same``)."""
    sparse = list(dict.fromkeys(p.loc[~p["dense"], "family"]))
    # vs_same: the reference column is the 2-layer one; a cell against another depth's names it
    head = ["target", "loss", "dense frontier" if key == "vs_front" else f"same-size dense ({SAME_SIZE} x 2)"]
    head.append("its FLOPs")
    head += [family_label(n) for n in sparse]
    rows = []
    for label, loss in targets(p, old, rule).items():
        c = compare(p, loss, rule, decoder)
        ref = c["front"] if key == "vs_front" else c["same"]
        row = [label, f"{loss:.4f}", f"`{ref}`" if ref else "none on every seed"]
        row.append(f"{c['costs'].loc[ref].mean():.3g}" if ref else "–")
        for n in sparse:
            own = c["sparse"][n]["same"] if key == "vs_same" else c["sparse"][n]["front"]
            row.append(cell(c["sparse"][n], key) + (f" (vs `{own}`)" if own and own != ref else ""))
        rows.append(row)
    return _md(head, rows)


def accounting_table(p: pd.DataFrame, old: dict[str, float], recipe: str) -> str:
    """The best recipe against the frontier with and without the frozen decoder's FLOPs, target by target."""
    rows = []
    for label, loss in targets(p, old).items():
        row = [label, f"{loss:.4f}"]
        for decoder in (True, False):
            c = compare(p, loss, "ema", decoder)
            s = c["sparse"][recipe]
            row += [f"`{s['front']}`" if s["front"] else "none", cell(s, "vs_front")]
        rows.append(row)
    head = ["target", "loss", "frontier (all FLOPs)", "speedup (all FLOPs)", "frontier (no decoder)"]
    return _md(head + ["speedup (no decoder)"], rows)


def rules_table(p: pd.DataFrame, old: dict[str, float], label: str) -> str:
    """At one target: every sparse recipe against the frontier when both sides are scored on the weight average
    and when both are scored on their current weights."""
    rows = []
    per_rule = {}
    for rule in frontier.RULES:
        loss = targets(p, old, rule).get(label, math.nan)
        per_rule[rule] = (loss, compare(p, loss, rule) if loss == loss else None)
    for name in dict.fromkeys(p.loc[~p["dense"], "family"]):
        row = [family_label(name)]
        for _, c in per_rule.values():
            row += ["–" if c is None else f"`{c['sparse'][name]['front']}`: {cell(c['sparse'][name], 'vs_front')}"]
        rows.append(row)
    head = ["recipe"] + [f"{rule} ({label}: loss {loss:.4f})" for rule, (loss, _) in per_rule.items()]
    return _md(head, rows)


KIND_BUDGETS = (1e13, 2e13, 4e13, 6e13, 8e13)  # FLOPs


def kinds_table(df: pd.DataFrame, budgets: tuple[float, ...] = KIND_BUDGETS) -> str:
    """Per family at its chosen rate: the weight average's loss at [MASK] / kept / random labelled positions at a
    few budgets (mean over the seeds that recorded it), and the whole loss for reference."""
    r = rates(df)
    rows = []
    for family, g in r[r["chosen"]].groupby("family", sort=False):
        runs = df[df["config"].isin(g["config"]) & df["history"].map(lambda h: "eval_loss_mask" in h[-1])]
        if runs.empty:
            continue
        row = [f"`{family}`", str(len(runs))]
        for b in budgets:
            means = []
            for key in ("eval_loss", "eval_loss_mask", "eval_loss_kept", "eval_loss_random"):
                pts = [[{"flops": h["flops"], "eval_loss": h[key]} for h in hist] for hist in runs["history"]]
                at = [v for v in (loss_at(q, b) for q in pts) if not math.isnan(v)]
                means.append(sum(at) / len(at) if at else math.nan)
            row.append("–" if math.isnan(means[0]) else " / ".join(f"{m:.2f}" for m in means))
        rows.append(row)
    if not rows:
        return "No run recorded the split yet."
    return _md(["family", "seeds"] + [f"{b:.0e} FLOPs: all / [MASK] / kept / random" for b in budgets], rows)


def oracle_table(df: pd.DataFrame, p: pd.DataFrame, old: dict[str, float], rule: str = "ema") -> str:
    """On seed 0, per target: the cheapest of every dense run stored (any family, any rate tried, however few
    seeds) against each recipe of the panel at its chosen rate. Picking the best of many runs per target favours
    dense (the rate is chosen per target, and the minimum of noisy runs is low), so a recipe ahead here is ahead
    of any rate choice the study could have made."""
    zero = df[df["seed"] == 0]
    recipes = list(dict.fromkeys(p.loc[~p["dense"], "config"]))
    if not recipes:
        return "No sparse recipe in the tables yet."
    rows = []
    for label, loss in targets(p, old, rule).items():
        c = costs(zero, loss, rule)[0]
        dense = c[zero.drop_duplicates("config").set_index("config").loc[c.index, "dense"]].dropna()
        if dense.empty:
            continue
        best = str(dense.idxmin())
        row = [label, f"{loss:.4f}", f"`{best}`", f"{dense[best]:.3g}"]
        row += ["–" if math.isnan(c[r]) else f"{dense[best] / c[r]:.2f}" for r in recipes]
        rows.append(row)
    return _md(["target", "loss", "cheapest dense run, seed 0", "its FLOPs", *(f"`{r}`" for r in recipes)], rows)


SPREAD_LEVELS = (5.6, 5.2, 4.8)  # losses below the plateau near 5.75, where a run's timing decides its speedup


def spread_table(df: pd.DataFrame, levels: tuple[float, ...] = SPREAD_LEVELS, rule: str = "ema") -> str:
    """Per family at its chosen rate with two or more seeds: each seed's FLOPs to a few losses below the plateau,
    and the slowest seed over the fastest (how much of a speedup's interval is the seeds' timing alone)."""
    r = rates(df)
    rows = []
    for family, g in r[r["chosen"] & (r["seeds"] >= 2)].groupby("family", sort=False):
        runs = df[df["config"].isin(g["config"])]
        row = [f"`{family}`", str(len(runs))]
        for level in levels:
            f = costs(runs, level, rule).iloc[0]
            seen = f.dropna()
            each = " / ".join("–" if math.isnan(v) else f"{v / 1e13:.1f}" for v in f)
            ratio = f"{seen.max() / seen.min():.2f}x" if len(seen) >= 2 else "–"
            missed = f", {len(f) - len(seen)} missed" if len(seen) < len(f) else ""
            row.append(f"{each} ({ratio}{missed})")
        rows.append(row)
    if not rows:
        return "No family has two seeds at its rate yet."
    head = ["family", "seeds"] + [f"to {level:.2f}: 1e13 FLOPs by seed (slowest / fastest)" for level in levels]
    return _md(head, rows)


def goal_text(p: pd.DataFrame, old: dict[str, float]) -> str:
    """Whether a sparse recipe's 95% interval lies above 1x against the frontier at some target (all seeds).

    A win is the goal as stated before the runs; because it may be found at any of many (recipe, target) cells,
    each winning family's strongest interval is also given Bonferroni-adjusted for the number of cells scanned
    (conservative: neighbouring targets are strongly correlated)."""
    wins, closest, scanned = [], None, 0
    for target, loss in targets(p, old).items():
        for name, s in compare(p, loss)["sparse"].items():
            lo = interval(s["vs_front"])[1]
            if name in CONTROLS or s["reached"] < s["seeds"] or math.isnan(lo):
                continue
            scanned += 1
            where = f"{family_label(name)} at {target} (loss {loss:.4f})"
            where += f" against `{s['front']}`"
            if lo > 1.0:
                wins.append((s["vs_front"], where, cell(s, "vs_front"), name))
            if closest is None or lo > closest[0]:
                closest = (lo, f"{where}: {cell(s, 'vs_front')}")
    budget = f"{p['horizon'].iloc[0]:.2g} FLOPs"
    if wins:
        text = f"**Reached** within {budget}: " + "; ".join(f"{w}: {c}" for _, w, c, _ in wins) + "."
        if any(name in POST_HOC for *_, name in wins):
            text += (
                " A family marked post hoc was added after runs had been seen: its win says where to look with fresh "
                "seeds, it does not meet the goal stated beforehand on its own."
            )
        if scanned == 1:
            return text
        level = 1 - 0.05 / scanned
        best: dict[str, tuple[tuple[float, float], str]] = {}  # per winning family, its strongest adjusted cell
        for x, where, _, name in wins:
            bounds = interval(x, level)[1:]
            if name not in best or bounds[0] > best[name][0][0]:
                best[name] = (bounds, where)
        ranked = sorted(best.values(), key=lambda a: -a[0][0])
        (lo, hi), strongest = ranked[0]
        verdict = "still above 1x" if lo > 1.0 else "not above 1x: the win may be one of the cells chance lifts"
        text = (
            f"{text} Scanned {scanned} (recipe, target) cells: Bonferroni-adjusted ({level:.2%}) interval of the "
            f"strongest, {strongest}: [{lo:.2f}, {hi:.2f}], {verdict}."
        )
        if len(ranked) > 1:  # a second family's win can rest on much less than the strongest's
            others = "; ".join(
                f"{where}: [{a:.2f}, {b:.2f}], {'above 1x' if a > 1.0 else 'not above 1x'}"
                for (a, b), where in ranked[1:]
            )
            text += f" The other winning families' strongest cells, adjusted alike: {others}."
        return text
    if closest is None:
        return "Not decided yet: no sparse recipe has two seeds at a target the frontier reaches."
    return f"**Not reached** within {budget}. Closest (highest lower bound): {closest[1]}."


# Each registered before any of its seeds ran: a family's strongest cell, re-tested on fresh seeds alone (the
# pooled tables reuse the seeds that showed it). The first (79 runs) for a post-hoc family; the second (146 runs)
# for a planned family whose win rests on intervals that clear 1x by 0.01-0.03 and on one fast fifth seed. The
# third and fourth (173 runs, one set of three fresh seeds for both) for the post-hoc random-opening family: the
# first's cell and opponent, so that the two openings are compared on like terms, and a cell near the hardest target,
# where its pooled mean is ahead (1.11x on seeds 0-2) but its interval is not; two cells on one set of seeds, so a
# reader who wants both at once should ask for 97.5% intervals (given in the prose).
CONFIRMS = (
    {"recipe": "core_grow_tpw10_erk_0.8_256x1", "against": "dense_192x1", "loss": 5.65, "seeds": (5, 6, 7)},
    {"recipe": "flop_rigl_erk_0.8_256x1", "against": "dense_192x1", "loss": 5.40, "seeds": (5, 6, 7)},
    {
        "recipe": "core_grow_tpw10_random_erk_0.8_256x1",
        "against": "dense_192x1",
        "loss": 5.65,
        "seeds": (5, 6, 7),
        "cells": 2,
    },
    {
        "recipe": "core_grow_tpw10_random_erk_0.8_256x1",
        "against": "dense_256x1",
        "loss": 4.60,
        "seeds": (5, 6, 7),
        "cells": 2,
    },
)


def confirm_text(p: pd.DataFrame, plan: dict) -> str:
    """The registered confirmation: the recipe's paired FLOP speedup over the named dense family at the named
    target, on the registered seeds only; confirmed when its 95% interval lies above 1x. A plan with ``cells``
    (registered cells sharing its seeds) > 1 also gives the Bonferroni interval for all of them at once."""
    recipe, against, loss, seeds = plan["recipe"], plan["against"], plan["loss"], list(plan["seeds"])
    head = f"`{recipe}` against `{against}` at loss {loss:.2f}, seeds {', '.join(map(str, seeds))} only"
    c = costs(p, loss, "ema").rename(index=dict(zip(p["config"], p["family"])))
    ran = ran_seeds(p, c)
    if recipe not in c.index or against not in c.index:
        return f"{head}: waiting (a family is not in the tables yet)."
    both = [s for s in seeds if s in ran.columns and ran.loc[recipe, s] and ran.loc[against, s]]
    if len(both) < len(seeds):
        return f"{head}: waiting ({len(both)} of {len(seeds)} pairs run)."
    missed = [s for s in both if math.isnan(c.loc[recipe, s])]
    x = (c.loc[against, both] / c.loc[recipe, both]).dropna()
    if missed or len(x) < len(both):
        who = f"the recipe's seed{'s' * (len(missed) > 1)} {', '.join(map(str, missed))}" if missed else "dense seeds"
        rest = ", ".join(f"seed {s} {v:.2f}" for s, v in x.items())
        return f"{head}: **not confirmed** ({who} missed the target; the pairs that reached it: {rest or 'none'})."
    m, lo, hi = interval(x)
    pairs = ", ".join(f"{v:.2f}" for v in x)
    verdict = "**confirmed**" if lo > 1.0 else "**not confirmed**"
    cells = int(plan.get("cells", 1))
    if cells > 1:
        _, jlo, jhi = interval(x, 1 - 0.05 / cells)
        joint = "above" if jlo > 1.0 else "not above"
        verdict += (
            f"; at {100 * (1 - 0.05 / cells):.1f}%, for the {cells} cells registered on these seeds together, "
            f"[{jlo:.2f}, {jhi:.2f}], {joint} 1x"
        )
    front = compare(p, loss)["sparse"][recipe]["front"]
    note = "" if front == against else f" The pooled tables' frontier there is now `{front}`, not `{against}`."
    # Outside the registered rule: the other dense families that ran the same seeds, so that a reader sees whether
    # the registered opponent was the hardest one on them.
    dense = p.drop_duplicates("family").set_index("family")["dense"]
    others = []
    for f in dense.index[dense]:
        if f == against or not all(s in ran.columns and ran.loc[f, s] for s in seeds):
            continue
        y = c.loc[f, seeds] / c.loc[recipe, seeds]
        if y.isna().any():
            others.append(f"`{f}` misses the target on some of these seeds")
            continue
        a, b, d = interval(y)
        others.append(f"`{f}` {a:.2f} [{b:.2f}, {d:.2f}] (per seed {', '.join(f'{v:.2f}' for v in y)})")
    also = f" Not part of the registered rule, on the same seeds: {'; '.join(others)}." if others else ""
    return f"{head}: {m:.2f} [{lo:.2f}, {hi:.2f}] (worst {x.min():.2f}; per seed {pairs}), {verdict}.{note}{also}"


BEYOND_STEP = 0.2  # loss between the targets below the hardest dense-reachable one


def beyond_table(p: pd.DataFrame) -> str:
    """Below the hardest target, where no dense family reaches the loss on every seed: per sparse recipe and target
    (every ``BEYOND_STEP`` down to the lowest loss the recipe reaches on every seed), its mean FLOPs and a lower
    bound on its speedup over the dense frontier: the dense family with the fewest mean FLOPs when a seed that
    missed counts the whole budget (it would have needed more), over the recipe's mean FLOPs (a ratio of means,
    not paired by seed)."""
    horizon = float(p["horizon"].iloc[0])
    low = hardest(p)
    rows = []
    for name in dict.fromkeys(p.loc[~p["dense"], "family"]):
        runs = p[p["family"] == name]
        reach = max(min(q["eval_loss"] for q in curve(h, "ema")) for h in runs["history"])
        target = math.floor(low / BEYOND_STEP) * BEYOND_STEP
        target -= BEYOND_STEP if target > low - 1e-9 else 0.0
        while target >= reach - 1e-9:
            c = costs(p, target, "ema").rename(index=dict(zip(p["config"], p["family"])))
            ran = ran_seeds(p, c)
            families = sorted(set(p.loc[p["dense"], "family"]))
            dense = c.loc[families]
            bound = dense.mask(ran.loc[families] & dense.isna(), horizon).mean(axis=1)  # seeds not run: left out
            best = str(bound.idxmin())
            reached = int(dense.loc[best].notna().sum())
            seeds = int(ran.loc[best].sum())
            rows.append(
                [
                    family_label(name),
                    f"{target:.2f}",
                    f"{c.loc[name].mean():.3g}",
                    f"`{best}` ({reached}/{seeds} seeds within the budget)",
                    f"> {bound[best] / c.loc[name].mean():.2f}",
                ]
            )
            target -= BEYOND_STEP
    if not rows:
        return f"No sparse recipe reaches, on every seed, a loss below the hardest dense-reachable target ({low:.4f})."
    head = ["recipe", "target", "its mean FLOPs", "cheapest dense family (a missed seed counted at the budget)"]
    return _md([*head, "speedup over the frontier"], rows)


def speedup_figure(p: pd.DataFrame, old: dict[str, float], path: Path, recipe: str) -> None:
    """Speedup against the target loss: every recipe's geometric mean against the frontier (thin), the best
    recipe's against the frontier and against the same-size dense with their 95% bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = old
    first = max(marks.values(), default=hardest(p) + 0.5)
    grid = np.linspace(first, hardest(p), GRID_POINTS)
    comps = [compare(p, loss) for loss in grid]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    cmap = plt.get_cmap("tab10")

    def full(c: dict, name: str, key: str) -> pd.Series:
        """The recipe's speedups at a target, empty unless it reached it on every seed (no partial means)."""
        s = c["sparse"][name]
        return s[key] if s["reached"] == s["seeds"] else pd.Series(dtype=float)

    for i, name in enumerate(dict.fromkeys(p.loc[~p["dense"], "family"])):
        ys = [interval(full(c, name, "vs_front"))[0] for c in comps]
        if name != recipe:
            ax.plot(grid, ys, color=cmap(i % 10), lw=0.9, alpha=0.7, label=f"{name} vs frontier")
            continue
        for key, ls, what in (("vs_front", "-", "dense frontier"), ("vs_same", "--", "same-size dense")):
            ci = np.array([interval(full(c, name, key)) for c in comps])
            ax.plot(grid, ci[:, 0], color="black", ls=ls, lw=2, label=f"{name} vs {what} (95% band)")
            ax.fill_between(grid, ci[:, 1], ci[:, 2], color="black", alpha=0.12 if key == "vs_front" else 0.06)
    for label, loss in marks.items():
        ax.axvline(loss, color="grey", lw=0.6, ls=":")
        ax.annotate(label, (loss, 1.0), xytext=(2, -12), textcoords="offset points", fontsize=7)
    ax.axhline(1.0, color="#d62728", ls="--", lw=1)
    ax.invert_xaxis()
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("target held-out MLM loss (harder to the right)")
    ax.set_ylabel("FLOP speedup (dense / sparse), geometric mean over seeds")
    ax.set_title(
        "Sparse recipes against the dense frontier at equal training FLOPs (where a recipe reached the target on "
        "every seed)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def envelope_figure(p: pd.DataFrame, path: Path) -> None:
    """Mean loss against FLOPs per family (dashed: dense; dotted: a control) and the two lower envelopes: the best
    dense and the best sparse recipe's loss at every budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = p["history"].map(lambda h: h[-1]["flops"]).min()
    grid = np.geomspace(2e12, end, 150)
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    cmap = plt.get_cmap("tab10")
    means = {}
    for i, (name, g) in enumerate(p.sort_values("dense", kind="stable").groupby("family", sort=False)):
        with warnings.catch_warnings():  # a budget no seed has evaluated at yet stays NaN: not drawn, not a fault
            warnings.simplefilter("ignore", RuntimeWarning)
            ys = np.nanmean([[loss_at(curve(h, "ema"), x) for x in grid] for h in g["history"]], axis=0)
        dense = bool(g["dense"].iloc[0])
        if name not in CONTROLS:
            means[name] = (dense, ys)
        ls = ":" if name in CONTROLS else "--" if dense else "-"
        ax.plot(grid, ys, color=cmap(i % 10), lw=1.0, ls=ls, label=name)
    for dense, color, what in ((True, "#1f77b4", "dense envelope"), (False, "#d62728", "sparse envelope")):
        ys = [m for d, m in means.values() if d == dense]
        if ys:
            ax.plot(grid, np.nanmin(ys, axis=0), color=color, lw=3, alpha=0.6, label=what)
    ax.set_xscale("log")
    low = min(np.nanmin(m) for _, m in means.values())
    ax.set_ylim(low - 0.05, low + 1.0)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("held-out MLM loss of the weight average (mean over seeds)")
    ax.set_title("Frontier against frontier: each family at its chosen rate", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def sections(
    df: pd.DataFrame, figures: Path | None, min_seeds: int = 3, fair_results: Path = FAIR_RESULTS
) -> dict[str, str]:
    """STUDY.md's Part A blocks by name; draws the figures into ``figures`` (None: none). ``fair_results``: the
    old study's runs, which define the old ladder of targets."""
    p = panel(df, min_seeds)
    old = ladder(fair_results)
    out = {"v3_setup": setup_text(df, p, min_seeds), "v3_tuning": tuning_table(df), "v3_kinds": kinds_table(df)}
    out["v3_spread"] = spread_table(df)
    ready = p["dense"].any() and (~p["dense"]).any() and not math.isnan(hardest(p))
    if not ready:
        waiting = "Waiting for runs: no dense and sparse families with enough seeds yet."
        blocks: tuple[str, ...] = (
            "v3_goal",
            "v3_figures",
            "v3_front",
            "v3_oracle",
            "v3_same",
            "v3_accounting",
            "v3_rules",
            "v3_beyond",
        )
        blocks += ("v3_confirm",)
        return out | {k: waiting for k in blocks}
    recipe = best_recipe(p)
    out["v3_goal"] = goal_text(p, old) + f" Best sparse recipe (the docstring's rule): `{recipe}`."
    dense_in, dense_all = p.loc[p["dense"], "family"].nunique(), df.loc[df["dense"], "family"].nunique()
    if dense_in < dense_all:
        out["v3_goal"] += (
            f" **Provisional:** {dense_in} of the {dense_all} dense families have {min_seeds} seeds and make the "
            "frontier so far (see the speedup table for which)."
        )
    out["v3_front"] = panel_text(df, p, min_seeds) + "\n\n" + speedup_table(p, old, "vs_front")
    out["v3_same"] = speedup_table(p, old, "vs_same")
    out["v3_oracle"] = oracle_table(df, p, old)
    out["v3_accounting"] = accounting_table(p, old, recipe) if recipe else "no sparse recipe"
    out["v3_beyond"] = beyond_table(p)
    out["v3_rules"] = rules_table(p, old, "old @1000")
    out["v3_confirm"] = "\n\n".join(confirm_text(p, plan) for plan in CONFIRMS)
    out["v3_figures"] = "no sparse recipe"
    if figures is not None and recipe:
        speedup_figure(p, old, figures / "study_speedup.png", recipe)
        envelope_figure(p, figures / "study_envelope.png")
        out["v3_figures"] = (
            "![Speedup against the target loss](figures/study_speedup.png)\n\n"
            "![Frontier against frontier](figures/study_envelope.png)\n\n"
            f"Left: each recipe's speedup over the dense frontier at every target (geometric mean over seeds, drawn "
            f"where it reached the target on every seed); thick: the best recipe (`{recipe}`), with its 95% band, "
            "against the frontier (solid) and against the same-size dense (dashed). Right: mean loss against FLOPs "
            "of every family at its chosen rate, and the lower envelopes of the dense and the sparse families."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--min-seeds", type=int, default=3, help="seeds a family needs at its rate to take part")
    ap.add_argument("--figures", type=Path, help="draw the figures here")
    ap.add_argument("--fair-results", type=Path, default=FAIR_RESULTS, help="the old study's runs (its ladder)")
    args = ap.parse_args(argv)
    df = load(args.results)
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
    for name, body in sections(df, args.figures, args.min_seeds, args.fair_results).items():
        print(f"## {name}\n\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
