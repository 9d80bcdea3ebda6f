"""Command line: thin commands over spec -> data -> target -> trainer and the FLOP model."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import typing
from collections.abc import Sequence

from .data.corpus import CorpusError
from .experiment import StorageError
from .model.embedding import EmbeddingSourceError
from .results.table import ResultsError
from .spec import Spec, SpecError, describe_defaults, load_spec

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
_USER_ERRORS = (SpecError, EmbeddingSourceError, CorpusError, ResultsError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not a usage dump
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key by dotted path, e.g. --set train.lr=3e-4 (repeatable)",
    )


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="YAML spec file (see `sparsesearch defaults` for every key)")
    _add_set_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a readable summary")


def _add_results_args(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("experiment", help="the experiment directory (printed by `sparsesearch run`)")
    p.add_argument("--out", help=f"output directory (default: EXPERIMENT/{name})")
    p.add_argument(
        "--by",
        choices=("net_time", "net_flops"),
        help="the front's cost axis (default: net_time for export, the search's objective for report)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(
        prog="sparsesearch",
        description=(
            "Search dynamic-sparsity training recipes for a small BERT by FLOP-adjusted time to a target MLM loss."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    p = sub.add_parser(
        "train",
        help="train the spec's configuration to its target loss and report net time",
        description="Train the spec's fixed configuration until the held-out MLM loss reaches the "
        "target (resolving an 'auto' target first), then report time-to-target, FLOP "
        "ratio, net time and the FLOP breakdown.",
    )
    _add_spec_args(p)
    p.add_argument(
        "--save",
        metavar="DIR",
        help="save the trained model with its masks, the spec and the metrics to DIR (new, empty, or an earlier "
        "save); load it with sparsesearch.load_trained(DIR)",
    )
    p = sub.add_parser(
        "flops",
        help="print the FLOP breakdown of one training step",
        description="Analytic FLOPs of one training step of the spec's model, per component and "
        "per layer (expected number of masked positions).",
    )
    _add_spec_args(p)
    p = sub.add_parser(
        "run",
        help="search the spec's space with Optuna + ASHA on Ray Tune",
        description="Search the spec's `search` section: Optuna proposes configurations, ASHA stops "
        "unpromising ones at equal compute, Ray Tune runs them here or on a cluster. "
        "A dense family (the spec's model and narrower ones, tuned alike) is part of every experiment. Prints "
        "the dense family, the best sparse configurations with both speedups, and the result directory.",
    )
    p.add_argument("spec", help="YAML spec file with a search section")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)")
    p.add_argument(
        "--storage", help="directory holding experiments (not a URI); on a cluster, one every node reaches (e.g. NFS)"
    )
    p.add_argument("--name", help="experiment name (default: spec name and a timestamp)")
    p.add_argument("--num-samples", type=int, help="number of sparse trials (besides the dense family)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, print the resolved space and a few sampled configurations; train nothing",
    )
    p.add_argument(
        "--verbose", action="store_true", help="also print every evaluation of every trial, and Ray's own output"
    )
    _add_set_arg(p)
    p = sub.add_parser(
        "resume",
        help="continue an interrupted experiment",
        description="Continue an interrupted experiment: finished trials are kept, unfinished ones "
        "resume from their checkpoints, the search continues where it stopped. With --num-samples N, extend a "
        "finished search by N sparse trials drawn from the same Optuna study.",
    )
    p.add_argument("experiment", help="the experiment directory (printed by `sparsesearch run`)")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)")
    p.add_argument(
        "--num-samples",
        type=int,
        help="extend a finished search by this many sparse trials; the sampler learns from every earlier one",
    )
    p.add_argument(
        "--verbose", action="store_true", help="also print every evaluation of every trial, and Ray's own output"
    )
    p = sub.add_parser(
        "export",
        help="write the trial table, the Pareto front and its plots",
        description="Write trials.csv, pareto.csv, pareto.json, pareto.png and pareto.html for an "
        "experiment, from its stored results (finished, running or interrupted).",
    )
    _add_results_args(p, "export")
    p = sub.add_parser(
        "report",
        help="write a markdown report of an experiment with its figures",
        description="Write report.md with its figures (and everything `export` writes): summary, "
        "dense family, best configurations, speedup per rung, Pareto front, loss against compute, "
        "parameter importances, per-method comparison, where the FLOPs go.",
    )
    _add_results_args(p, "report")
    p = sub.add_parser(
        "best",
        help="write the spec of the best sparse trial that reached the target, ready for `train`",
        description="Write the full spec of the N-th best sparse trial that reached the target (the experiment's "
        "spec with the trial's values; no search or tune section) as YAML, so that `sparsesearch train FILE` "
        "trains it again. Printed when no --out is given.",
    )
    p.add_argument("experiment", help="the experiment directory (printed by `sparsesearch run`)")
    p.add_argument("--rank", type=int, default=0, help="0: the best trial (default), 1: the second best, ...")
    p.add_argument("--out", help="write the spec to this file (default: print it)")
    p.add_argument(
        "--by", choices=("net_time", "net_flops"), help="rank by this measure (default: the search's objective)"
    )
    p = sub.add_parser(
        "list",
        help="list the experiments in a storage directory with their status and best result",
        description="One line per experiment under STORAGE: name, status (running, finished, interrupted, not "
        "started), trials that reached the target of all, and the best sparse trial's objective. A folder that "
        "cannot be read shows as 'unreadable: <reason>'.",
    )
    p.add_argument("storage", nargs="?", default="runs", help="the directory holding experiments (default: runs)")
    sub.add_parser(
        "defaults",
        help="print every spec key with its default and meaning",
        description="Print the default spec as commented YAML: every key of every section with "
        "its default value and meaning. Start a spec from it: "
        "sparsesearch defaults > my.yaml",
    )
    return parser


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _flops_table(step, title: str) -> list[str]:
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


def _flops_dict(step) -> dict:
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


def _sparsity_lines(trainer) -> list[str]:
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


def _load_checked(path: str, overrides: Sequence[str]) -> Spec:
    """The spec file with its overrides, with every rule checked (the method registry's too)."""
    from .checks import check_spec

    spec = load_spec(path, overrides)
    check_spec(spec)
    return spec


def cmd_flops(args) -> int:
    """`flops`: the FLOP breakdown of one training step of the spec's model, at the spec's sparsity."""
    from .model.embedding import model_shape
    from .model.flops import expected_masked, step_flops
    from .sparsity.registry import get_method

    spec = _load_checked(args.spec, args.overrides)
    shape = model_shape(spec.model)
    vocab, emb_dim = shape.vocab, shape.emb_dim
    n = expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
    dense = step_flops(shape, spec.train.batch_size, n)
    method = get_method(spec.sparsity.method)(spec.sparsity)
    steps = {
        kind: step_flops(shape, spec.train.batch_size, n, method.step_densities(shape.weight_shapes(), update))
        for kind, update in (("step", False), ("update_step", True))
    }
    if args.json:
        print(
            json.dumps(
                {
                    "batch_size": spec.train.batch_size,
                    "seq_len": shape.seq_len,
                    "masked_positions": n,
                    "method": spec.sparsity.method,
                    "level": spec.sparsity.level,
                    **_flops_dict(steps["step"]),
                    "flop_ratio": steps["step"].total / dense.total,
                    "update_step_total": steps["update_step"].total,
                    "dense_total": dense.total,
                },
                indent=1,
            )
        )
        return 0
    sparse = spec.sparsity.method != "dense"
    print(
        f"model: hidden {shape.hidden}, {shape.layers} layers, {shape.heads} heads, ffn {shape.ffn}, "
        f"embedding {vocab}x{emb_dim} ({'trainable' if shape.embedding_trainable else 'frozen'}); "
        f"batch {spec.train.batch_size} x {shape.seq_len} tokens, ~{n:.0f} masked positions"
    )
    if sparse:
        print(
            f"sparsity: method {spec.sparsity.method}, level {spec.sparsity.level:g}, distribution "
            f"{spec.sparsity.distribution}; every mask at its target density"
        )
    title = "FLOPs per training step" + (" (a step without a mask update)" if sparse else "")
    print("\n".join(_flops_table(steps["step"], title)))
    if sparse:
        upd = steps["update_step"].total
        print(
            f"FLOP ratio {steps['step'].total / dense.total:.4f} of dense ({dense.total / 1e9:,.2f} GFLOP); "
            f"a step followed by a mask update: {upd / 1e9:,.2f} GFLOP ({upd / dense.total:.4f} of dense)"
        )
    return 0


def cmd_train(args) -> int:
    """`train`: train the spec's configuration to its target and report net time."""
    import torch

    from .train.session import start_session

    spec = _load_checked(args.spec, args.overrides)
    save_dir = _save_dir(args.save) if args.save else None  # a bad --save fails before any training
    out = sys.stderr if args.json else sys.stdout
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    session = start_session(spec, say)
    target, trainer = session.target, session.trainer
    say(
        f"model   {spec.model.num_layers} layers, hidden {spec.model.hidden_size}, method "
        f"{spec.sparsity.method}, device {trainer.device}, precision {trainer.precision.name}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    max_steps = spec.train.max_steps
    for row in trainer.run():
        train_loss = "   -   " if row["train_loss"] is None else f"{row['train_loss']:.4f}"
        # The budget bounds the rest: a run that reaches its target sooner ends sooner.
        eta = row["train_time_s"] / row["step"] * (max_steps - row["step"]) if row["step"] else None
        say(
            f"  step {row['step']:>5}/{max_steps}  eval {row['eval_loss']:.4f}  train {train_loss}  "
            f"time {row['train_time_s']:7.1f}s  net {row['net_time_s']:7.1f}s"
            + (f"  ETA <= {eta:.0f}s" if eta is not None else "")
        )
    r = trainer.result
    assert r is not None  # set when run() ends
    step_actual, _ = trainer.step_flops(trainer.expected_masked())
    if save_dir is not None:
        from .train.saved import save_trained

        save_trained(trainer, save_dir, target_source=target.source)
        say(f"saved   {save_dir} (weights, masks, spec, metrics): sparsesearch.load_trained({str(save_dir)!r})")
    if args.json:
        payload = {
            "target_source": target.source,
            **r.to_dict(),
            "flops_per_step": _flops_dict(step_actual),
            "data": session.data.stats,
        }
        print(json.dumps(_json_safe(payload)))
        return 0
    say("\n".join(_result_lines(r)))
    say("\n".join(["", *_sparsity_lines(trainer), ""]))
    say("\n".join(_flops_table(step_actual, "FLOPs per training step (masks at the end of the run)")))
    return 0


def _result_lines(r) -> list[str]:
    """The readable summary of a run's result."""
    from .definitions import DIVERGED, NOT_REACHED, REACHED

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


def _run_overrides(args) -> list[str]:
    extra = []
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise SpecError(f"--num-samples: must be >= 1, got {args.num_samples}")
        extra.append(f"search.num_samples={args.num_samples}")
    for flag, key in (("address", "tune.address"), ("storage", "tune.storage"), ("name", "tune.name")):
        value = getattr(args, flag)
        if value is not None:
            extra.append(f"{key}={json.dumps(value)}")
    return [*args.overrides, *extra]


def cmd_run(args) -> int:
    """`run`: validate the spec and search its space (or, with --dry-run, show it)."""
    from .checks import check_spec
    from .spec import apply_override, load_raw, spec_from_dict

    raw = load_raw(args.spec)
    if not isinstance(raw, dict):
        spec_from_dict(raw)  # reports what the file should be
    for o in _run_overrides(args):
        apply_override(raw, o)
    spec = spec_from_dict(raw)
    params = check_spec(spec, raw)
    if not params:
        raise SpecError("search.params: nothing to search; add keys such as sparsity.level: {uniform: [0.5, 0.9]}")
    if args.dry_run:
        from .search.space import sample_configs

        print(
            f"search space of {args.spec} ({spec.search.sampler}, objective {spec.search.objective}"
            f"{' + sparsity' if spec.search.pareto else ''}, {spec.search.num_samples} sparse trials + the dense "
            "family):"
        )
        for p in params:
            cond = "" if not p.when else "  when " + ", ".join(f"{k} in {list(v)}" for k, v in p.when)
            step = f" step {p.step}" if p.step is not None else ""
            print(f"  {p.key:<28} {p.kind:<10} {list(p.values)}{step}{cond}")
        print(_target_text(spec))
        print(_family_text(spec, raw, params))
        print(_asha_text(spec))
        grid = spec.search.sampler == "grid"
        print("the first combinations of the grid:" if grid else "sampled configurations (random, validated):")
        for cfg in sample_configs(spec, raw, 5, seed=spec.search.seed):
            print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items()))
        return 0
    from .results.summary import summarize
    from .search.driver import run_search
    from .search.progress import Console

    console = Console()
    try:
        exp = run_search(args.spec, raw, spec, log=console, verbose=args.verbose)
        for line in summarize(exp):
            console(line)
    finally:
        console.close()
    return 0


