"""A small BERT for masked-language modelling on top of a pre-trained token embedding.

    input ids [B, S]
      -> token embedding (pre-trained, [V, E], frozen by default)      [B, S, E]
      -> embed_proj: Linear(E -> H) when E != H (ALBERT-style factorised embedding, Lan et al. 2020)
      -> + learned position embedding, LayerNorm, dropout              [B, S, H]
      -> encoder: transformers BertEncoder (num_layers blocks)        [B, S, H]
      -> gather masked positions (model.logits = masked)               [n, H]
      -> head_transform: Linear(H -> E), GELU, LayerNorm(E)            [n, E]
      -> decoder: logits = x @ token_embedding^T + bias (tied)         [n, V]
      -> cross-entropy, summed in row chunks (``masked_lm_loss``)

Only the masked positions reach the head by default: with a 30k vocabulary the decoder would otherwise dominate
the FLOPs of a model this small. Every sparsifiable weight is an ``nn.Linear`` weight (see ``sparsifiable_weights``).

Under mixed precision (``torch.autocast``) a frozen token embedding is cast to the matmul dtype once and kept,
not at every forward pass (it is 30522 x 384 and used twice per pass: lookup and decoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from ..spec import ModelSpec
from .shape import ModelShape

INIT_STD = 0.02  # standard deviation of every initial Linear weight (BERT's)


class MLMModel(nn.Module):
    """The masked-LM model of the module docstring."""

    def __init__(self, cfg: ModelSpec, token_embedding: torch.Tensor):
        super().__init__()
        vocab, emb_dim = token_embedding.shape
        h = cfg.hidden_size
        self.cfg = cfg
        # A frozen table is never written, so it may be shared (with other trials of the same worker process).
        table = token_embedding if cfg.freeze_embedding else token_embedding.clone()
        self.token_embedding = nn.Embedding.from_pretrained(table, freeze=cfg.freeze_embedding)
        self.embed_proj = nn.Linear(emb_dim, h) if emb_dim != h else None
        self.position_embedding = nn.Embedding(cfg.seq_len, h)
        self.embed_norm = HiddenNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)
        bert_cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=h,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.ffn_size,
            hidden_act="gelu",
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            max_position_embeddings=cfg.seq_len,
        )
        bert_cfg._attn_implementation = "sdpa" if cfg.attention == "sdpa" else "eager"
        self.encoder = BertEncoder(bert_cfg)
        # Every LayerNorm over the hidden width may take its statistics from the first channels only (a dense core
        # inside a wider model, core_grow); plain LayerNorms until ``set_norm_channels`` says otherwise.
        for block in self.encoder.layer:
            for sub in (block.get_submodule("attention.output"), block.get_submodule("output")):
                sub.LayerNorm = HiddenNorm(h, eps=bert_cfg.layer_norm_eps)
        self._table_cache: tuple[tuple, torch.Tensor] | None = None
        self.head_transform = nn.Linear(h, emb_dim)
        self.head_norm = nn.LayerNorm(emb_dim, eps=1e-12)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab))
        self._init_weights()
        self.shape = ModelShape.from_spec(cfg, vocab, emb_dim)
        linear = {
            f"{name}.weight": tuple(m.weight.shape) for name, m in self.named_modules() if isinstance(m, nn.Linear)
        }
        if linear != self.shape.weight_shapes():  # every Linear weight is sparsifiable, and the list says which
            raise AssertionError(
                f"the network's Linear weights {linear} differ from the weight list {self.shape.weight_shapes()}"
            )

    def _init_weights(self) -> None:
        # BERT's initialisation (Devlin et al. 2019): N(0, 0.02) weights, zero biases, unit LayerNorm.
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=INIT_STD)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.position_embedding.weight, std=INIT_STD)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean MLM cross-entropy over the positions where ``labels != -100``, and the number of such positions."""
        logits, targets = self._logits(input_ids, labels)
        n = (targets != -100).sum()
        return masked_lm_loss(logits, targets) / n.clamp_min(1), n

    def token_losses(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The MLM cross-entropy at each position where ``labels != -100``, in row-major order (evaluation only:
        fp32 log-softmax over whole rows)."""
        logits, targets = self._logits(input_ids, labels)
        losses = F.cross_entropy(logits.float(), targets, reduction="none")
        return losses[targets != -100]

    def _logits(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder logits [n, V] and their targets [n]: at the labelled positions (``model.logits: masked``) or
        at every position (targets -100 where unlabelled)."""
        table = self._token_table(input_ids.device)
        x = F.embedding(input_ids, table)  # [B, S, E]
        if self.embed_proj is not None:
            x = self.embed_proj(x)  # [B, S, H]
        x = x + self.position_embedding.weight[: input_ids.shape[1]]
        x = self.dropout(self.embed_norm(x))
        x = self.encoder(x).last_hidden_state  # [B, S, H]
        if self.cfg.logits == "masked":
            selected = labels != -100
            x, targets = x[selected], labels[selected]  # [n, H], [n]
        else:
            x, targets = x.reshape(-1, x.shape[-1]), labels.reshape(-1)  # [B*S, H]
        x = self.head_norm(F.gelu(self.head_transform(x)))  # [n, E]
        return F.linear(x, table, self.decoder_bias), targets  # [n, V]

    def resolve_attention(self, device: torch.device) -> str:
        """Pick the attention kernel for ``device`` when ``model.attention`` is auto: torch SDPA on CUDA (fused
        kernels), plain matmuls elsewhere (on CPU, SDPA's bf16 kernel is ~4x slower than two bf16 matmuls and
        a softmax at these shapes; in fp32 they tie). Returns the kernel used."""
        kind = self.cfg.attention
        if kind == "auto":
            kind = "sdpa" if device.type == "cuda" else "eager"
        self.encoder.config._attn_implementation = kind
        return kind

    def _token_table(self, device: torch.device) -> torch.Tensor:
        """The token embedding in the dtype the matmuls use: cached when frozen under autocast."""
        weight = self.token_embedding.weight
        if weight.requires_grad or not torch.is_autocast_enabled(device.type):
            return weight
        dtype = torch.get_autocast_dtype(device.type)
        # The version counter moves on any in-place change (load_state_dict, .to()), so the cache cannot go stale.
        key = (dtype, weight.device, weight.data_ptr(), weight._version)
        if self._table_cache is None or self._table_cache[0] != key:
            self._table_cache = (key, weight.detach().to(dtype))
        return self._table_cache[1]

    def set_norm_channels(self, channels: int | None) -> None:
        """Make every LayerNorm over the hidden width take its mean and variance from the first ``channels``
        channels (None: all of them, the plain LayerNorm)."""
        for mod in self.modules():
            if isinstance(mod, HiddenNorm):
                mod.stat_channels = channels

    @torch.no_grad()
    def set_norm_blend(self, blend: float) -> None:
        """Move every such LayerNorm's statistics part of the way from its first channels to all of them: 0 the
        first channels' alone, 1 all channels' (the plain LayerNorm's)."""
        for mod in self.modules():
            if isinstance(mod, HiddenNorm):
                mod.stat_blend.fill_(blend)

    def sparsifiable_weights(self) -> dict[str, nn.Parameter]:
        """Weights a sparsity method may mask, by fully qualified name: the weight list of ``shape.py``."""
        return {w.name: self.get_parameter(w.name) for w in self.shape.weights()}


class HiddenNorm(nn.LayerNorm):
    """LayerNorm whose statistics may come from the first ``stat_channels`` channels and normalise every channel.

    With a dense core of c channels whose other channels nothing reads, the core then computes exactly what a
    dense model of width c computes (a plain LayerNorm would average in the idle channels); once the rest opens
    with zero weights the function is unchanged, because the statistics still come from the core. ``stat_blend``
    (a buffer, so that checkpoints and saved models carry it) moves the statistics towards all channels' by
    blending the two means and the two variances: 0 the core's alone, 1 the plain LayerNorm's."""

    stat_channels: int | None = None
    stat_blend: torch.Tensor

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("stat_blend", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stat_channels is None:
            return super().forward(x)
        xf = x.float()
        core = xf[..., : self.stat_channels]
        mean = core.mean(-1, keepdim=True)
        var = core.var(-1, unbiased=False, keepdim=True)
        # Both statistics always (no branch on the buffer's value: reading it would sync a GPU every call).
        b = self.stat_blend
        mean = mean + b * (xf.mean(-1, keepdim=True) - mean)
        var = var + b * (xf.var(-1, unbiased=False, keepdim=True) - var)
        return (xf - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints and saved models from before the blend existed hold none: theirs was 0 (the core's statistics).
        if prefix + "stat_blend" not in state_dict:
            state_dict[prefix + "stat_blend"] = torch.zeros(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _CrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy of logits [n, V] against targets (-100: ignored), with a lean backward.

    ``F.cross_entropy(logits.float())`` makes full fp32 copies of [n, V] in forward and backward (plus a
    zero-filled gradient): on a CPU with a 30k vocabulary that cost as much as a third of the decoder matmuls.
    Forward: log-softmax in fp32, in chunks of rows that stay in cache (the loss is exact to fp32). Backward:
    softmax(z) - onehot(t) in the logits' own dtype, in place, which is the dtype autograd would give the
    gradient anyway (softmax accumulates in fp32 internally)."""

    ROWS = 32

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != -100
        safe = targets.clamp_min(0)[:, None]
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for i in range(0, logits.shape[0], _CrossEntropySum.ROWS):
            rows = slice(i, i + _CrossEntropySum.ROWS)
            logp = F.log_softmax(logits[rows], dim=-1, dtype=torch.float32).gather(1, safe[rows]).squeeze(1)
            total -= torch.where(valid[rows], logp, 0.0).sum()
        ctx.save_for_backward(logits, safe, valid)
        return total

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor):
        logits, safe, valid = ctx.saved_tensors
        grad = F.softmax(logits, dim=-1)  # d(-log p_t)/dz = softmax(z) - onehot(t)
        # A flat index_put_: scatter_ and scatter_add_ round-trip a whole bf16 tensor through fp32 on CPU.
        at = torch.arange(grad.shape[0], device=grad.device) * grad.shape[1] + safe.squeeze(1)
        flat = grad.view(-1)
        flat.index_put_((at,), flat[at] - 1)
        return grad.mul_((grad_total * valid)[:, None].to(grad.dtype)), None


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed MLM cross-entropy over the rows whose target is not -100 (same value as ``F.cross_entropy`` with
    ``reduction="sum"`` on fp32 logits)."""
    return _CrossEntropySum.apply(logits, targets)


def build_model(
    cfg: ModelSpec, token_embedding: torch.Tensor, seed: int, device: torch.device | None = None
) -> MLMModel:
    """The model with its random parts initialised from ``seed`` (the same seed gives the same model), on
    ``device`` (default CPU) with the attention kernel chosen for it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLMModel(cfg, token_embedding)
    device = device or torch.device("cpu")
    model.resolve_attention(device)
    return model.to(device)
