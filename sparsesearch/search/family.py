"""The dense family of a search: dense models of several widths and depths, each tuned, trained beside the sparse ones.

A sparse model that only beats the dense model of its own size has not beaten dense: a narrower dense model may
reach the target with as few FLOPs (the RigL paper's Small-Dense baseline). Every search therefore trains the
spec's own model densely (the same-size dense), ``sizes - 1`` narrower ones spaced geometrically in width down to
one whose FLOPs per step are at or below the sparsest sparse trial's, and, at the narrowest size's FLOPs per step
(where the study's frontier was), one size per extra depth: deeper ones thinner, shallower ones wider (deep-thin
models do well at small scale: MobileLLM, Liu et al. 2024).

Each size trains ``configs`` configurations whose learning rates lie on a grid around the size's own centre: the
spec's ``train.lr`` scaled by the width rule lr ~ width ^ -lr_width_exponent (0.5 by default: a least-squares fit
of the study's best dense rate per width, 1.5e-3 at 256 to 3.5e-3 at 48 to 128), so that the best rate of every
size can be inside its grid; the other searched keys outside the sparsity section take the spec's own values in
the first configuration and the search's sampler's draws in the rest.
"""

from __future__ import annotations

import dataclasses
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

# Keys a family size sets itself: never tuned for it (the learning rate comes from its grid).
_SIZE_KEYS = ("model.hidden_size", "model.ffn_size", "model.num_heads", "model.num_layers")
LR_KEY = "train.lr"


@dataclass(frozen=True)
class FamilySize:
    """One dense size: its depth and width, its FLOPs per step against the spec's model, its learning rates."""

    index: int
    hidden: int
    ffn: int
    heads: int
    flops_per_step: float
    flop_ratio: float
    layers: int = 0  # 0: the spec's depth (sizes stored before depths were searched)
    lrs: tuple[float, ...] = ()  # one per configuration, the centre first

    def values(self) -> dict[str, int]:
        """The spec keys that make this size."""
        out = {"model.hidden_size": self.hidden, "model.ffn_size": self.ffn, "model.num_heads": self.heads}
        if self.layers:
            out["model.num_layers"] = self.layers
        return out


def lr_grid(centre: float, configs: int, spread: float) -> tuple[float, ...]:
    """``configs`` learning rates around ``centre``: the centre, then alternately below and above it, each a
    factor ``spread`` further out (3 configs: centre, centre / spread, centre x spread)."""
    out = [centre]
    for j in range(1, configs):
        k = (j + 1) // 2
        out.append(centre * spread ** (k if j % 2 == 0 else -k))
    return tuple(out)


def width_rule_lr(spec: Spec, hidden: int) -> float:
    """The centre of a size's learning-rate grid: the spec's rate scaled by (width / spec width) ^ -exponent."""
    return spec.train.lr * (hidden / spec.model.hidden_size) ** -spec.search.dense_family.lr_width_exponent


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


def matched_sizes(spec: Spec, params: tuple[SearchParam, ...]) -> list[dict[str, int]]:
    """The dense sizes that sparse trials are matched to in FLOPs per step (``sparsity.match_flops_of``, given or
    searched): the family must reach down to them."""
    out = [dict(spec.sparsity.match_flops_of)] if spec.sparsity.match_flops_of else []
    for p in params:
        if p.key == "sparsity.match_flops_of":
            out += [dict(v) for v in p.values if v]
    return out


def _matched(shape: ModelShape, spec: Spec, match: dict[str, int]) -> ModelShape:
    """The shape of the dense model that ``match`` names (its keys replace the spec's model keys; with
    ``model.ffn_ratio`` the FFN follows the width)."""
    hidden = match.get("hidden_size", spec.model.hidden_size)
    ratio = spec.model.ffn_ratio
    ffn = match.get("ffn_size", round(ratio * hidden) if ratio else spec.model.ffn_size)
    return dataclasses.replace(
        shape,
        hidden=hidden,
        ffn=ffn,
        layers=match.get("num_layers", shape.layers),
        heads=match.get("num_heads", shape.heads),
    )


