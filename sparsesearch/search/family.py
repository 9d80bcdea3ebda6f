"""The dense family of a search: dense models of several widths, each tuned like the sparse trials.

A sparse model that only beats the dense model of its own size has not beaten dense: a narrower dense model may
reach the target with as few FLOPs (the RigL paper's Small-Dense baseline). Every search therefore trains the
spec's own model densely (the same-size dense) and ``sizes - 1`` narrower ones, spaced geometrically in width
down to one whose FLOPs per step are at or below the sparsest sparse trial's. Each size is trained with the
spec's own values of the searched keys outside the sparsity section and with ``configs - 1`` more configurations
drawn by the search's sampler over those keys: the same knobs and sampler as the sparse trials, at a stated
budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from ..checks import checked_trial_spec
from ..experiment import CONFIG_KEY, DENSE_FAMILY, ROLE_KEY, SIZE_KEY, encode_value
from ..model.embedding import model_shape
from ..model.flops import expected_masked, step_flops
from ..model.shape import ModelShape
from ..spec import SearchParam, Spec, SpecError
from .space import DefineByRun, make_sampler

# Keys a family size sets itself: never tuned for it.
_SIZE_KEYS = ("model.hidden_size", "model.ffn_size", "model.num_heads")


@dataclass(frozen=True)
class FamilySize:
    """One dense size: its width, and its FLOPs per step against the spec's model."""

    index: int
    hidden: int
    ffn: int
    heads: int
    flops_per_step: float
    flop_ratio: float

    def values(self) -> dict[str, int]:
        """The spec keys that make this size."""
        return {"model.hidden_size": self.hidden, "model.ffn_size": self.ffn, "model.num_heads": self.heads}


def _dense_step(shape: ModelShape, spec: Spec) -> float:
    n = expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
    return step_flops(shape, spec.train.batch_size, n).total


def sparsest_level(spec: Spec, params: tuple[SearchParam, ...]) -> float:
    """The highest sparsity level any sparse trial of the space can have."""
    for p in params:
        if p.key == "sparsity.level":
            return float(max(p.values))  # a range's upper end, the largest choice, or the constant
    return spec.sparsity.level


def sparse_flop_ratio(spec: Spec, shape: ModelShape, level: float) -> float:
    """FLOPs per step of the spec's model with every sparsifiable weight at ``level`` sparsity, over dense
    (method overheads left out: a lower bound of what such a trial spends)."""
    n = expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
    sparse = step_flops(shape, spec.train.batch_size, n, {w.name: 1.0 - level for w in shape.weights()})
    return sparse.total / _dense_step(shape, spec)


def _narrower(shape: ModelShape, spec: Spec, hidden: int) -> tuple[ModelShape, int, int]:
    """The spec's model at encoder width ``hidden``: the FFN scaled alike, fewer heads where the width needs it."""
    ffn = max(8, round(spec.model.ffn_size * hidden / spec.model.hidden_size))
    # As many heads as divide the width while each keeps at least 16 dimensions (one head below that width).
    heads = max(d for d in range(1, spec.model.num_heads + 1) if hidden % d == 0 and (hidden // d >= 16 or d == 1))
    scaled = ModelShape(
        vocab=shape.vocab,
        emb_dim=shape.emb_dim,
        hidden=hidden,
        layers=shape.layers,
        heads=heads,
        ffn=ffn,
        seq_len=shape.seq_len,
        embedding_trainable=shape.embedding_trainable,
        logits_at_all_positions=shape.logits_at_all_positions,
    )
    return scaled, ffn, heads


def family_sizes(spec: Spec, shape: ModelShape, params: tuple[SearchParam, ...]) -> list[FamilySize]:
    """The family's sizes, widest (the spec's own model) first, down to the widest width whose FLOPs per step are
    at or below ``smallest_flop_ratio`` (by default the sparsest sparse trial's), spaced geometrically in width.

    Widths are multiples of 8 (the spec's own width is kept as it is); where two steps give the same width, the
    size appears once. Where no width gets that low (the frozen decoder and the attention products do not shrink
    with the width), the narrowest width ends the family. Spacing in width, not in FLOPs: the FLOP ratio has that
    floor, so equal ratio steps crowd the last sizes into uselessly narrow models (hidden 16 for rigl.yaml, while
    the best dense widths there were 64 to 128: analysis/STUDY.md, part A)."""
    fam = spec.search.dense_family
    full = _dense_step(shape, spec)
    bound = fam.smallest_flop_ratio
    if bound is None:
        bound = sparse_flop_ratio(spec, shape, sparsest_level(spec, params))
    widths = list(range(8, spec.model.hidden_size, 8))
    ratios = {w: _dense_step(_narrower(shape, spec, w)[0], spec) / full for w in widths}
    out = [FamilySize(0, spec.model.hidden_size, spec.model.ffn_size, spec.model.num_heads, full, 1.0)]
    if not widths or fam.sizes == 1:
        return out
    low = max((w for w in widths if ratios[w] <= bound), default=widths[0])
    for k in range(1, fam.sizes):
        want = spec.model.hidden_size * (low / spec.model.hidden_size) ** (k / (fam.sizes - 1))
        width = min(widths, key=lambda w: (abs(math.log(w / want)), w))
        if any(s.hidden == width for s in out):
            continue
        scaled, ffn, heads = _narrower(shape, spec, width)
        out.append(FamilySize(len(out), width, ffn, heads, _dense_step(scaled, spec), ratios[width]))
    return out


def tuned_keys(params: tuple[SearchParam, ...]) -> list[str]:
    """The searched keys the family is tuned on: those outside the sparsity section and the model's width."""
    return [p.key for p in params if not p.key.startswith("sparsity.") and p.key not in _SIZE_KEYS]


def family_configs(spec: Spec, raw: dict, sizes: list[FamilySize]) -> list[dict[str, Any]]:
    """Every dense family trial's config: per size, the spec's own values, then ``configs - 1`` draws of the
    search's sampler over the tuned keys (one sampler per size, seeded from the search's seed)."""
    keep = set(tuned_keys(DefineByRun(spec, raw).params))
    out = []
    for size in sizes:
        base = {ROLE_KEY: DENSE_FAMILY, SIZE_KEY: size.index, **size.values()}
        out.append({**base, CONFIG_KEY: 0})
        if not keep:
            continue
        space = DefineByRun(spec, raw, keep=keep)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            sampler=make_sampler(spec.search.sampler, spec.search.seed + 7919 * (size.index + 1), space.params)
        )
        for j in range(1, spec.search.dense_family.configs):
            trial = study.ask()
            constants = space(trial)
            values = {k: encode_value(v) for k, v in {**trial.params, **constants}.items()}
            out.append({**base, CONFIG_KEY: j, **values})
            study.tell(trial, 0.0)  # no feedback: every draw is made before any result
    return out


def plan_family(
    spec: Spec, raw: dict, params: tuple[SearchParam, ...]
) -> tuple[list[FamilySize], list[dict[str, Any]]]:
    """The family's sizes and every trial's config, each checked to make a valid spec (before anything runs)."""
    sizes = family_sizes(spec, model_shape(spec.model), params)
    configs = family_configs(spec, raw, sizes)
    for cfg in configs:
        try:
            checked_trial_spec(raw, cfg)
        except SpecError as e:
            size = sizes[cfg[SIZE_KEY]]
            raise SpecError(
                f"search.dense_family: size {size.index} (hidden {size.hidden}), configuration {cfg[CONFIG_KEY]} "
                f"is not a valid spec: {e}"
            ) from None
    return sizes, configs
