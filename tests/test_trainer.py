"""Trainer: determinism, time-to-target interpolation, budgets, projection and divergence."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from sparsesearch.training.trainer import Trainer, train


def _spec(tiny_spec, **train_kw):
    return dataclasses.replace(tiny_spec, train=dataclasses.replace(tiny_spec.train, **train_kw))


def test_same_seed_same_loss_curve(tiny_spec, tiny_data):
    a = train(_spec(tiny_spec, max_steps=30), tiny_data, None)
    b = train(_spec(tiny_spec, max_steps=30), tiny_data, None)
    c = train(_spec(tiny_spec, max_steps=30, seed=1), tiny_data, None)
    curve = lambda r: [(h["step"], h["eval_loss"], h["train_loss"]) for h in r.history]  # noqa: E731
    assert curve(a) == curve(b)
    assert curve(a) != curve(c)


def test_loss_falls_and_metrics_are_complete(tiny_spec, tiny_data):
    trainer = Trainer(_spec(tiny_spec, max_steps=60), tiny_data, None)
    rows = list(trainer.run())
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40, 50, 60]
    keys = {
        "step",
        "train_loss",
        "eval_loss",
        "train_time_s",
        "flops",
        "dense_flops",
        "flop_ratio",
        "net_time_s",
        "net_flops",
        "avg_sparsity",
        "status",
    }
    assert all(keys <= set(r) for r in rows)
    assert rows[0]["train_loss"] is None and rows[0]["flops"] == 0 and rows[0]["status"] == "running"
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"] - 0.5
    assert rows[-1]["status"] == "not_reached" and trainer.result.status == "not_reached"
    assert all(r["flop_ratio"] == 1.0 and r["avg_sparsity"] == 0.0 for r in rows)
    assert rows[-1]["flops"] == rows[-1]["dense_flops"] > 0


class _ScriptedTrainer(Trainer):
    """A real trainer whose held-out losses are scripted, to check the bookkeeping around them exactly."""

    def __init__(self, *a, losses, **k):
        super().__init__(*a, **k)
        self._losses = iter(losses)

    def evaluate(self) -> float:
        return next(self._losses)


def test_time_to_target_is_interpolated_between_bracketing_evals(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, max_steps=100, eval_every=10)
    tr = _ScriptedTrainer(spec, tiny_data, 4.5, losses=[9.0, 6.0, 5.0, 4.0, 3.0])
    rows = list(tr.run())
    r = tr.result
    assert r.status == "reached" and r.reached_target and not r.projected
    assert r.steps == 30 and [x["step"] for x in rows] == [0, 10, 20, 30]
    prev, cur = tr.result.history[2], tr.result.history[3]  # losses 5.0 at step 20, 4.0 at step 30
    assert r.steps_to_target == pytest.approx(25.0)
    assert r.time_to_target_s == pytest.approx((prev["train_time_s"] + cur["train_time_s"]) / 2)
    assert r.net_flops == pytest.approx((prev["flops"] + cur["flops"]) / 2)
    assert r.flop_ratio == pytest.approx(1.0)
    assert r.net_time_s == pytest.approx(r.time_to_target_s * r.flop_ratio)
    assert r.time_to_target_s < r.train_time_s


def test_target_met_at_start_costs_nothing(tiny_spec, tiny_data):
    tr = _ScriptedTrainer(_spec(tiny_spec), tiny_data, 20.0, losses=[10.0])
    list(tr.run())
    assert tr.result.status == "reached" and tr.result.time_to_target_s == 0.0 and tr.result.steps == 0


def test_unreached_target_is_projected_and_flagged(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, max_steps=80, eval_every=10)
    losses = [9.0, 8.0, 7.0, 6.5, 6.0, 5.8, 5.6, 5.4, 5.2]
    tr = _ScriptedTrainer(spec, tiny_data, 4.2, losses=losses)
    list(tr.run())
    r = tr.result
    assert r.status == "not_reached" and not r.reached_target and r.projected and r.steps == 80
    # Last quarter of the 8 intervals: 5.6 -> 5.2 over 2 intervals; 1.0 to go = 2.5 such windows.
    h = r.history
    window = h[-1]["train_time_s"] - h[-3]["train_time_s"]
    assert r.time_to_target_s == pytest.approx(h[-1]["train_time_s"] + 2.5 * window)
    assert math.isfinite(r.net_time_s) and r.net_time_s > r.train_time_s


def test_stalled_run_projects_infinity(tiny_spec, tiny_data):
    tr = _ScriptedTrainer(_spec(tiny_spec, max_steps=20, eval_every=10), tiny_data, 1.0, losses=[9.0, 8.0, 8.5])
    list(tr.run())
    assert tr.result.status == "not_reached" and math.isinf(tr.result.net_time_s)


def test_time_budget_stops_the_run(tiny_spec, tiny_data):
    r = train(_spec(tiny_spec, max_steps=10_000, max_time_s=0.3), tiny_data, 0.01)
    assert r.status == "not_reached" and r.steps < 10_000 and r.train_time_s >= 0.3


def test_non_finite_loss_stops_at_once_as_diverged(tiny_spec, tiny_data):
    tr = Trainer(_spec(tiny_spec, max_steps=50), tiny_data, 1.0)
    forward = tr.model.forward
    calls = {"n": 0}

    def poisoned(inputs, labels):
        loss, n = forward(inputs, labels)
        calls["n"] += 1
        # Clean for the step-0 evaluation (4 chunks of 8 sequences) and 3 training steps.
        return (loss * float("nan") if calls["n"] > 4 + 3 else loss), n

    tr.model.forward = poisoned
    rows = list(tr.run())
    r = tr.result
    assert r.status == "diverged" and not r.reached_target and rows[-1]["status"] == "diverged"
    assert r.steps < 10, "stops at the first non-finite loss, not at the next eval"
    assert math.isinf(r.net_time_s) and math.isinf(r.time_to_target_s)


def test_lr_warmup_then_schedule(tiny_spec, tiny_data):
    tr = Trainer(_spec(tiny_spec, warmup_steps=4, lr_schedule="linear", max_steps=14), tiny_data, None)
    factors = [tr._lr_factor(s) for s in range(15)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0) and factors[14] == pytest.approx(0.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_cpu_device_and_bad_device(tiny_spec, tiny_data):
    from sparsesearch.spec import SpecError

    assert Trainer(_spec(tiny_spec, device="cpu"), tiny_data, None).device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="train.device"):
            Trainer(_spec(tiny_spec, device="cuda"), tiny_data, None)


@pytest.mark.parametrize("method", ["dense", "rigl"])
@pytest.mark.parametrize("eval_weights", ["current", "ema"])
def test_checkpoint_resume_continues_exactly(tiny_spec, tiny_data, tmp_path, method, eval_weights):
    spec = _spec(tiny_spec, max_steps=50, eval_every=10, eval_weights=eval_weights, ema_half_life=5.0)
    spec = dataclasses.replace(
        spec,
        sparsity=dataclasses.replace(
            spec.sparsity, method=method, level=0.0 if method == "dense" else 0.7, update_every=5
        ),
    )
    full = Trainer(spec, tiny_data, 4.0)
    whole = list(full.run())

    first = Trainer(spec, tiny_data, 4.0)
    rows = []
    for row in first.run():
        rows.append(row)
        if row["step"] == 20:
            torch.save(first.state_dict(), tmp_path / "ckpt.pt")
            break
    resumed = Trainer(spec, tiny_data, 4.0)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=False))
    rows += list(resumed.run())
    key = lambda r: (r["step"], r["eval_loss"], r["train_loss"], r["flops"], r["avg_sparsity"])  # noqa: E731
    assert [key(r) for r in rows] == [key(r) for r in whole]
    assert resumed.result.status == full.result.status
    assert resumed.result.net_flops == full.result.net_flops


def test_every_rung_is_crossed_and_interpolated_like_the_target(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, max_steps=60, eval_every=10)
    free = Trainer(spec, tiny_data, None)
    history = {h["step"]: h for h in free.run()}
    # Rungs halfway between evaluations (the loss falls steadily in these first steps).
    t0 = (history[20]["eval_loss"] + history[30]["eval_loss"]) / 2
    t1 = (history[40]["eval_loss"] + history[50]["eval_loss"]) / 2
    tr = Trainer(spec, tiny_data, (t0, t1))
    rows = list(tr.run())
    r = tr.result
    assert r.status == "reached" and r.steps == 50  # stops once the last rung is crossed
    assert [g["reached"] for g in r.rungs] == [True, True]
    assert [g["steps"] for g in r.rungs] == pytest.approx([25.0, 45.0])
    assert r.rungs[1]["net_flops"] == pytest.approx(r.net_flops) and r.steps_to_target == pytest.approx(45.0)
    assert r.rungs[0]["net_flops"] == pytest.approx((rows[2]["flops"] + rows[3]["flops"]) / 2)


def test_objective_rung_decides_the_status_when_the_budget_ends(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, max_steps=20, eval_every=10)
    spec = dataclasses.replace(spec, target=dataclasses.replace(spec.target, loss=(99.0, 0.01), objective_rung=0))
    tr = Trainer(spec, tiny_data, (99.0, 0.01))
    list(tr.run())
    assert tr.result.status == "reached" and tr.result.steps == 20  # the objective (easy) rung was crossed
    assert [g["reached"] for g in tr.result.rungs] == [True, False]
