"""Run the study's single-configuration training runs and append each to ``analysis/results/runs.jsonl``.

Every configuration of ``STUDY`` is trained from ``search_spaces/rigl.yaml`` with its overrides, for each seed,
to one fixed target loss: the held-out loss the seed-0 dense run reaches after ``target.dense_steps`` steps
(``--target``; by default the auto target of that spec). Runs already in the results file are skipped, so the
script can be stopped and started again. It trains (this is the only script under analysis/ that does);
``make_study.py`` only reads what it stored.

    python analysis/run_study.py                     # everything, seeds 0 1 2
    python analysis/run_study.py --groups rigl_level --seeds 0
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import load_spec
from sparsesearch.training.target import resolve_target
from sparsesearch.training.trainer import Trainer

BASE_SPEC = ROOT / "search_spaces" / "rigl.yaml"
RESULTS = ROOT / "analysis" / "results" / "runs.jsonl"
SEEDS = (0, 1, 2)

# The ablations vary one thing at a time around RigL at level 0.8 with ERK (the configuration the first search
# and single run pointed to); everything not named keeps the spec's default.
RIGL = ["sparsity.method=rigl"]
BASE = RIGL + ["sparsity.level=0.8", "sparsity.distribution=erk"]


def _grid() -> dict[str, tuple[str, list[str]]]:
    s: dict[str, tuple[str, list[str]]] = {"dense": ("baseline", ["sparsity.method=dense"])}
    for dist in ("uniform", "erk"):
        for level in (0.5, 0.7, 0.8, 0.9):
            s[f"rigl_{dist}_{level}"] = (
                "rigl_level",
                RIGL + [f"sparsity.level={level}", f"sparsity.distribution={dist}"],
            )
    s["layers_embed_proj_dense"] = ("layers", BASE + ["sparsity.dense_groups=[embed_proj]"])
    s["schedule_every_50"] = ("schedule", BASE + ["sparsity.update_every=50"])
    s["regularizer_l2"] = ("regularizer", BASE + ["sparsity.regularizer=l2", "sparsity.regularizer_strength=1e-4"])
    for method in ("set", "snfs", "gmp", "topkast"):
        s[f"algorithm_{method}"] = (
            "algorithm",
            [f"sparsity.method={method}", "sparsity.level=0.8", "sparsity.distribution=erk"],
        )
    # Our methods (analysis/METHODS.md) against RigL with the same knobs, and against the best RigL
    # configuration the rigl.yaml search found (trial 10 of analysis/results/search_rigl), with its knobs.
    for method in ("flop_rigl", "grow"):
        s[f"ours_{method}_0.8"] = (
            "ours",
            [f"sparsity.method={method}", "sparsity.level=0.8", "sparsity.distribution=erk"],
        )
    for method in ("rigl", "flop_rigl", "grow"):
        s[f"best_{method}"] = ("ours", [f"sparsity.method={method}", *BEST_RIGL_KNOBS])
    return s


# Trial 10 of the rigl.yaml search (net time 33.5 s vs dense 73.4 s there).
BEST_RIGL_KNOBS = [
    "sparsity.level=0.7639",
    "sparsity.distribution=erk",
    "sparsity.dense_groups=[embed_proj]",
    "sparsity.drop_fraction=0.3808",
    "sparsity.drop_schedule=cosine",
    "sparsity.update_every=18",
    "sparsity.update_end=0.7144",
    "train.lr=0.002512",
]

STUDY = _grid()


def _done(path: Path) -> set[tuple[str, int]]:
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["config"], r["seed"]) for r in rows}


def run_one(name: str, overrides: list[str], seed: int, target: float, data, group: str | None = None) -> dict:
    """Train one configuration of the base spec on ``seed`` to ``target`` and return its stored row."""
    spec = load_spec(str(BASE_SPEC), overrides + [f"train.seed={seed}", f"target.loss={target}"])
    trainer = Trainer(spec, data, target)
    for _ in trainer.run():
        pass
    assert trainer.result is not None  # run() sets it before it returns
    r = trainer.result.to_dict()
    history = [
        {k: h[k] for k in ("step", "eval_loss", "train_time_s", "flops", "dense_flops")} for h in r.pop("history")
    ]
    return {
        "config": name,
        "group": group or STUDY[name][0],
        "seed": seed,
        "overrides": overrides,
        **r,
        "history": history,
        "spec": spec.to_dict(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "host": platform.node(),
        "finished": time.time(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", nargs="*", help="only these groups (default: all)")
    p.add_argument("--configs", nargs="*", help="only these configurations")
    p.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    p.add_argument("--target", type=float, help="target loss (default: the seed-0 auto target of the base spec)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    spec = load_spec(str(BASE_SPEC), [])
    data = prepare_data(spec.data, spec.model)
    target = args.target if args.target is not None else resolve_target(spec, data).loss
    unknown = set(args.groups or []) - {g for g, _ in STUDY.values()} | set(args.configs or []) - set(STUDY)
    if unknown:
        p.error(f"unknown groups/configs {sorted(unknown)}; choices: {sorted(STUDY)}")
    todo = [
        (n, s)
        for n, (g, _) in STUDY.items()
        for s in args.seeds
        if (not args.groups or g in args.groups) and (not args.configs or n in args.configs)
    ]
    done = _done(args.out)
    todo = [(n, s) for n, s in todo if (n, s) not in done]
    # seeds outermost: a partial study still has every configuration on seed 0
    todo.sort(key=lambda ns: ns[1])
    print(f"target {target:.6f}; {len(todo)} runs to do", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for i, (name, seed) in enumerate(todo, 1):
        t0 = time.time()
        row = run_one(name, STUDY[name][1], seed, target, data)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"[{i}/{len(todo)}] {name} seed {seed}: {row['status']} steps {row['steps_to_target']} "
            f"net {row['net_time_s']:.1f}s flop_ratio {row['flop_ratio']:.3f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
