"""A fingerprint of what training does, to prove that a refactor changed nothing: every method x precision.

    python benchmarks/behaviour_fingerprint.py [SPEC] [--steps N] [--out FILE.json]

Trains every registered sparsity method in fp32 and bf16 for ``--steps`` steps on the spec's model (default: the
smoke spec, mask updates every 5 steps, a fixed unreachable target so that no target run is needed) and records,
per run: the held-out loss at every evaluation, cumulative and dense FLOPs, the average sparsity, the fraction of
connections each mask update changed, the final layer densities, net FLOPs, and SHA-256 digests of the final masks
and weights. Run it before and after a change and compare the JSON files: equal files, equal behaviour.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from sparsesearch.data.batches import prepare_data
from sparsesearch.sparsity.registry import METHODS
from sparsesearch.spec import load_spec
from sparsesearch.training.trainer import Trainer


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def fingerprint(spec_path: str, steps: int) -> dict[str, dict]:
    """Every method x {fp32, bf16}: what a run of ``steps`` steps did, as plain JSON values."""
    out = {}
    for method in METHODS:
        for precision in ("fp32", "bf16"):
            overrides = [
                f"sparsity.method={method}",
                f"train.precision={precision}",
                f"train.max_steps={steps}",
                "train.eval_every=10",
                "sparsity.update_every=5",
                "target.loss=0.01",
            ]
            spec = load_spec(spec_path, overrides)
            trainer = Trainer(spec, prepare_data(spec.data, spec.model), spec.target.loss)
            rows = [
                {k: row[k] for k in ("step", "eval_loss", "flops", "dense_flops", "avg_sparsity", "status")}
                for row in trainer.run()
            ]
            s = trainer.sparsifier
            out[f"{method}/{precision}"] = {
                "rows": rows,
                "updates": [u.get("changed") for u in s.updates],
                "densities": s.densities(),
                "net_flops": trainer.result.net_flops if trainer.result else None,
                "masks": _digest(s.masks),
                "weights": _digest(dict(trainer.model.state_dict())),
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(Path(__file__).parents[1] / "search_spaces" / "smoke.yaml"))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    result = fingerprint(args.spec, args.steps)
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    print(f"{len(result)} runs, fingerprint {digest}" + (f" (written to {args.out})" if args.out else ""))


if __name__ == "__main__":
    main()
