"""Text for the console: what the commands print about a spec, a FLOP estimate, a trained run and a search plan.

Pure formatting of what the API returns (``api.FlopsEstimate``, ``api.TrainedRun``, ``api.SearchPlan``); no
flow, no checks. The command line prints these lines; a notebook can too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .definitions import DIVERGED, NOT_REACHED, REACHED, json_safe
from .results.format import plural

if TYPE_CHECKING:
    from .api import FlopsEstimate, SearchPlan, TrainedRun
    from .model.flops import StepFlops
    from .spec import Spec
    from .training.trainer import RunResult, Trainer


def flops_table(step: StepFlops, title: str) -> list[str]:
    """A step's FLOPs per component group and per layer, with the non-matmul estimate apart."""
    total = step.total
    lines = [
        f"{title}: {total / 1e9:,.2f} GFLOP matmul (forward {step.forward / 1e9:,.2f}, backward "
        f"{(total - step.forward) / 1e9:,.2f}); sparsifiable weights {step.sparsifiable / total:.1%}"
    ]
    lines.append(f"  {'component':<16}{'GFLOP':>10}{'share':>8}")
    for group, v in step.by_group().items():
        lines.append(f"  {group:<16}{v / 1e9:>10.3f}{v / total:>8.1%}")
    lines.append(f"  {'per layer':<16}")
    for layer, v in step.by_layer().items():
        lines.append(f"  {layer:<16}{v / 1e9:>10.3f}{v / total:>8.1%}")
    non = sum(step.nonmatmul.values())
    lines.append(
        f"  non-matmul (estimate, not in totals): {non / 1e9:,.3f} GFLOP "
        + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in step.nonmatmul.items())
    )
    return lines


def flops_dict(step: StepFlops) -> dict[str, Any]:
    """A step's FLOPs as plain JSON values: totals, groups, layers and every component."""
    return {
        "total": step.total,
        "forward": step.forward,
        "sparsifiable": step.sparsifiable,
        "by_group": step.by_group(),
        "by_layer": step.by_layer(),
        "nonmatmul_estimate": dict(step.nonmatmul),
        "components": [
            {
                "name": c.name,
                "group": c.group,
                "layer": c.layer,
                "forward": c.forward,
                "backward_input": c.backward_input,
                "backward_weight": c.backward_weight,
                "sparsifiable": c.sparsifiable,
                "density": c.density,
            }
            for c in step.components
        ],
    }


def flops_json(est: FlopsEstimate) -> dict[str, Any]:
    """``flops --json``."""
    spec = est.spec
    return {
        "batch_size": spec.train.batch_size,
        "seq_len": est.shape.seq_len,
        "masked_positions": est.masked_positions,
        "method": spec.sparsity.method,
        "level": spec.sparsity.level,
        **flops_dict(est.step),
        "flop_ratio": est.step.total / est.dense.total,
        "update_step_total": est.update_step.total,
        "dense_total": est.dense.total,
    }


def flops_lines(est: FlopsEstimate) -> list[str]:
    """``flops``: the model, the sparsity, the step's breakdown and its FLOP ratio."""
    spec, shape, dense = est.spec, est.shape, est.dense
    sparse = spec.sparsity.method != "dense"
    lines = [
        f"model: hidden {shape.hidden}, {shape.layers} layers, {shape.heads} heads, ffn {shape.ffn}, "
        f"embedding {shape.vocab}x{shape.emb_dim} ({'trainable' if shape.embedding_trainable else 'frozen'}); "
        f"batch {spec.train.batch_size} x {shape.seq_len} tokens, ~{est.masked_positions:.0f} masked positions"
    ]
    if sparse:
        lines.append(
            f"sparsity: method {spec.sparsity.method}, level {spec.sparsity.level:g}, distribution "
            f"{spec.sparsity.distribution}; every mask at its target density"
        )
    lines += flops_table(est.step, "FLOPs per training step" + (" (a step without a mask update)" if sparse else ""))
    if sparse:
        upd = est.update_step.total
        lines.append(
            f"FLOP ratio {est.step.total / dense.total:.4f} of dense ({dense.total / 1e9:,.2f} GFLOP); "
            f"a step followed by a mask update: {upd / 1e9:,.2f} GFLOP ({upd / dense.total:.4f} of dense)"
        )
    return lines


