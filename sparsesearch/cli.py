"""Command line: parse the arguments, call the API (``api``), print what it returns (``render``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Sequence

from . import api, render
from .data.corpus import CorpusError
from .experiment import StorageError
from .model.embedding import EmbeddingSourceError
from .results.pareto import OBJECTIVES
from .results.table import ResultsError
from .spec import SpecError, describe_defaults

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
        choices=tuple(OBJECTIVES),
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
    p.add_argument("--by", choices=tuple(OBJECTIVES), help="rank by this measure (default: the search's objective)")
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


def cmd_flops(args) -> int:
    """`flops`: the FLOP breakdown of one training step of the spec's model, at the spec's sparsity."""
    est = api.flops(args.spec, args.overrides)
    print(json.dumps(render.flops_json(est), indent=1) if args.json else "\n".join(render.flops_lines(est)))
    return 0


def cmd_train(args) -> int:
    """`train`: train the spec's configuration to its target and report net time."""
    import torch

    out = sys.stderr if args.json else sys.stdout
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731

    budget = {"max_steps": 0}

    def model_line(trainer) -> None:
        spec = trainer.spec
        budget["max_steps"] = spec.train.max_steps
        say(
            f"model   {spec.model.num_layers} layers, hidden {spec.model.hidden_size}, method "
            f"{spec.sparsity.method}, device {trainer.device}, precision {trainer.precision.name}, "
            f"{torch.get_num_threads()} CPU threads"
        )

    done = api.train_run(
        args.spec,
        args.overrides,
        save=args.save,
        log=say,
        on_start=model_line,
        on_row=lambda row: say(render.train_row_line(row, budget["max_steps"])),
        save_option="--save",
    )
    if done.save_dir is not None:
        where = str(done.save_dir)
        say(f"saved   {where} (weights, masks, spec, metrics): sparsesearch.load_trained({where!r})")
    if args.json:
        print(json.dumps(render.trained_json(done)))
    else:
        say("\n".join(render.trained_lines(done)))
    return 0


def cmd_run(args) -> int:
    """`run`: validate the spec and search its space (or, with --dry-run, show it)."""
    plan = api.plan_search(
        args.spec,
        args.overrides,
        num_samples=args.num_samples,
        address=args.address,
        storage=args.storage,
        name=args.name,
    )
    if args.dry_run:
        print("\n".join(render.dry_run_lines(plan)))
        return 0
    return _searching(lambda console: api.run_plan(plan, log=console, verbose=args.verbose))


def cmd_resume(args) -> int:
    """`resume`: continue an interrupted experiment."""
    return _searching(
        lambda console: api.resume(
            args.experiment, args.num_samples, address=args.address, log=console, verbose=args.verbose
        )
    )


def _searching(start) -> int:
    """Run a search on the console, then print its summary there (and in its log file)."""
    from .search.progress import Console

    console = Console()
    try:
        results = start(console)
        for line in results.summary():
            console(line)
    finally:
        console.close()
    return 0


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
