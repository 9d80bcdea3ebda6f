"""The analytic FLOP model agrees with torch's FlopCounterMode and follows docs/ARCHITECTURE.md, "FLOP rules"."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sparsesearch.data.batches import Batches
from sparsesearch.model.embedding import load_token_embedding
from sparsesearch.model.flops import step_flops
from sparsesearch.model.network import build_model
from sparsesearch.model.shape import ModelShape


def _measure(spec, data, emb):
    model = build_model(spec.model, emb, seed=0)
    inputs, labels = Batches(
        data, batch_size=spec.train.batch_size, mask_prob=0.15, seed=0, eval_sequences=8
    ).train_batch(0)
    with FlopCounterMode(display=False) as counter:
        loss, n = model(inputs, labels)
        loss.backward()
    shape = ModelShape.from_spec(spec.model, *emb.shape)
    return counter.get_total_flops(), step_flops(shape, spec.train.batch_size, int(n)), model


@pytest.mark.parametrize(
    "freeze,logits,hidden", [(True, "masked", 32), (False, "masked", 32), (True, "all", 32), (True, "masked", 16)]
)
def test_dense_step_matches_flop_counter_within_1_percent(tiny_spec, tiny_data, tiny_model_dir, freeze, logits, hidden):
    model_cfg = dataclasses.replace(
        tiny_spec.model, attention="eager", freeze_embedding=freeze, logits=logits, hidden_size=hidden
    )
    spec = dataclasses.replace(tiny_spec, model=model_cfg)
    emb = load_token_embedding(tiny_model_dir)
    measured, analytic, _ = _measure(spec, tiny_data, emb)
    assert analytic.total == pytest.approx(measured, rel=0.01)


def test_default_shape_matches_flop_counter(tiny_data):
    """The default model's layer shapes (hidden 256, ffn 1024, 384-d embedding, 30k vocab) on tiny batches."""
    from sparsesearch.model.embedding import resolve_model_dir
    from sparsesearch.spec import spec_from_dict

    spec = spec_from_dict({"model": {"attention": "eager", "seq_len": 32}, "train": {"batch_size": 2}})
    emb = load_token_embedding(resolve_model_dir("default"))
    ids = torch.randint(1000, 2000, (2, 32))
    labels = torch.full_like(ids, -100)
    labels[:, 3:9] = ids[:, 3:9]
    model = build_model(spec.model, emb, seed=0)
    with FlopCounterMode(display=False) as counter:
        loss, n = model(ids, labels)
        loss.backward()
    analytic = step_flops(ModelShape.from_spec(spec.model, *emb.shape), 2, int(n))
    assert analytic.total == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_component_names_are_the_models_sparsifiable_weights(tiny_spec, tiny_data, tiny_model_dir):
    emb = load_token_embedding(tiny_model_dir)
    _, analytic, model = _measure(tiny_spec, tiny_data, emb)
    names = {c.name for c in analytic.components if c.sparsifiable}
    assert names == set(model.sparsifiable_weights())


def test_density_scales_forward_and_both_backward_matmuls():
    shape = ModelShape(vocab=100, emb_dim=16, hidden=32, layers=2, heads=2, ffn=64, seq_len=32)
    dense = step_flops(shape, 8, 40)
    half = step_flops(shape, 8, 40, {c.name: 0.5 for c in dense.components if c.sparsifiable})
    for d, h in zip(dense.components, half.components):
        factor = 0.5 if d.sparsifiable else 1.0
        assert (h.forward, h.backward_input, h.backward_weight) == pytest.approx(
            (d.forward * factor, d.backward_input * factor, d.backward_weight * factor)
        )
    assert half.total == pytest.approx(dense.total - dense.sparsifiable / 2)


def test_frozen_parameters_have_no_weight_gradient_cost():
    shape = ModelShape(vocab=100, emb_dim=16, hidden=32, layers=1, heads=2, ffn=64, seq_len=32)
    frozen = {c.group: c for c in step_flops(shape, 4, 10).components}
    trainable = {c.group: c for c in step_flops(dataclasses.replace(shape, embedding_trainable=True), 4, 10).components}
    assert frozen["decoder"].backward_weight == 0 and trainable["decoder"].backward_weight > 0
    # Right after a frozen embedding no input gradient is needed.
    assert frozen["embed_proj"].backward_input == 0 and trainable["embed_proj"].backward_input > 0


def test_breakdowns_add_up():
    shape = ModelShape(vocab=100, emb_dim=16, hidden=32, layers=3, heads=2, ffn=64, seq_len=32)
    step = step_flops(shape, 8, 40)
    assert sum(step.by_group().values()) == pytest.approx(step.total)
    assert sum(step.by_layer().values()) == pytest.approx(step.total)
    assert set(step.by_layer()) == {"embedding", "layer 0", "layer 1", "layer 2", "head"}
    assert step.nonmatmul and all(v > 0 for v in step.nonmatmul.values())


def test_flop_model_does_not_import_torch():
    code = "import sys, sparsesearch.model.flops; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
