"""The auto target: a dense reference run, computed once and cached by what determines it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import sparsesearch.training.trainer as trainer_mod
from sparsesearch.training.target import reference_spec, resolve_target, target_path


def test_numeric_target_is_used_as_given(tiny_spec, tiny_data):
    spec = dataclasses.replace(tiny_spec, target=dataclasses.replace(tiny_spec.target, loss=3.25))
    t = resolve_target(spec, tiny_data)
    assert (t.loss, t.source) == (3.25, "spec")


def test_auto_target_is_computed_once_then_cached(tiny_spec, tiny_data, monkeypatch):
    path = target_path(tiny_spec, tiny_data)
    path.unlink(missing_ok=True)
    first = resolve_target(tiny_spec, tiny_data)
    assert first.source == "computed" and path.is_file()
    record = json.loads(path.read_text())
    assert record["dense_steps"] == tiny_spec.target.dense_steps
    assert record["history"][-1]["step"] == tiny_spec.target.dense_steps
    assert record["loss"] == first.loss == record["history"][-1]["eval_loss"]

    monkeypatch.setattr(trainer_mod, "train", lambda *a, **k: pytest.fail("target recomputed"))
    again = resolve_target(tiny_spec, tiny_data)
    assert (again.loss, again.source) == (first.loss, "cached")
    # Budget, eval cadence and device do not change the target: same cache entry.
    other = dataclasses.replace(
        tiny_spec, train=dataclasses.replace(tiny_spec.train, max_steps=7, eval_every=3, device="cpu", max_time_s=1.0)
    )
    assert resolve_target(other, tiny_data).loss == first.loss


def test_target_reproduces_the_dense_reference_curve(tiny_spec, tiny_data):
    # Same seed and config: training the reference itself reaches the target by dense_steps.
    target = resolve_target(tiny_spec, tiny_data)
    result = trainer_mod.train(reference_spec(tiny_spec), tiny_data, target.loss)
    assert result.reached_target and result.steps_to_target <= tiny_spec.target.dense_steps


@pytest.mark.parametrize(
    "change",
    [
        lambda s: dataclasses.replace(s, model=dataclasses.replace(s.model, hidden_size=16)),
        lambda s: dataclasses.replace(s, train=dataclasses.replace(s.train, lr=1e-2)),
        lambda s: dataclasses.replace(s, train=dataclasses.replace(s.train, seed=5)),
        lambda s: dataclasses.replace(s, target=dataclasses.replace(s.target, dense_steps=31)),
        lambda s: dataclasses.replace(s, data=dataclasses.replace(s.data, mask_prob=0.2)),
    ],
)
def test_cache_key_changes_with_what_determines_the_target(tiny_spec, tiny_data, change):
    assert target_path(change(tiny_spec), tiny_data) != target_path(tiny_spec, tiny_data)


def test_reference_is_dense_without_time_budget(tiny_spec):
    spec = dataclasses.replace(tiny_spec, train=dataclasses.replace(tiny_spec.train, max_time_s=2.0))
    ref = reference_spec(spec)
    assert ref.sparsity.method == "dense" and ref.train.max_time_s is None
    assert ref.train.max_steps == spec.target.dense_steps


def test_auto_ladder_reads_each_rung_from_one_dense_run(tiny_spec, tiny_data):
    spec = dataclasses.replace(tiny_spec, target=dataclasses.replace(tiny_spec.target, dense_steps=(10, 30)))
    target = resolve_target(spec, tiny_data)
    record = json.loads(Path(target.path).read_text())
    at = {h["step"]: h["eval_loss"] for h in record["history"]}
    assert target.losses == tuple(at[s] for s in (10, 30)) and target.loss == at[30]
    assert record["losses"] == list(target.losses) and record["dense_steps"] == [10, 30]
    single = resolve_target(tiny_spec, tiny_data)  # the last rung of the ladder is the one-rung target
    assert single.losses == (target.losses[-1],)
    again = resolve_target(spec, tiny_data)
    assert again.source == "cached" and again.losses == target.losses
