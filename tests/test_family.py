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
from sparsesearch.spec import spec_from_dict

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
    assert len(sizes) == spec.search.dense_family.sizes
    assert (sizes[0].hidden, sizes[0].ffn, sizes[0].heads, sizes[0].flop_ratio) == (256, 1024, 4, 1.0)
    ratios = [s.flop_ratio for s in sizes]
    assert ratios == sorted(ratios, reverse=True) and len(set(ratios)) == len(ratios)
    sparsest = sparse_flop_ratio(spec, SHAPE, 0.95)  # the space's highest level
    assert ratios[-1] < sparsest
    # the smallest is the widest width that gets below it, and the sizes between are even steps in width (the
    # FLOP ratio has a floor: steps in it would end at a uselessly narrow model)
    assert [s.hidden for s in sizes] == [256, 160, 104, 64]
    raw, _, _ = rigl
    family = {**raw["search"].get("dense_family", {}), "smallest_flop_ratio": ratios[-1] * 0.9999}
    lower = spec_from_dict({**raw, "search": {**raw["search"], "dense_family": family}})
    assert family_sizes(lower, SHAPE, params)[-1].hidden == 56  # just below 64's ratio: the next width down
    for s in sizes:
        assert s.hidden % 8 == 0 and s.hidden % s.heads == 0 and (s.hidden // s.heads >= 16 or s.heads == 1)
        shape = ModelShape(30522, 384, s.hidden, 2, s.heads, s.ffn, 64)
        n = expected_masked(shape, spec.train.batch_size, spec.data.mask_prob)
        assert s.flops_per_step == pytest.approx(step_flops(shape, spec.train.batch_size, n).total)


def test_each_size_is_tuned_on_the_searched_keys_outside_sparsity(rigl):
    raw, spec, params = rigl
    sizes = family_sizes(spec, SHAPE, params)
    configs = family_configs(spec, raw, sizes)
    assert len(configs) == len(sizes) * spec.search.dense_family.configs
    for c in configs:
        s = trial_spec(raw, c)
        assert s.sparsity.method == "dense" and s.model.hidden_size == sizes[c["family_size"]].hidden
        if c["family_config"] == 0:  # the spec's own values
            assert "train.lr" not in c and s.train.lr == spec.train.lr
        else:  # drawn over the same range the sparse trials search, nothing of the sparsity section
            assert 1e-3 <= c["train.lr"] <= 5e-3 and not any(k.startswith("sparsity.") for k in c)
        assert c["role"] == DENSE_FAMILY
    assert configs == family_configs(spec, raw, sizes)  # seeded: the same family every time


def test_family_of_one_size_without_tuned_keys(rigl):
    raw, _, _ = rigl
    raw = {
        **raw,
        "search": {
            **raw["search"],
            "dense_family": {"sizes": 1, "configs": 3},
            "params": {"sparsity.method": "rigl", "sparsity.level": {"uniform": [0.5, 0.9]}},
        },
    }
    spec = spec_from_dict(raw)
    sizes = family_sizes(spec, SHAPE, check_spec(spec))
    assert [s.hidden for s in sizes] == [256]
    assert len(family_configs(spec, raw, sizes)) == 1  # nothing to tune: the spec's own configuration only
