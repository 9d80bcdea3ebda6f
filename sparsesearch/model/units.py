"""Which attention heads and FFN units of the encoder take part in the model's function.

A unit whose output weights are all zero adds nothing to the output; one whose input weights and bias are all zero
computes a constant zero. With both sides at zero it also gets no gradient on either side (a saddle), so no
gradient-led growth ever opens it: a sparse method can leave part of the wide model untrained and no loss curve
shows it. The trainer records these fractions with every evaluation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def _rows(layer: nn.Linear) -> torch.Tensor:
    """Per output channel of ``layer``: whether it has a non-zero weight or bias (its input side)."""
    has = (layer.weight != 0).any(dim=1)
    return has | (layer.bias != 0) if layer.bias is not None else has


def _cols(layer: nn.Linear) -> torch.Tensor:
    """Per input channel of ``layer``: whether a non-zero weight reads it (its output side)."""
    return (layer.weight != 0).any(dim=0)


@torch.no_grad()
def live_units(encoder_layers: Iterable[Any], num_heads: int) -> dict[str, float]:
    """Fractions of the encoder's heads and FFN units that take part: ``live_heads`` (a head with at least one value
    channel that is written and read on) and ``live_ffn_units`` (an FFN unit with a non-zero input weight or bias
    and a non-zero output weight). ``encoder_layers``: blocks in transformers' BERT layout (``BertLayer``)."""
    heads = heads_live = units = units_live = 0
    for block in encoder_layers:
        ffn = _rows(block.intermediate.dense) & _cols(block.output.dense)
        units += ffn.numel()
        units_live += int(ffn.sum())
        value = _rows(block.attention.self.value) & _cols(block.attention.output.dense)
        per_head = value.view(num_heads, -1).any(dim=1)
        heads += num_heads
        heads_live += int(per_head.sum())
    return {"live_heads": heads_live / max(1, heads), "live_ffn_units": units_live / max(1, units)}