def _narrower(shape: ModelShape, spec: Spec, hidden: int, layers: int | None = None) -> tuple[ModelShape, int, int]:
    """The spec's model at encoder width ``hidden`` (and depth ``layers``): the FFN scaled alike, fewer heads
    where the width needs it."""
    ffn = max(8, round(spec.model.ffn_size * hidden / spec.model.hidden_size))
    # As many heads as divide the width while each keeps at least 16 dimensions (one head below that width).
    heads = max(d for d in range(1, spec.model.num_heads + 1) if hidden % d == 0 and (hidden // d >= 16 or d == 1))
    scaled = ModelShape(
        vocab=shape.vocab,
        emb_dim=shape.emb_dim,
        hidden=hidden,
        layers=shape.layers if layers is None else layers,
        heads=heads,
        ffn=ffn,
        seq_len=shape.seq_len,
        embedding_trainable=shape.embedding_trainable,
        logits_at_all_positions=shape.logits_at_all_positions,
    )
    return scaled, ffn, heads


def family_depths(spec: Spec) -> tuple[int, ...]:
    """The extra depths of the family: ``dense_family.depths``, or one block fewer and one more."""
    depths = spec.search.dense_family.depths
    if depths is None:
        depths = tuple(d for d in (spec.model.num_layers - 1, spec.model.num_layers + 1) if d >= 1)
    return tuple(d for d in dict.fromkeys(depths) if d != spec.model.num_layers)


def family_sizes(spec: Spec, shape: ModelShape, params: tuple[SearchParam, ...]) -> list[FamilySize]:
    """The family's sizes, widest (the spec's own model) first, down to the widest width whose FLOPs per step are
    at or below ``smallest_flop_ratio`` (by default the sparsest sparse trial's), spaced geometrically in width;
    then one size per extra depth at the narrowest size's FLOPs per step.

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
        bound = min([bound, *(_dense_step(_matched(shape, spec, m), spec) / full for m in matched_sizes(spec, params))])
    widths = list(range(8, spec.model.hidden_size, 8))
    ratios = {w: _dense_step(_narrower(shape, spec, w)[0], spec) / full for w in widths}

    def size(hidden: int, layers: int, ffn: int, heads: int, flops: float) -> FamilySize:
        lrs = lr_grid(width_rule_lr(spec, hidden), fam.configs, fam.lr_spread)
        return FamilySize(len(out), hidden, ffn, heads, flops, flops / full, layers, lrs)

    out: list[FamilySize] = []
    out.append(size(spec.model.hidden_size, spec.model.num_layers, spec.model.ffn_size, spec.model.num_heads, full))
    if widths and fam.sizes > 1:
        low = max((w for w in widths if ratios[w] <= bound), default=widths[0])
        for k in range(1, fam.sizes):
            want = spec.model.hidden_size * (low / spec.model.hidden_size) ** (k / (fam.sizes - 1))
            width = min(widths, key=lambda w: (abs(math.log(w / want)), w))
            if any(s.hidden == width for s in out):
                continue
            _, ffn, heads = _narrower(shape, spec, width)
            out.append(size(width, spec.model.num_layers, ffn, heads, ratios[width] * full))
    goal = out[-1].flops_per_step
    # Other depths at the narrowest size's cost: the width (a multiple of 8, up to twice the spec's) whose step
    # costs closest to it.
    candidates = range(8, 2 * spec.model.hidden_size + 1, 8)
    for depth in family_depths(spec):
        costs = {w: _dense_step(_narrower(shape, spec, w, depth)[0], spec) for w in candidates}
        width = min(costs, key=lambda w: (abs(math.log(costs[w] / goal)), w))
        _, ffn, heads = _narrower(shape, spec, width, depth)
        out.append(size(width, depth, ffn, heads, costs[width]))
    return out


def tuned_keys(params: tuple[SearchParam, ...]) -> list[str]:
    """The searched keys the family draws from the sampler: those outside the sparsity section, the model's
    size and the learning rate (which follows each size's grid)."""
    return [p.key for p in params if not p.key.startswith("sparsity.") and p.key not in _SIZE_KEYS and p.key != LR_KEY]


def family_configs(spec: Spec, raw: dict, sizes: list[FamilySize]) -> list[dict[str, Any]]:
    """Every dense family trial's config: per size, one per learning rate of its grid; the first with the spec's
    own values of the other tuned keys, the rest with draws of the search's sampler over them (one sampler per
    size, seeded from the search's seed)."""
    keep = set(tuned_keys(DefineByRun(spec, raw).params))
    out = []
    for size in sizes:
        base = {ROLE_KEY: DENSE_FAMILY, SIZE_KEY: size.index, **size.values()}
        lrs = size.lrs or (spec.train.lr,) * spec.search.dense_family.configs
        if not keep:  # nothing else varies: one trial per distinct rate
            lrs = tuple(dict.fromkeys(lrs))
        out.append({**base, CONFIG_KEY: 0, LR_KEY: encode_value(lrs[0])})
        study = None
        if keep:
            space = DefineByRun(spec, raw, keep=keep)
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(
                sampler=make_sampler(spec.search.sampler, spec.search.seed + 7919 * (size.index + 1), space.params)
            )
        for j in range(1, len(lrs)):
            values: dict[str, Any] = {}
            if study is not None:
                trial = study.ask()
                constants = space(trial)
                values = {k: encode_value(v) for k, v in {**trial.params, **constants}.items()}
                study.tell(trial, 0.0)  # no feedback: every draw is made before any result
            out.append({**base, CONFIG_KEY: j, **values, LR_KEY: encode_value(lrs[j])})
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
