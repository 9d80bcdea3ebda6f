"""Iso-FLOP sparsity (``sparsity.match_flops_of``): the level is set so that a training step of the sparse model
costs what a dense step of the named model size costs."""

from __future__ import annotations

import pytest

from sparsesearch.checks import dense_step_flops, load_checked, matched_level, step_cost
from sparsesearch.spec import SpecError, spec_from_dict


def _spec(tiny_raw, **sparsity):
    raw = {**tiny_raw, "model": {**tiny_raw["model"], "hidden_size": 64, "ffn_size": 256, "num_heads": 4}}
    return spec_from_dict({**raw, "sparsity": {"method": "rigl", "level": 0.5, **sparsity}})


@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("method", ["rigl", "set", "topkast"])
@pytest.mark.parametrize("match", [{"hidden_size": 32}, {"hidden_size": 48, "num_layers": 1}])
def test_a_step_costs_what_the_named_dense_size_costs(tiny_raw, distribution, method, match):
    spec = _spec(tiny_raw, method=method, distribution=distribution, match_flops_of=match)
    matched = matched_level(spec)
    dense = spec_from_dict({**tiny_raw, "model": {**spec.to_dict()["model"], **match}})
    assert step_cost(matched) == pytest.approx(dense_step_flops(dense), rel=0.01)
    assert 0.0 < matched.sparsity.level < 1.0 and matched.sparsity.level != spec.sparsity.level
    assert matched_level(_spec(tiny_raw)) == _spec(tiny_raw)  # without it: the level as given


def test_every_checked_spec_has_the_matched_level(tiny_raw):
    raw = _spec(tiny_raw, match_flops_of={"hidden_size": 32}).to_dict()
    checked = load_checked(raw)
    assert checked.spec.sparsity.level == matched_level(spec_from_dict(raw)).sparsity.level != 0.5


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ({"hidden_size": 128}, "costs more than one of this spec's model"),
        ({"hidden_size": 1, "num_heads": 1}, "costs less than this spec's model at any sparsity"),
        # SNFS pays a dense weight gradient every step: its floor is a third of a dense step higher
        ({"hidden_size": 48, "num_layers": 1}, "the part no sparsity removes"),
        ({"width": 32}, "width: not a model size key"),
        ({"hidden_size": 30}, "is not a valid model of this spec"),  # 30 is not divisible by 4 heads
    ],
)
def test_an_unmatchable_size_names_the_field(tiny_raw, match, message):
    method = "snfs" if "removes" in message else "rigl"
    with pytest.raises(SpecError, match=rf"sparsity\.match_flops_of.*{message}"):
        load_checked(_spec(tiny_raw, method=method, match_flops_of=match).to_dict())


def test_searching_the_level_and_matching_a_size_is_refused(tiny_raw):
    raw = _spec(tiny_raw, match_flops_of={"hidden_size": 32}).to_dict()
    raw["search"]["params"] = {"sparsity.level": {"uniform": [0.5, 0.9]}}
    with pytest.raises(SpecError, match="search.params.sparsity.level: sparsity.match_flops_of sets the level"):
        load_checked(raw)
