"""The dense and sparse frontiers of an experiment (results/envelope.py) on hand-made curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sparsesearch.experiment import DENSE_FAMILY, SPARSE
from sparsesearch.results.envelope import best_so_far, budgets, crossings, curve_at, envelopes, lower_envelope


def _history(curves: dict[str, tuple[str, list[float], list[float]]]) -> pd.DataFrame:
    rows = []
    for tid, (role, flops, losses) in curves.items():
        for step, (f, lo) in enumerate(zip(flops, losses)):
            rows.append({"trial_id": tid, "role": role, "step": step, "flops": f, "eval_loss": lo})
    return pd.DataFrame(rows)


def test_a_trials_curve_is_its_best_loss_so_far_flat_after_its_last_evaluation():
    curve = best_so_far([3.0, 1.0, 2.0, 4.0], [4.5, 6.0, 5.0, 4.8])  # unsorted, with a late rise
    assert list(curve[0]) == [1.0, 2.0, 3.0, 4.0]
    assert list(curve[1]) == [6.0, 5.0, 4.5, 4.5]
    at = curve_at(curve, np.array([0.5, 1.5, 4.0, 10.0]))
    assert math.isnan(at[0])  # before its first evaluation: nothing is known
    assert list(at[1:]) == [5.5, 4.5, 4.5]  # linear between evaluations; it can stop at any later budget


def test_the_envelope_is_the_lowest_curve_at_every_budget():
    a = best_so_far([1, 2, 3], [6.0, 5.0, 4.0])
    b = best_so_far([2, 4], [4.8, 3.0])  # starts later, overtakes
    env = lower_envelope([a, b], np.array([1.0, 2.0, 3.0, 4.0]))
    assert list(env) == [6.0, 4.8, 3.9, 3.0]


def test_the_frontiers_cross_where_the_sparse_envelope_passes_the_dense_one():
    history = _history(
        {
            "d1": (DENSE_FAMILY, [1, 2, 3, 4], [5.0, 4.0, 3.5, 3.3]),
            "d2": (DENSE_FAMILY, [1, 2], [5.2, 4.1]),  # a worse dense size, stopped early
            "s1": (SPARSE, [1, 2, 3, 4], [5.5, 4.4, 3.4, 3.0]),
        }
    )
    env = envelopes(history)
    assert list(env.grid) == [1.0, 2.0, 3.0, 4.0]
    assert list(env.dense) == [5.0, 4.0, 3.5, 3.3]
    # The gap sparse - dense goes 0.5, 0.4, -0.1: zero at 2 + 0.4 / 0.5 = 2.8 FLOPs.
    assert env.crossings == [(pytest.approx(2.8), "sparse")]
    assert env.to_json()["crossings"] == [{"flops": pytest.approx(2.8), "ahead_after": "sparse"}]
    assert env.to_json()["dense"][0] == [1.0, 5.0]
    assert budgets(env) == [1.0, 2.0, 4.0]  # the last common budget and its halvings down to the first
    assert env.last_gain("dense") == 4.0 and env.last_gain("sparse") == 4.0


def test_budgets_end_where_an_envelope_stops_improving():
    history = _history(
        {
            "d": (DENSE_FAMILY, [1, 2, 3, 8], [5.0, 4.0, 3.5, 3.5]),  # stopped improving at 3, ran on to 8
            "s": (SPARSE, [1, 2, 4, 6], [5.5, 4.4, 3.4, 3.0]),
        }
    )
    env = envelopes(history)
    assert env.last_gain("dense") == 3.0 and env.last_gain("sparse") == 6.0
    assert budgets(env) == [1.5, 3.0]  # not out to 8, where the dense envelope is a carried-forward 3.5


def test_crossings_in_both_directions_and_none_when_one_side_leads_throughout():
    grid = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    dense = np.array([5.0, 4.0, 3.5, 3.2, 3.0])
    sparse = np.array([5.5, 3.8, 3.5, 3.4, 2.9])  # behind, ahead, level, behind, ahead again
    assert crossings(grid, sparse, dense) == [
        (pytest.approx(1 + 0.5 / 0.7), "sparse"),
        (pytest.approx(3.0), "dense"),  # behind at 2, level at 3, ahead at 4: they cross where they are level
        (pytest.approx(4 + 0.2 / 0.3), "sparse"),
    ]
    assert crossings(grid, dense - 0.1, dense) == []
    assert crossings(grid, np.full(5, np.nan), dense) == []


def test_no_common_budget_gives_no_budgets():
    history = _history({"d": (DENSE_FAMILY, [1, 2], [5.0, 4.0])})
    env = envelopes(history)
    assert env.common_range() is None and budgets(env) == []
    assert env.to_json()["sparse"] == []