def _asha_text(spec: Spec) -> str:
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


def _target_text(spec: Spec) -> str:
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
    return "\n".join(lines)


def _family_text(spec: Spec, raw: dict, params) -> str:
    """The dense family a search would train: its sizes and its tuning budget."""
    from .search.family import plan_family, tuned_keys

    sizes, _ = plan_family(spec, raw, params)
    keys = tuned_keys(params)
    fam = spec.search.dense_family
    lines = [
        f"dense family: {len(sizes)} size(s) x {fam.configs if keys else 1} configuration(s), tuned on "
        + (", ".join(keys) if keys else "nothing (no searched key outside sparsity)")
    ]
    lines += [
        f"  size {s.index}: hidden {s.hidden}, ffn {s.ffn}, {s.heads} heads, {s.flop_ratio:.2f} of the spec's "
        "FLOPs per step"
        for s in sizes
    ]
    return "\n".join(lines)


def cmd_resume(args) -> int:
    """`resume`: continue an interrupted experiment."""
    from .results.summary import summarize
    from .search.driver import resume_search
    from .search.progress import Console

    if args.num_samples is not None and args.num_samples < 1:
        raise SpecError(f"--num-samples: must be >= 1, got {args.num_samples}")
    console = Console()
    try:
        exp = resume_search(
            args.experiment, address=args.address, more=args.num_samples or 0, log=console, verbose=args.verbose
        )
        for line in summarize(exp):
            console(line)
    finally:
        console.close()
    return 0


