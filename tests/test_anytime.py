"""Anytime-fair evaluation: a weight average with the run's masks (``train.eval_weights: ema``) and a
warm-up / stable / decay schedule whose cooldown ends at the objective rung (``train.lr_schedule: wsd``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sparsesearch.spec import SpecError, spec_from_dict
from sparsesearch.training.trainer import Trainer


def _spec(tiny_spec, sparsity: dict | None = None, **train_kw):
    spec = dataclasses.replace(tiny_spec, train=dataclasses.replace(tiny_spec.train, **train_kw))
    if sparsity:
        spec = dataclasses.replace(spec, sparsity=dataclasses.replace(spec.sparsity, **sparsity))
    return spec


def test_wsd_is_constant_then_decays_linearly_to_zero_at_the_objective_rung(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, warmup_steps=4, lr_schedule="wsd", cooldown=0.25, max_steps=60)
    spec = dataclasses.replace(spec, target=dataclasses.replace(spec.target, dense_steps=(20, 40), objective_rung=-1))
    tr = Trainer(spec, tiny_data, None)
    factors = {s: tr._lr_factor(s) for s in range(61)}
    assert [factors[s] for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert all(factors[s] == 1.0 for s in range(4, 31))  # stable until 30 = 40 x (1 - 0.25)
    assert factors[35] == pytest.approx(0.5) and factors[40] == 0.0 and factors[60] == 0.0


@pytest.mark.parametrize(("key", "value", "rule"), [("cooldown", 0.0, "> 0"), ("cooldown", 1.5, "<= 1")])
def test_a_bad_cooldown_names_the_field(key, value, rule):
    with pytest.raises(SpecError, match=rf"train\.{key}: must be {rule}"):
        spec_from_dict({"train": {key: value}})


def test_the_averaged_model_carries_the_masks_and_the_current_weights_come_back(tiny_spec, tiny_data):
    spec = _spec(
        tiny_spec,
        {"method": "rigl", "level": 0.8, "update_every": 4},
        max_steps=24,
        eval_every=12,
        eval_weights="ema",
        ema_half_life=4.0,
    )
    tr = Trainer(spec, tiny_data, None)
    seen = []

    def look() -> float:  # what the evaluation sees, checked while it sees it
        masks = tr.sparsifier.forward_masks()
        for name, mask in masks.items():
            w = tr.sparsifier.weights[name]
            assert torch.count_nonzero(w[~mask]) == 0, f"{name}: a masked weight is not zero in the average"
        seen.append({n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad})
        return 1.0

    rows = list(tr.run())  # warm: the average moves away from the weights
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    tr._evaluate_model = look  # type: ignore[method-assign]
    tr.evaluate()
    after = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    assert all(torch.equal(before[n], after[n]) for n in before), "the current weights are restored exactly"
    assert any(not torch.equal(seen[0][n], before[n]) for n in before), "the evaluation saw the average"
    assert rows[-1]["step"] == 24


def test_averaging_changes_evaluations_not_training_and_is_charged(tiny_spec, tiny_data):
    plain = Trainer(_spec(tiny_spec, max_steps=40, eval_every=10), tiny_data, None)
    averaged = Trainer(
        _spec(tiny_spec, max_steps=40, eval_every=10, eval_weights="ema", ema_half_life=5.0), tiny_data, None
    )
    a, b = list(plain.run()), list(averaged.run())
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]  # the same training run
    assert a[0]["eval_loss"] == b[0]["eval_loss"]  # before the first step the average is the weights
    assert a[-1]["eval_loss"] != b[-1]["eval_loss"]
    assert plain.method_overhead() == 1.0 and averaged.method_overhead() > 1.0
    assert [r["flops"] for r in a] == [r["flops"] for r in b]  # its cost is time (overhead), not matmul FLOPs


def test_the_loss_by_input_kind_splits_the_same_evaluation_without_changing_training(tiny_spec, tiny_data):
    spec = _spec(tiny_spec, max_steps=12, eval_every=6, eval_weights="ema", ema_half_life=5.0)
    plain = Trainer(spec, tiny_data, None, also_current=True)
    split = Trainer(spec, tiny_data, None, also_current=True, by_kind=True)
    rows_plain, rows_split = list(plain.run()), list(split.run())
    labels = split.batches.eval_labels
    shown = split.batches.eval_inputs[labels != -100]
    answer = labels[labels != -100]
    counts = {
        "mask": int((shown == tiny_data.tokenizer.mask_id).sum()),
        "kept": int((shown == answer).sum()),
    }
    counts["random"] = len(answer) - counts["mask"] - counts["kept"]
    assert counts["mask"] > counts["kept"] > 0 and counts["random"] > 0
    for a, b in zip(rows_plain, rows_split):
        # the same training path, the same loss (another reduction of the same logits), and its split adds up
        assert a["step"] == b["step"] and a["eval_loss_current"] == b["eval_loss_current"]
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-5)
        whole = sum(counts[k] * b[f"eval_loss_{k}"] for k in counts) / len(answer)
        assert whole == pytest.approx(b["eval_loss"], rel=1e-9)
    assert "eval_loss_mask" not in rows_plain[-1]
