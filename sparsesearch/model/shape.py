"""The model's shape and its list of weight matrices: the one place that names them (pure Python, no torch).

The network (``network.py``), the FLOP model (``flops.py``), the layer densities of a sparsity level and the
spec's weight groups all read the weight list from here. Names are the parameter names of ``MLMModel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Sparsifiable weight groups, by the end of the parameter name. 'attention.output.dense' also ends in
# 'output.dense', so the longer suffix is listed first.
_SUFFIX_GROUPS = {
    "embed_proj.weight": "embed_proj",
    "attention.self.query.weight": "attn_qkv",
    "attention.self.key.weight": "attn_qkv",
    "attention.self.value.weight": "attn_qkv",
    "attention.output.dense.weight": "attn_out",
    "intermediate.dense.weight": "ffn_in",
    "output.dense.weight": "ffn_out",
    "head_transform.weight": "head_transform",
}
SPARSIFIABLE_GROUPS = tuple(dict.fromkeys(_SUFFIX_GROUPS.values()))
# Groups of every matmul of a step: the sparsifiable ones, the tied decoder, and the attention products.
GROUPS = (*SPARSIFIABLE_GROUPS, "decoder", "attn_scores", "attn_values")


def weight_group(name: str) -> str:
    """The group of a sparsifiable weight, e.g. 'encoder.layer.0.intermediate.dense.weight' -> 'ffn_in'."""
    for suffix, group in _SUFFIX_GROUPS.items():
        if name == suffix or name.endswith("." + suffix):
            return group
    raise KeyError(f"{name!r} is not a sparsifiable weight")


@dataclass(frozen=True)
class Weight:
    """One sparsifiable weight matrix, as ``nn.Linear`` stores it: [out_features, in_features]."""

    name: str
    group: str
    layer: int | None  # encoder block, None outside the encoder
    out_features: int
    in_features: int

    @property
    def shape(self) -> tuple[int, int]:
        """(out_features, in_features)."""
        return (self.out_features, self.in_features)


@dataclass(frozen=True)
class ModelShape:
    """Everything the FLOP count and the weight list depend on: the model spec and the embedding's size."""

    vocab: int
    emb_dim: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    seq_len: int
    embedding_trainable: bool = False
    logits_at_all_positions: bool = False

    @classmethod
    def from_spec(cls, model: Any, vocab: int, emb_dim: int) -> ModelShape:
        """From a ``ModelSpec`` and the embedding's [vocab, emb_dim] (``embedding.model_shape`` reads them)."""
        return cls(
            vocab=vocab,
            emb_dim=emb_dim,
            hidden=model.hidden_size,
            layers=model.num_layers,
            heads=model.num_heads,
            ffn=model.ffn_size,
            seq_len=model.seq_len,
            embedding_trainable=not model.freeze_embedding,
            logits_at_all_positions=model.logits == "all",
        )

    @property
    def has_embed_proj(self) -> bool:
        """The embedding is projected to the encoder width when the two differ (ALBERT-style)."""
        return self.emb_dim != self.hidden

    def weights(self) -> tuple[Weight, ...]:
        """Every sparsifiable weight in forward order: embedding projection, encoder blocks, head transform."""
        h, out = self.hidden, []
        if self.has_embed_proj:
            out.append(Weight("embed_proj.weight", "embed_proj", None, h, self.emb_dim))
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            for sub in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
                out.append(Weight(f"{p}{sub}.weight", weight_group(f"{sub}.weight"), i, h, h))
            out.append(Weight(f"{p}intermediate.dense.weight", "ffn_in", i, self.ffn, h))
            out.append(Weight(f"{p}output.dense.weight", "ffn_out", i, h, self.ffn))
        out.append(Weight("head_transform.weight", "head_transform", None, self.emb_dim, h))
        return tuple(out)

    def weight_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of every sparsifiable weight, by name."""
        return {w.name: w.shape for w in self.weights()}
