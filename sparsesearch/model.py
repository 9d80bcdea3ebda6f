"""A small BERT for masked-language modelling on top of a pre-trained token embedding.

    input ids [B, S]
      -> token embedding (pre-trained, [V, E], frozen by default)      [B, S, E]
      -> embed_proj: Linear(E -> H) when E != H (ALBERT-style factorised embedding, Lan et al. 2020)
      -> + learned position embedding, LayerNorm, dropout              [B, S, H]
      -> encoder: transformers BertEncoder (num_layers blocks)        [B, S, H]
      -> gather masked positions (model.logits = masked)               [n, H]
      -> head_transform: Linear(H -> E), GELU, LayerNorm(E)            [n, E]
      -> decoder: logits = x @ token_embedding^T + bias (tied)         [n, V]

Only the masked positions reach the head by default: with a 30k vocabulary the decoder would otherwise dominate
the FLOPs of a model this small. Every sparsifiable weight is an ``nn.Linear`` weight (see ``sparsifiable_weights``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from .spec import ModelSpec


class MLMModel(nn.Module):
    def __init__(self, cfg: ModelSpec, token_embedding: torch.Tensor):
        super().__init__()
        vocab, emb_dim = token_embedding.shape
        h = cfg.hidden_size
        self.cfg = cfg
        self.token_embedding = nn.Embedding.from_pretrained(token_embedding.clone(), freeze=cfg.freeze_embedding)
        self.embed_proj = nn.Linear(emb_dim, h) if emb_dim != h else None
        self.position_embedding = nn.Embedding(cfg.seq_len, h)
        self.embed_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)
        bert_cfg = BertConfig(vocab_size=vocab, hidden_size=h, num_hidden_layers=cfg.num_layers,
                              num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_size,
                              hidden_act="gelu", hidden_dropout_prob=cfg.dropout,
                              attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.seq_len)
        bert_cfg._attn_implementation = cfg.attention
        self.encoder = BertEncoder(bert_cfg)
        self.head_transform = nn.Linear(h, emb_dim)
        self.head_norm = nn.LayerNorm(emb_dim, eps=1e-12)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab))
        self._init_weights()

    def _init_weights(self) -> None:
        # BERT's initialisation (Devlin et al. 2019): N(0, 0.02) weights, zero biases, unit LayerNorm.
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.02)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean MLM cross-entropy over the positions where ``labels != -100``, and the number of such positions."""
        x = self.token_embedding(input_ids)  # [B, S, E]
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
        logits = F.linear(x, self.token_embedding.weight, self.decoder_bias)  # [n, V]
        n = (targets != -100).sum()
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum") / n.clamp_min(1)
        return loss, n

    def sparsifiable_weights(self) -> dict[str, nn.Parameter]:
        """Weights a sparsity method may mask, by fully qualified name (every Linear weight)."""
        return {f"{name}.weight": mod.weight for name, mod in self.named_modules() if isinstance(mod, nn.Linear)}


def build_model(cfg: ModelSpec, token_embedding: torch.Tensor, seed: int) -> MLMModel:
    """The model with its random parts initialised from ``seed`` (the same seed gives the same model)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLMModel(cfg, token_embedding)
