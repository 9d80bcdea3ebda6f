"""The dense family of a search: its sizes, their FLOPs, and its configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sparsesearch.checks import check_spec
from sparsesearch.experiment import DENSE_FAMILY, trial_spec
from sparsesearch.model.flops import expected_masked, step_flops
from sparsesearch.model.shape import ModelShape
from sparsesearch.search.family import family_configs, family_sizes, sparse_flop_ratio
from sparsesearch.spec import SpecError, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
# The default model with the default embedding's size (30,522 x 384), without reading the embedding.
SHAPE = ModelShape(vocab=30522, emb_dim=384, hidden=256, layers=2, heads=4, ffn=1024, seq_len=64)


@pytest.fixture(scope="module")
def rigl():
    raw = yaml.safe_load((ROOT / "search_spaces" / "rigl.yaml").read_text())
    spec = spec_from_dict(raw)
    return raw, spec, check_spec(spec)


def test_sizes_step_down_to_below_the_sparsest_trial(rigl):
    _, spec, params = rigl
    sizes = family_sizes(spec, SHAPE, params)
    ladder = [s for s in sizes if s.layers == spec.model.num_layers]
    assert len(ladder) == spec.search.dense_family.sizes
    assert (sizes[0].hidden, sizes[0].ffn, sizes[0].heads, sizes[0].flop_ratio) == (256, 1024, 4, 1.0)
    ratios = [s.flop_ratio for s in ladder]
    assert ratios == sorted(ratios, reverse=True) and len(set(ratios)) == len(ratios)
    sparsest = sparse_flop_ratio(spec, SHAPE, 0.95)  # the space's highest level
    assert ratios[-1] < sparsest
    # the smallest is the widest width that gets below it, and the sizes between are even steps in width (the
    # FLOP ratio has a floor: steps in it would end at a uselessly narrow model)
    assert [s.hidden for s in ladder] == [256, 160, 104, 64]
    raw, _, _ = rigl
    family = {**raw["search"].get("dense_family", {}), "smallest_flop_ratio": ratios[-1] * 0.9999, "depths": []}
    lower = spec_from_dict({**raw, "search": {**raw["search"], "dense_family": family}})
    assert family_sizes(lower, SHAPE, params)[-1].hidden == 56  # just below 64's ratio: the next width down
    for s in sizes:
        assert s.hidden % 8 == 0 and s.hidden % s.heads == 0 and (s.hidden // s.heads >= 16 or s.heads == 1)
        shape = ModelShape(30522, 384, s.hidden, s.layers, s.heads, s.ffn, 64)
        n = expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
        assert s.flops_per_step == pytest.approx(step_flops(shape, spec.train.batch_size, n).total)


def test_other_depths_join_at_the_narrowest_sizes_cost_deeper_thinner_and_shallower_wider(rigl):
    raw, spec, params = rigl
    sizes = family_sizes(spec, SHAPE, params)
    narrowest = sizes[3]
    assert (narrowest.layers, narrowest.hidden) == (2, 64)
    extra = {s.layers: s for s in sizes[4:]}
    assert set(extra) == {1, 3}  # by default one block fewer and one more
    assert extra[1].hidden > narrowest.hidden > extra[3].hidden  # shallower is wider, deeper is thinner
    for s in extra.values():
        assert s.flops_per_step == pytest.approx(narrowest.flops_per_step, rel=0.03)
    only = spec_from_dict({**raw, "search": {**raw["search"], "dense_family": {"depths": [4]}}})
    assert [s.layers for s in family_sizes(only, SHAPE, params)] == [2, 2, 2, 2, 4]
    none = spec_from_dict({**raw, "search": {**raw["search"], "dense_family": {"depths": []}}})
    assert len(family_sizes(none, SHAPE, params)) == 4
    with pytest.raises(SpecError, match=r"search.dense_family.depths\[1\]: must be a depth from 1 to 1024, got 0"):
        spec_from_dict({**raw, "search": {**raw["search"], "dense_family": {"depths": [3, 0]}}})


def test_each_size_tries_a_grid_of_learning_rates_around_its_width_rule(rigl):
    raw, spec, params = rigl
    sizes = family_sizes(spec, SHAPE, params)
    configs = family_configs(spec, raw, sizes)
    assert len(configs) == len(sizes) * spec.search.dense_family.configs == 18
    for s in sizes:
        centre = spec.train.lr * (s.hidden / 256) ** -0.5
        assert s.lrs == pytest.approx((centre, centre / 1.5, centre * 1.5))
    # The study's best rates (analysis/STUDY.md: 1.5e-3 at 256, 3.5e-3 at 64) lie inside their sizes' grids.
    assert min(sizes[0].lrs) < 1.5e-3 < max(sizes[0].lrs)
    assert min(sizes[3].lrs) < 3.5e-3 < max(sizes[3].lrs)
    for c in configs:
        s = trial_spec(raw, c)
        size = sizes[c["family_size"]]
        assert s.sparsity.method == "dense" and s.model.hidden_size == size.hidden
        assert s.model.num_layers == size.layers and s.train.lr == pytest.approx(size.lrs[c["family_config"]])
        assert not any(k.startswith("sparsity.") for k in c)
        assert c["role"] == DENSE_FAMILY
    assert configs == family_configs(spec, raw, sizes)  # seeded: the same family every time


def test_other_searched_keys_are_drawn_for_every_configuration_but_the_first(rigl):
    raw, _, _ = rigl
    params = {**raw["search"]["params"], "train.weight_decay": {"uniform": [0.0, 0.1]}}
    raw = {**raw, "search": {**raw["search"], "params": params, "dense_family": {"sizes": 2, "depths": []}}}
    spec = spec_from_dict(raw)
    configs = family_configs(spec, raw, family_sizes(spec, SHAPE, check_spec(spec)))
    assert len(configs) == 6
    for c in configs:
        if c["family_config"] == 0:
            assert "train.weight_decay" not in c  # the spec's own value
        else:
            assert 0.0 <= c["train.weight_decay"] <= 0.1


def test_family_of_one_size_without_tuned_keys(rigl):
    raw, _, _ = rigl
    raw = {
        **raw,
        "search": {
            **raw["search"],
            "dense_family": {"sizes": 1, "configs": 3, "lr_spread": 1.0, "depths": []},
            "params": {"sparsity.method": "rigl", "sparsity.level": {"uniform": [0.5, 0.9]}},
            "start_from": [],
        },
    }
    spec = spec_from_dict(raw)
    sizes = family_sizes(spec, SHAPE, check_spec(spec))
    assert [s.hidden for s in sizes] == [256]
    assert len(family_configs(spec, raw, sizes)) == 1  # one rate, nothing else to tune: one configuration


def test_iso_flop_search_spaces_family_reaches_down_to_the_smallest_matched_size():
    raw = yaml.safe_load((ROOT / "search_spaces" / "iso_flop.yaml").read_text())
    spec = spec_from_dict(raw)
    sizes = family_sizes(spec, SHAPE, check_spec(spec))
    ladder = [s.hidden for s in sizes if s.layers == 2]
    assert ladder[0] == 256 and ladder[-1] == 64  # the dense width-64 cost is the lowest FLOP level searched
    # The searched width keeps the FFN at 4x (model.ffn_ratio) in every trial spec.
    s = trial_spec(raw, {"model.hidden_size": 512, "sparsity.match_flops_of": {"hidden_size": 96}})
    assert (s.model.hidden_size, s.model.ffn_size) == (512, 2048)
