"""Analytic FLOP model of one training step (pure Python: no torch).

Rules (DESIGN.md section 4): a matmul [M, K] x [K, N] costs 2*M*K*N FLOPs. Backward is the input-gradient
matmul (skipped where the input needs no gradient, e.g. right after a frozen embedding) plus the weight-gradient
matmul (skipped for frozen weights), each the size of the forward one. A weight of density d costs d times its
dense FLOPs in all three. Activation x activation products (attention scores QK^T and attention-weighted values
AV) are dense and need both operand gradients. Non-matmul work (softmax, LayerNorm, GELU, cross-entropy) is an
estimate reported separately and never mixed into the matmul totals.

Source of the 2*M*K*N forward / 2x backward convention: Kaplan et al. 2020 ("Scaling Laws for Neural Language
Models", section 2.1) and the FLOP rules of torch.utils.flop_counter, against which a test checks this model.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

GROUPS = ("embed_proj", "attn_qkv", "attn_out", "ffn_in", "ffn_out", "head_transform", "decoder",
          "attn_scores", "attn_values")
# Groups of sparsifiable weights, by the end of the parameter name (see MLMModel.sparsifiable_weights).
WEIGHT_GROUPS = {"embed_proj.weight": "embed_proj", "attention.self.query.weight": "attn_qkv",
                 "attention.self.key.weight": "attn_qkv", "attention.self.value.weight": "attn_qkv",
                 "attention.output.dense.weight": "attn_out", "intermediate.dense.weight": "ffn_in",
                 "output.dense.weight": "ffn_out", "head_transform.weight": "head_transform"}
SPARSIFIABLE_GROUPS = tuple(dict.fromkeys(WEIGHT_GROUPS.values()))


def weight_group(name: str) -> str:
    """The group of a sparsifiable weight, e.g. 'encoder.layer.0.intermediate.dense.weight' -> 'ffn_in'."""
    for suffix, group in WEIGHT_GROUPS.items():
        if name == suffix or name.endswith("." + suffix):
            # 'attention.output.dense' also ends in 'output.dense': the longer suffix is listed first.
            return group
    raise KeyError(f"{name!r} is not a sparsifiable weight")

# Density of a weight for one step: one number, or (forward, input-gradient, weight-gradient) when a method
# computes some of them more densely (e.g. RigL's dense gradient on mask-update steps).
Density = float | tuple[float, float, float]


@dataclass(frozen=True)
class ModelShape:
    """Everything the FLOP count depends on, read from the model spec and the embedding."""

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
    def from_spec(cls, model, vocab: int, emb_dim: int) -> "ModelShape":
        return cls(vocab=vocab, emb_dim=emb_dim, hidden=model.hidden_size, layers=model.num_layers,
                   heads=model.num_heads, ffn=model.ffn_size, seq_len=model.seq_len,
                   embedding_trainable=not model.freeze_embedding, logits_at_all_positions=model.logits == "all")


@dataclass(frozen=True)
class Component:
    """FLOPs of one matmul site for one training step."""

    name: str  # parameter name for weight matmuls (matches MLMModel.sparsifiable_weights), else a label
    group: str
    layer: int | None  # encoder block index, None outside the encoder
    forward: float
    backward_input: float
    backward_weight: float
    sparsifiable: bool
    density: float = 1.0  # forward density

    @property
    def total(self) -> float:
        return self.forward + self.backward_input + self.backward_weight


@dataclass(frozen=True)
class StepFlops:
    components: tuple[Component, ...]
    nonmatmul: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Matmul FLOPs of the step (forward + backward)."""
        return sum(c.total for c in self.components)

    @property
    def forward(self) -> float:
        return sum(c.forward for c in self.components)

    @property
    def sparsifiable(self) -> float:
        return sum(c.total for c in self.components if c.sparsifiable)

    def by_group(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for c in self.components:
            out[c.group] += c.total
        return {g: out[g] for g in GROUPS if g in out}

    def by_layer(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for c in self.components:
            out["embedding" if c.group == "embed_proj" else "head" if c.layer is None else f"layer {c.layer}"] \
                += c.total
        return dict(out)


def _linear(name: str, group: str, layer: int | None, rows: float, k: int, n: int, *, density: Density,
            input_grad: bool, weight_grad: bool, sparsifiable: bool = True) -> Component:
    fwd, inp, wgt = (density, density, density) if isinstance(density, (int, float)) else density
    f = 2.0 * rows * k * n
    return Component(name, group, layer, forward=f * fwd, backward_input=f * inp if input_grad else 0.0,
                     backward_weight=f * wgt if weight_grad else 0.0, sparsifiable=sparsifiable, density=fwd)


def step_flops(shape: ModelShape, batch_size: int, n_masked: float,
               densities: Mapping[str, Density] | None = None) -> StepFlops:
    """FLOPs of one training step (forward + backward, no optimizer).

    Args:
        n_masked: positions that reach the MLM head (ignored when logits are computed at all positions).
        densities: density per sparsifiable parameter name (one number, or forward / input-gradient /
            weight-gradient densities); missing names are dense.
    """
    dens = densities or {}
    s = shape
    tokens = float(batch_size * s.seq_len)
    logit_rows = tokens if s.logits_at_all_positions else float(n_masked)
    comps: list[Component] = []
    if s.emb_dim != s.hidden:
        # Its input comes straight from the embedding: it needs a gradient only if the embedding trains.
        comps.append(_linear("embed_proj.weight", "embed_proj", None, tokens, s.emb_dim, s.hidden,
                             density=dens.get("embed_proj.weight", 1.0), input_grad=s.embedding_trainable,
                             weight_grad=True))
    for i in range(s.layers):
        p = f"encoder.layer.{i}."
        for sub, group in (("attention.self.query", "attn_qkv"), ("attention.self.key", "attn_qkv"),
                           ("attention.self.value", "attn_qkv"), ("attention.output.dense", "attn_out")):
            name = f"{p}{sub}.weight"
            comps.append(_linear(name, group, i, tokens, s.hidden, s.hidden, density=dens.get(name, 1.0),
                                 input_grad=True, weight_grad=True))
        name = f"{p}intermediate.dense.weight"
        comps.append(_linear(name, "ffn_in", i, tokens, s.hidden, s.ffn, density=dens.get(name, 1.0),
                             input_grad=True, weight_grad=True))
        name = f"{p}output.dense.weight"
        comps.append(_linear(name, "ffn_out", i, tokens, s.ffn, s.hidden, density=dens.get(name, 1.0),
                             input_grad=True, weight_grad=True))
        # QK^T and AV: batch*heads products of [S, d] x [d, S] and [S, S] x [S, d]; 2*B*S*S*H each.
        att = 2.0 * batch_size * s.seq_len * s.seq_len * s.hidden
        comps.append(Component(f"{p}attention.scores", "attn_scores", i, att, 2 * att, 0.0, sparsifiable=False))
        comps.append(Component(f"{p}attention.values", "attn_values", i, att, 2 * att, 0.0, sparsifiable=False))
    comps.append(_linear("head_transform.weight", "head_transform", None, logit_rows, s.hidden, s.emb_dim,
                         density=dens.get("head_transform.weight", 1.0), input_grad=True, weight_grad=True))
    # Tied to the token embedding: one parameter, trainable only with the embedding, never masked here.
    comps.append(_linear("decoder", "decoder", None, logit_rows, s.emb_dim, s.vocab, density=1.0,
                         input_grad=True, weight_grad=s.embedding_trainable, sparsifiable=False))
    return StepFlops(tuple(comps), _nonmatmul(shape, batch_size, logit_rows))


def weight_shapes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every sparsifiable weight, by the names ``step_flops`` and
    ``MLMModel.sparsifiable_weights`` use: what layer densities are computed over, without building a model."""
    s = shape
    out: dict[str, tuple[int, int]] = {}
    if s.emb_dim != s.hidden:
        out["embed_proj.weight"] = (s.hidden, s.emb_dim)
    for i in range(s.layers):
        p = f"encoder.layer.{i}."
        for sub in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            out[f"{p}{sub}.weight"] = (s.hidden, s.hidden)
        out[f"{p}intermediate.dense.weight"] = (s.ffn, s.hidden)
        out[f"{p}output.dense.weight"] = (s.hidden, s.ffn)
    out["head_transform.weight"] = (s.emb_dim, s.hidden)
    return out


def _nonmatmul(s: ModelShape, batch_size: int, logit_rows: float) -> dict[str, float]:
    """Rough elementwise FLOP estimates (forward x 3 for forward + backward); reported, never used in ratios."""
    tokens = batch_size * s.seq_len
    per_fwd = {
        "softmax (attention)": 5.0 * batch_size * s.heads * s.seq_len * s.seq_len * s.layers,
        "layernorm": 8.0 * (tokens * s.hidden * (1 + 2 * s.layers) + logit_rows * s.emb_dim),
        "gelu": 8.0 * (tokens * s.ffn * s.layers + logit_rows * s.emb_dim),
        "softmax + cross-entropy (logits)": 5.0 * logit_rows * s.vocab,
    }
    return {k: 3.0 * v for k, v in per_fwd.items()}


def expected_masked(shape: ModelShape, batch_size: int, mask_prob: float) -> float:
    """Expected positions reaching the head per step, approximately: [CLS]/[SEP] around each sequence are
    never masked; the [SEP]s between packed documents inside it are counted as maskable (a slight overcount)."""
    return batch_size * (shape.seq_len - 2) * mask_prob