def _save_dir(path: str):
    """``train --save DIR``, checked and created before training."""
    from .train.saved import prepare_save_dir

    return prepare_save_dir(path)


def cmd_best(args) -> int:
    """`best`: the full spec of the N-th best sparse trial that reached the target, as YAML."""
    from .results.best import best_trial

    best = best_trial(args.experiment, args.rank, args.by)
    if not args.out:
        sys.stdout.write(best.yaml())
        return 0
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(best.yaml())
    except OSError as e:
        raise ResultsError(f"--out {args.out}: cannot write ({e.strerror or e})") from None
    print(
        f"wrote {args.out}: {best.label}, rank {best.rank} by {best.by} ({best.row['method']}, sparsity "
        f"{best.row['avg_sparsity']:.4f}); train it with: sparsesearch train {args.out}"
    )
    return 0


def cmd_list(args) -> int:
    """`list`: one line per experiment in a storage directory."""
    from .results.listing import listing_lines

    print("\n".join(listing_lines(args.storage)))
    return 0


def cmd_export(args) -> int:
    """`export`: the trial table, the Pareto front and its plots."""
    from .results.export import export

    files = export(args.experiment, args.out, by=args.by or "net_time")
    _print_results_summary(args.experiment)
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def cmd_report(args) -> int:
    """`report`: the markdown report of an experiment with its figures."""
    from .results.report import report

    path = report(args.experiment, args.out, by=args.by)
    _print_results_summary(args.experiment)
    print(f"wrote {path} (and its figures and the export files beside it)")
    return 0