def train_row_line(row: dict, max_steps: int) -> str:
    """One evaluation of ``train``; the ETA is an upper bound (a run that reaches its target ends sooner)."""
    train_loss = "   -   " if row["train_loss"] is None else f"{row['train_loss']:.4f}"
    eta = row["train_time_s"] / row["step"] * (max_steps - row["step"]) if row["step"] else None
    return (
        f"  step {row['step']:>5}/{max_steps}  eval {row['eval_loss']:.4f}  train {train_loss}  "
        f"time {row['train_time_s']:7.1f}s  net {row['net_time_s']:7.1f}s"
        + (f"  ETA <= {eta:.0f}s" if eta is not None else "")
    )


def result_lines(r: RunResult) -> list[str]:
    """The readable summary of a run's result."""
    verdict = {
        REACHED: "REACHED the target",
        NOT_REACHED: "did NOT reach the target (budget spent)",
        DIVERGED: "DIVERGED (non-finite loss)",
    }[r.status]
    proj = "  (projected: target not reached)" if r.projected else ""
    lines = [
        f"\nresult  {verdict} after {r.steps} steps; final held-out loss {r.final_eval_loss:.4f}, "
        f"target {r.target_loss:.4f}"
    ]
    if r.steps_to_target is not None:
        lines.append(f"  steps to target   {r.steps_to_target:.1f} (interpolated between evaluations)")
    return [
        *lines,
        f"  time to target    {r.time_to_target_s:.2f} s (training only, evaluation excluded){proj}",
        f"  FLOP ratio        {r.flop_ratio:.4f} (FLOPs needed / dense FLOPs for the same steps)",
        f"  net time          {r.net_time_s:.2f} s (time to target x FLOP ratio, in dense-equivalent seconds: net "
        f"FLOPs at the measured dense price x the method's overhead {r.method_overhead:.3f}){proj}",
        f"  wall net time     {r.wall_net_time_s:.2f} s (wall-clock time to target x FLOP ratio){proj}",
        f"  net FLOPs         {r.net_flops:.4g}",
        f"  avg sparsity      {r.avg_sparsity:.4f}",
    ]


def sparsity_lines(trainer: Trainer) -> list[str]:
    """Per-layer densities at the end of a run against their targets, and what the mask updates changed."""
    sparsifier = trainer.sparsifier
    sparsity = trainer.spec.sparsity
    if not sparsifier.masks:
        return [f"sparsity: method {sparsity.method}: every weight dense"]
    lines = [
        f"sparsity: method {sparsity.method}, level {sparsity.level:g}, distribution {sparsity.distribution}; "
        f"per-layer density at the end (target):"
    ]
    for name, d in sparsifier.densities().items():
        lines.append(f"  {name:<48}{d:>8.4f}  ({sparsifier.target_density[name]:.4f})")
    done = [u for u in sparsifier.updates if "changed" in u]
    skipped = len(sparsifier.updates) - len(done)
    if done:
        mean_changed = sum(sum(u["changed"].values()) / len(u["changed"]) for u in done) / len(done)
        lines.append(
            f"  mask updates: {len(done)} (steps {done[0]['step']}..{done[-1]['step']}), mean fraction "
            f"of active connections changed per update {mean_changed:.4f}"
            + (f"; {skipped} skipped (non-finite gradients)" if skipped else "")
        )
    else:
        lines.append("  mask updates: none" + (f" ({skipped} skipped: non-finite gradients)" if skipped else ""))
    return lines


def trained_lines(run: TrainedRun) -> list[str]:
    """``train``'s summary: the result, the sparsity at the end, the FLOPs of a step with the final masks."""
    step, _ = run.trainer.step_flops(run.trainer.expected_masked())
    return [
        *result_lines(run.result),
        "",
        *sparsity_lines(run.trainer),
        "",
        *flops_table(step, "FLOPs per training step (masks at the end of the run)"),
    ]


def trained_json(run: TrainedRun) -> dict[str, Any]:
    """``train --json``: the result, the FLOPs of a step with the final masks and the data (its fingerprint
    included); infinite values as null."""
    step, _ = run.trainer.step_flops(run.trainer.expected_masked())
    payload = {
        "target_source": run.target.source,
        **run.result.to_dict(),
        "flops_per_step": flops_dict(step),
        "data": run.data.stats,
    }
    return json_safe(payload)


def target_lines(spec: Spec) -> list[str]:
    """The target rungs a search would aim at, and which one is its objective."""
    t = spec.target
    if t.loss == "auto":
        rungs = [f"the loss a dense run of the spec's model reaches in {s} steps" for s in t.rung_steps]
        how = "measured once before the trials start, and cached"
    else:
        losses = t.loss if isinstance(t.loss, tuple) else (float(t.loss),)
        rungs, how = [f"loss {v:g}" for v in losses], "given in the spec"
    lines = [f"target rungs, {how}:"]
    lines += [
        f"  rung {i}: {r}" + ("  <- the objective" if i == t.objective_index else "") for i, r in enumerate(rungs)
    ]
    return lines


