"""From a search to use: the spec of the N-th best sparse trial that reached the target (``sparsesearch best``).

The spec is the experiment's spec with the trial's sampled values applied (``experiment.trial_spec``), written
in full (every key, defaults included) without its ``search`` and ``tune`` sections, so that ``sparsesearch train
best.yaml`` trains that configuration again. Its ``target`` section is the experiment's (``auto`` resolves to the
same cached target on the same machine); the losses the experiment trained to are in the file's header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..definitions import REACHED
from ..experiment import META_KEYS, SPARSE, trial_label, trial_spec
from ..spec import SpecError
from .pareto import OBJECTIVES
from .table import ResultsError, load_results, load_state


@dataclass(frozen=True)
class BestTrial:
    """The ``rank``-th best sparse trial that reached the target, by ``by`` (net_time or net_flops)."""

    rank: int
    by: str
    experiment: Path
    row: dict[str, Any]  # the trial's row of ``load_results``
    config: dict[str, Any]  # its sampled values, as Ray passed them
    spec: dict[str, Any]  # the full spec that trains it (plain YAML values; no search or tune section)
    target_losses: tuple[float, ...]

    @property
    def label(self) -> str:
        """The trial's one name (``trial N (ray id)``)."""
        return trial_label(self.row.get("trial"), str(self.row.get("trial_id")))

    def header(self) -> list[str]:
        """Comment lines saying where the spec comes from and what the trial measured."""
        r = self.row
        values = ", ".join(f"{k}={_plain(v)}" for k, v in self.config.items() if k not in META_KEYS)
        return [
            f"# {self.label} of {self.experiment}: rank {self.rank} of the sparse trials that reached the target, "
            f"by {self.by}",
            f"# {r.get('method')} sparsity {r.get('avg_sparsity', math.nan):.4f}, net time "
            f"{r.get('net_time_s', math.nan):.2f} s, net FLOPs {r.get('net_flops', math.nan):.4g}, "
            f"{r.get('steps_to_target', math.nan):.1f} steps to the target",
            f"# sampled values: {values or '-'}",
            f"# the experiment trained to the held-out losses {list(self.target_losses)} (set target.loss to "
            "them to train to exactly these)",
            "# train it: sparsesearch train THIS_FILE",
        ]

    def yaml(self) -> str:
        """The spec as a YAML document, with the header."""
        return "\n".join(self.header()) + "\n" + yaml.safe_dump(self.spec, sort_keys=False)


def _plain(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _yaml_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _yaml_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_yaml_ready(v) for v in x]
    return x


def best_trial(path: str | Path, rank: int = 0, by: str | None = None) -> BestTrial:
    """The ``rank``-th best (0: the best) sparse trial of the experiment at ``path`` that reached the target,
    ranked by ``by`` (default: the search's objective). Raises ``ResultsError`` in one line when no sparse trial
    reached the target or ``rank`` is out of range."""
    if by is not None and by not in OBJECTIVES:
        raise ResultsError(f"--by: must be one of {', '.join(OBJECTIVES)}, got {by!r}")
    if rank < 0:
        raise ResultsError(f"--rank: must be >= 0, got {rank}")
    df = load_results(path)
    exp = Path(df.attrs["experiment"])
    by = by or df.attrs.get("objective", "net_time")
    reached = df[(df["role"] == SPARSE) & (df["status"] == REACHED)]
    if reached.empty:
        raise ResultsError(f"{exp}: no sparse trial reached the target ({len(df)} trials so far)")
    if rank >= len(reached):
        raise ResultsError(
            f"--rank {rank}: out of range, {len(reached)} sparse trial(s) reached the target (ranks 0 to "
            f"{len(reached) - 1})"
        )
    row = reached.sort_values([OBJECTIVES[by], "trial"], kind="stable").iloc[rank]
    config = df.attrs["configs"].get(row["trial_id"], {})
    raw = load_state(exp)["raw"]
    try:
        spec = trial_spec(raw, config)
    except SpecError as e:  # the trial trained, so its values fitted once: a hand-edited experiment
        raise ResultsError(f"{exp}: {row['trial_id']}'s values no longer make a valid spec ({e})") from None
    full = _yaml_ready(spec.to_dict())
    for section in ("search", "tune"):
        full.pop(section, None)
    return BestTrial(
        rank=rank,
        by=by,
        experiment=exp,
        row=row.to_dict(),
        config=dict(config),
        spec=full,
        target_losses=tuple(df.attrs.get("target_losses") or ()),
    )