def _print_results_summary(experiment: str) -> None:
    from .results.table import load_results

    df = load_results(experiment)
    counts = df["status"].value_counts()
    print(f"{df.attrs['name']}: {len(df)} trials (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors print one line and return exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "defaults":
            from .model.shape import SPARSIFIABLE_GROUPS
            from .sparsity.registry import METHODS

            sys.stdout.write(
                describe_defaults({"sparsity.method": METHODS, "sparsity.dense_groups": SPARSIFIABLE_GROUPS})
            )
            return 0
        return {
            "train": cmd_train,
            "flops": cmd_flops,
            "run": cmd_run,
            "resume": cmd_resume,
            "export": cmd_export,
            "report": cmd_report,
            "best": cmd_best,
            "list": cmd_list,
        }[args.command](args)
    except _USER_ERRORS as e:
        print(f"sparsesearch {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as e:  # not the user's input: the search ran and stopped (exit 1, as any failed run)
        print(f"sparsesearch {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sparsesearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (e.g. `| head`): stop quietly, as a command killed by SIGPIPE would
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _one_line(e: Exception) -> str:
    """The error's message on one line (a key or value from the user's file may hold line breaks)."""
    return " ".join(str(e).replace("\r", "\n").split("\n"))


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured, replaced)
        pass


if __name__ == "__main__":
    sys.exit(main())
