"""Mixed precision: what auto resolves to, the lean cross-entropy, and sparse training's guarantees in bf16."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import sparsesearch.training.precision as precision_mod
from sparsesearch.model.network import build_model, masked_lm_loss
from sparsesearch.spec import SpecError, spec_from_dict
from sparsesearch.training.precision import Precision, resolve_precision
from sparsesearch.training.target import target_path
from sparsesearch.training.trainer import Trainer, train

CPU = torch.device("cpu")


def _spec(tiny_spec, sparsity=None, **train_kw):
    spec = dataclasses.replace(tiny_spec, train=dataclasses.replace(tiny_spec.train, **train_kw))
    if sparsity:
        spec = dataclasses.replace(spec, sparsity=dataclasses.replace(spec.sparsity, **sparsity))
    return spec


@pytest.mark.parametrize("fast", [True, False])
def test_auto_picks_bf16_only_where_the_cpu_has_bf16_matmuls(monkeypatch, fast):
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: fast)
    assert resolve_precision("auto", CPU) == ("bf16" if fast else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"


def test_fp16_needs_cuda(tiny_raw):
    with pytest.raises(SpecError, match="train.precision: fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(SpecError, match="train.precision: fp16 needs a CUDA device"):
        spec_from_dict({**tiny_raw, "train": {**tiny_raw["train"], "device": "cpu", "precision": "fp16"}})
    with pytest.raises(SpecError, match="train.precision: must be one of"):
        spec_from_dict({**tiny_raw, "train": {**tiny_raw["train"], "precision": "int8"}})


def test_autocast_only_for_mixed_precision():
    assert not torch.is_autocast_enabled("cpu")
    with Precision("fp32", CPU).autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Precision("bf16", CPU).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert Precision("bf16", CPU).grad_scaler() is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_matches_torch_value_and_gradient(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(75, 300, generator=g) * 3).to(dtype).requires_grad_()
    targets = torch.randint(0, 300, (75,), generator=g)
    targets[::4] = -100  # ignored rows: no loss, no gradient
    ref = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref * 0.7, logits)
    ours = masked_lm_loss(logits, targets)
    (grad,) = torch.autograd.grad(ours * 0.7, logits)
    assert ours.dtype == torch.float32
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    assert grad.dtype == dtype and bool((grad[::4] == 0).all())
    tol = 1e-6 if dtype == torch.float32 else 8e-3  # bf16: one rounding of values up to 1
    assert float((grad.float() - ref_grad.float()).abs().max()) < tol


def test_frozen_embedding_is_cast_once_and_refreshed_when_it_changes(tiny_spec, tiny_data):
    emb = torch.randn(tiny_data.tokenizer.vocab_size, 16)
    model = build_model(tiny_spec.model, emb, seed=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = model._token_table(CPU)
        assert first.dtype == torch.bfloat16 and model._token_table(CPU) is first
        with torch.no_grad():
            model.token_embedding.weight.mul_(2.0)
        again = model._token_table(CPU)
    assert again is not first and torch.equal(again, model.token_embedding.weight.detach().to(torch.bfloat16))
    assert model._token_table(CPU) is model.token_embedding.weight  # fp32: the weight itself


@pytest.mark.parametrize("method", ["rigl", "topkast"])
def test_bf16_keeps_masks_exact_and_master_state_fp32(tiny_spec, tiny_data, method):
    spec = _spec(tiny_spec, {"method": method, "level": 0.7, "update_every": 3}, precision="bf16", max_steps=12)
    tr = Trainer(spec, tiny_data, None)
    assert tr.precision.name == "bf16"
    sp = tr.sparsifier
    for _ in range(12):
        tr.train_step()
        for name, mask in (sp.method.forward_masks(sp.view) or sp.masks).items():
            w = sp.weights[name]
            assert w.dtype == torch.float32 and (w.grad is None or w.grad.dtype == torch.float32)
            assert bool((w[~mask] == 0).all()), f"{name}: a masked weight is not zero"
        for name, mask in sp.masks.items():
            state = tr.optimizer.state[sp.weights[name]]
            for key in ("exp_avg", "exp_avg_sq"):
                assert state[key].dtype == torch.float32
                assert bool((state[key][~mask] == 0).all()), f"{name}: {key} of an inactive weight"
    assert len(sp.updates) >= 3


def test_bf16_learns_like_fp32_and_records_its_precision(tiny_spec, tiny_data):
    a = train(_spec(tiny_spec, precision="fp32", max_steps=40), tiny_data, None)
    b = train(_spec(tiny_spec, precision="bf16", max_steps=40), tiny_data, None)
    assert (a.precision, b.precision) == ("fp32", "bf16")
    assert b.history[-1]["eval_loss"] < b.history[0]["eval_loss"] - 0.5
    assert abs(a.history[-1]["eval_loss"] - b.history[-1]["eval_loss"]) < 0.1


def test_target_cache_is_keyed_by_the_resolved_precision(tiny_spec, tiny_data, monkeypatch):
    fp32, bf16 = _spec(tiny_spec, precision="fp32"), _spec(tiny_spec, precision="bf16")
    auto = _spec(tiny_spec, precision="auto")
    assert target_path(fp32, tiny_data) != target_path(bf16, tiny_data)
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: True)
    assert target_path(auto, tiny_data) == target_path(bf16, tiny_data)
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: False)
    assert target_path(auto, tiny_data) == target_path(fp32, tiny_data)
