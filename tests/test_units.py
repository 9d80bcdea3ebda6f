"""The live-unit diagnostic: which heads and FFN units of the encoder take part in the model's function."""

from __future__ import annotations

import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from sparsesearch.model.units import live_units

HEADS, HEAD_DIM, FFN = 4, 2, 16


def _encoder(layers: int = 2) -> BertEncoder:
    cfg = BertConfig(
        hidden_size=HEADS * HEAD_DIM, num_attention_heads=HEADS, intermediate_size=FFN, num_hidden_layers=layers
    )
    return BertEncoder(cfg)


def test_a_dense_encoder_has_every_unit_live():
    assert live_units(_encoder().layer, HEADS) == {"live_heads": 1.0, "live_ffn_units": 1.0}


@torch.no_grad()
def test_a_unit_is_dead_when_nothing_reads_it_or_it_computes_a_constant_zero():
    enc = _encoder()
    block = enc.layer[0]
    block.output.dense.weight[:, 0] = 0  # FFN unit 0: nothing reads it
    block.intermediate.dense.weight[1] = 0  # unit 1: no input weights, but its bias still makes it a constant
    block.intermediate.dense.weight[2] = 0  # unit 2: no input weights and no bias: zero whatever the input
    block.intermediate.dense.bias[2] = 0
    block.attention.self.value.weight[:HEAD_DIM] = 0  # head 0: its value channels compute zero
    block.attention.self.value.bias[:HEAD_DIM] = 0
    block.attention.output.dense.weight[:, HEAD_DIM] = 0  # head 1: one of its two channels is not read, one is
    assert live_units(enc.layer, HEADS) == {"live_heads": 7 / 8, "live_ffn_units": 30 / 32}
