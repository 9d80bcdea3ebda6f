"""The default objective does not depend on where or when a trial ran: net time is priced at one reference and
the method's overhead is a ratio of two clocks read in the same process."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from sparsesearch.data.batches import prepare_data
from sparsesearch.spec import spec_from_dict
from sparsesearch.training.reference import dense_twin, measure_reference
from sparsesearch.training.trainer import Trainer


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003


def _run(spec, data, price):
    trainer = Trainer(spec, data, 0.01, seconds_per_flop=price)
    for _ in trainer.run():
        pass
    return trainer.result


@pytest.fixture(scope="module")
def rigl(tiny_raw):
    raw = {**tiny_raw, "sparsity": {"method": "rigl", "level": 0.8, "update_every": 4}}
    raw["train"] = {**tiny_raw["train"], "max_steps": 120, "eval_every": 40}
    spec = spec_from_dict(raw)
    return spec, prepare_data(spec.data, spec.model)


def test_the_same_configuration_gets_the_same_objective_on_a_busy_machine(rigl):
    spec, data = rigl
    price = 1e-9  # one reference for both runs, as an experiment stores it
    idle = _run(spec, data, price)
    stop = mp.Event()
    hogs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(2 * (os.cpu_count() or 2))]
    for h in hogs:
        h.start()
    try:
        busy = _run(spec, data, price)
    finally:
        stop.set()
        for h in hogs:
            h.join(10)
    assert busy.net_flops == idle.net_flops  # the FLOP count is deterministic
    assert idle.method_overhead > 1.0  # RigL's mask updates cost time of their own
    assert busy.net_time_s == pytest.approx(idle.net_time_s, rel=0.02), (idle.method_overhead, busy.method_overhead)


def test_net_time_is_net_flops_at_the_reference_price_times_the_overhead(rigl):
    spec, data = rigl
    r = _run(spec, data, 2e-9)
    assert r.net_time_s == pytest.approx(r.net_flops * 2e-9 * r.method_overhead)
    assert r.wall_net_time_s == pytest.approx(r.time_to_target_s * r.flop_ratio)
    dense = _run(dense_twin(spec), data, 2e-9)
    assert dense.method_overhead == 1.0 and dense.net_time_s == pytest.approx(dense.net_flops * 2e-9)


def test_without_a_reference_net_time_is_the_wall_clock_one(rigl):
    spec, data = rigl
    r = _run(spec, data, None)
    assert r.net_time_s == r.wall_net_time_s


def test_the_reference_prices_one_dense_step_of_the_specs_model(rigl):
    spec, data = rigl
    ref = measure_reference(spec, data, blocks=2, block_steps=2, warmup=1)
    assert ref.dense_step_s > 0 and ref.seconds_per_flop == pytest.approx(ref.dense_step_s / ref.dense_step_flops)
    assert len(ref.step_s) == 4 and ref.dense_step_s == min(ref.step_s)  # the fastest quarter of 4 steps: one
    assert "threads" in ref.machine
    trainer = Trainer(dense_twin(spec), data, None)
    assert ref.dense_step_flops == trainer.step_flops(trainer.expected_masked())[1].total


def test_a_burst_of_other_work_does_not_move_the_reference(rigl, monkeypatch):
    """Steps take 3x longer while another process shares the cores (here: from second 2 to second 7 of the
    measurement, as the import of Ray once did); the blocks spread over the span dodge it, and the price is the
    idle one. Time is simulated: every step takes 0.1 s idle."""
    spec, data = rigl
    now, burst = [0.0], [2.0, 7.0]

    def step(self):
        now[0] += 0.3 if burst[0] <= now[0] < burst[1] else 0.1

    monkeypatch.setattr(Trainer, "train_step", step)
    sleep = lambda s: now.__setitem__(0, now[0] + s)  # noqa: E731
    ref = measure_reference(spec, data, clock=lambda: now[0], sleep=sleep)
    assert now[0] >= 9.0, "the blocks spread over about a hundred steps' time"
    assert ref.dense_step_s == pytest.approx(0.1)
    assert max(ref.step_s) == pytest.approx(0.3), "the burst did slow some steps"
    # without the spread, every block falls inside a burst as long as the measurement, and prices it
    now[0], burst[1] = 2.0, 9.0
    busy = measure_reference(spec, data, clock=lambda: now[0], sleep=lambda s: None)
    assert busy.dense_step_s == pytest.approx(0.3)