def family_lines(plan: SearchPlan) -> list[str]:
    """The dense family a search would train: its sizes, their learning-rate grids and the tuning budget."""
    from .search.family import plan_family, tuned_keys

    sizes, configs = plan_family(plan.spec, plan.raw, plan.params)
    keys = tuned_keys(plan.params)
    fam = plan.spec.search.dense_family
    other = f"; also drawn: {', '.join(keys)}" if keys else ""
    lines = [
        f"dense family: {len(sizes)} sizes, {len(configs)} trials; learning rates on a grid of {fam.configs} per "
        f"size around train.lr x (width / {plan.spec.model.hidden_size}) ^ -{fam.lr_width_exponent:g}, "
        f"neighbours x{fam.lr_spread:g}{other}"
    ]
    lines += [
        f"  size {s.index}: {plural(s.layers or plan.spec.model.num_layers, 'layer')}, hidden {s.hidden}, ffn {s.ffn}, "
        f"{plural(s.heads, 'head')}, {s.flop_ratio:.2f} of the spec's FLOPs per step; lr "
        + ", ".join(f"{lr:.3g}" for lr in sorted(s.lrs))
        for s in sizes
    ]
    return lines


def asha_line(spec: Spec) -> str:
    """Where early stopping decides: the grace period as given and the rungs it makes."""
    from .checks import DEFAULT_GRACE_PERCENT, asha_rungs, dense_step_flops

    a = spec.search.asha
    flops = a.unit == "flops"
    rungs = asha_rungs(spec, dense_step_flops(spec) if flops else 1.0)
    unit = "net FLOPs" if flops else "dense-equivalent steps of net compute"
    if a.grace_period is None:
        given = f" (default: {DEFAULT_GRACE_PERCENT:g}% of {spec.target.horizon} dense steps, within [1, max_t])"
    elif isinstance(a.grace_period, str):
        given = f" ({a.grace_period} of {spec.target.horizon} dense steps)"
    else:
        given = ""
    return (
        f"early stopping: ASHA on {unit}, grace period {rungs[0]:.4g}{given}, reduction factor "
        f"{a.reduction_factor:g}; a sparse trial may be stopped at " + ", ".join(f"{r:.4g}" for r in rungs)
    )


def dry_run_lines(plan: SearchPlan, samples: int = 5) -> list[str]:
    """``run --dry-run``: the resolved space, the target rungs, the dense family, where ASHA decides, and a few
    sampled (validated) configurations or the first combinations of a grid."""
    from .search.space import sample_configs

    spec = plan.spec
    lines = [
        f"search space of {plan.path} ({spec.search.sampler}, objective {spec.search.objective}"
        f"{' + sparsity' if spec.search.pareto else ''}, {spec.search.num_samples} sparse trials + the dense "
        "family):"
    ]
    for p in plan.params:
        cond = "" if not p.when else "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when)
        step = f" step {p.step}" if p.step is not None else ""
        lines.append(f"  {p.key:<28} {p.kind:<10} {list(p.values)}{step}{cond}")
    lines += [*target_lines(spec), *family_lines(plan), asha_line(spec)]
    grid = spec.search.sampler == "grid"
    lines.append("the first combinations of the grid:" if grid else "sampled configurations (random, validated):")
    for cfg in sample_configs(spec, plan.raw, samples, seed=spec.search.seed):
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())
        lines.append(f"  {text}{'' if 'invalid' in cfg else _cost_text(plan, cfg)}")
    return lines


def _cost_text(plan: SearchPlan, config: dict) -> str:
    """What a sampled configuration's training step costs, against a dense step of the spec's model, and the
    level an iso-FLOP configuration gets (``sparsity.match_flops_of``)."""
    from .checks import checked_trial_spec, dense_step_flops, step_cost

    trial = checked_trial_spec(plan.raw, config)
    cost, dense = step_cost(trial), dense_step_flops(plan.spec)
    text = f"  -> {cost / 1e9:.4g} GFLOP/step ({cost / dense:.2f} of a dense step of the spec's model"
    if trial.sparsity.match_flops_of:
        text += f"; level {trial.sparsity.level:.3f} matches a dense {dict(trial.sparsity.match_flops_of)}"
    return text + ")"
