"""Analytic FLOP model of one training step (pure Python: no torch).

Rules (docs/ARCHITECTURE.md, "FLOP rules"): a matmul [M, K] x [K, N] costs 2*M*K*N FLOPs. Backward is the input-gradient
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
from collections.abc import Mapping
from dataclasses import dataclass, field

from .shape import GROUPS, ModelShape

# Density of a weight for one step: one number, or (forward, input-gradient, weight-gradient) when a method
# computes some of them more densely (e.g. RigL's dense gradient on mask-update steps).
Density = float | tuple[float, float, float]


def charged_densities(
    forward: Mapping[str, float], backward: Mapping[str, float], *, dense_gradient: bool
) -> dict[str, Density]:
    """What one training step costs per weight, the one rule every FLOP count uses (the trainer's step by step,
    the ``flops`` command's estimate): a weight's forward and input-gradient matmuls at its forward density; its
    weight-gradient matmul at its mask's density (``backward``: masked weights only; Top-KAST's backward set may
    exceed the forward set), or dense when the method needs the dense gradient at this step (RigL-style growth on
    update steps, SNFS's momentum every step). Unmasked weights cost their forward density throughout."""
    out: dict[str, Density] = {}
    for name, d in forward.items():
        if name not in backward:
            out[name] = d
        elif dense_gradient:
            out[name] = (d, d, 1.0)
        else:
            out[name] = (d, d, backward[name]) if backward[name] != d else d
    return out


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
    """The matmul FLOPs of one training step, by component, and the non-matmul estimate apart."""

    components: tuple[Component, ...]
    nonmatmul: Mapping[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Matmul FLOPs of the step (forward + backward)."""
        return sum(c.total for c in self.components)

    @property
    def forward(self) -> float:
        """Forward matmul FLOPs of the step."""
        return sum(c.forward for c in self.components)

    @property
    def sparsifiable(self) -> float:
        """FLOPs of the sparsifiable weights' matmuls."""
        return sum(c.total for c in self.components if c.sparsifiable)

    def by_group(self) -> dict[str, float]:
        """FLOPs per weight group, in the order of ``GROUPS``."""
        out: dict[str, float] = defaultdict(float)
        for c in self.components:
            out[c.group] += c.total
        return {g: out[g] for g in GROUPS if g in out}

    def by_layer(self) -> dict[str, float]:
        """FLOPs per encoder block, with the embedding projection and the head apart."""
        out: dict[str, float] = defaultdict(float)
        for c in self.components:
            out["embedding" if c.group == "embed_proj" else "head" if c.layer is None else f"layer {c.layer}"] += (
                c.total
            )
        return dict(out)


def _linear(
    name: str,
    group: str,
    layer: int | None,
    rows: float,
    k: int,
    n: int,
    *,
    density: Density,
    input_grad: bool,
    weight_grad: bool,
    sparsifiable: bool = True,
) -> Component:
    fwd, inp, wgt = (density, density, density) if isinstance(density, (int, float)) else density
    f = 2.0 * rows * k * n
    return Component(
        name,
        group,
        layer,
        forward=f * fwd,
        backward_input=f * inp if input_grad else 0.0,
        backward_weight=f * wgt if weight_grad else 0.0,
        sparsifiable=sparsifiable,
        density=fwd,
    )


def step_flops(
    shape: ModelShape, batch_size: int, n_masked: float, densities: Mapping[str, Density] | None = None
) -> StepFlops:
    """FLOPs of one training step (forward + backward, no optimizer).

    Args:
        n_masked: positions that reach the MLM head (ignored when logits are computed at all positions).
        densities: density per sparsifiable parameter name (one number, or forward / input-gradient /
            weight-gradient densities), and per attention product ('encoder.layer.0.attention.scores'); missing
            names are dense.
    """
    dens = densities or {}
    s = shape
    tokens = float(batch_size * s.seq_len)
    logit_rows = tokens if s.logits_at_all_positions else float(n_masked)
    # QK^T and AV: batch*heads products of [S, d] x [S, d]^T and [S, S] x [S, d]; 2*B*S*S*H each.
    att = 2.0 * batch_size * s.seq_len * s.seq_len * s.hidden
    comps: list[Component] = []
    for w in s.weights():
        if w.group == "head_transform":
            rows, input_grad = logit_rows, True
        elif w.group == "embed_proj":  # its input is the embedding: it needs a gradient only if that trains
            rows, input_grad = tokens, s.embedding_trainable
        else:
            rows, input_grad = tokens, True
        comps.append(
            _linear(
                w.name,
                w.group,
                w.layer,
                rows,
                w.in_features,
                w.out_features,
                density=dens.get(w.name, 1.0),
                input_grad=input_grad,
                weight_grad=True,
            )
        )
        if w.group == "ffn_out":  # the block's activation products follow its weights
            p = f"encoder.layer.{w.layer}."
            for site, group in (("scores", "attn_scores"), ("values", "attn_values")):
                # An activation product's density is the share of its head dimensions in use (a dense core's
                # heads, core_grow); 1.0 otherwise.
                a = att * _scalar(dens.get(f"{p}attention.{site}", 1.0))
                comps.append(Component(f"{p}attention.{site}", group, w.layer, a, 2 * a, 0.0, sparsifiable=False))
    # Tied to the token embedding: one parameter, trainable only with the embedding, never masked here.
    comps.append(
        _linear(
            "decoder",
            "decoder",
            None,
            logit_rows,
            s.emb_dim,
            s.vocab,
            density=1.0,
            input_grad=True,
            weight_grad=s.embedding_trainable,
            sparsifiable=False,
        )
    )
    return StepFlops(tuple(comps), _nonmatmul(shape, batch_size, logit_rows))


def _scalar(density: Density) -> float:
    return density if isinstance(density, (int, float)) else density[0]


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


def weight_costs(shape: ModelShape, batch_size: int, n_masked: float) -> dict[str, float]:
    """Dense training FLOPs per step of one weight of each sparsifiable matrix (what methods that price
    growth by compute, such as flop_rigl, divide by)."""
    sizes = {w.name: w.out_features * w.in_features for w in shape.weights()}
    return {
        c.name: c.total / sizes[c.name] for c in step_flops(shape, batch_size, n_masked).components if c.name in sizes
    }


def expected_masked(shape: ModelShape, batch_size: int, mask_prob: float) -> float:
    """Expected positions reaching the head per step, approximately: [CLS]/[SEP] around each sequence are
    never masked; the [SEP]s between packed documents inside it are counted as maskable (a slight overcount)."""
    return batch_size * (shape.seq_len - 2) * mask_prob
