"""Corpus -> tokenized fixed-length sequences with a document-level held-out split, MLM masking, batches.

Sequences are packed: documents are tokenized without special tokens, joined with [SEP], cut into chunks of
``seq_len - 2`` tokens and wrapped as ``[CLS] chunk [SEP]``; there is no padding, so no attention mask is needed.
A document goes to the held-out side when a hash of its text falls below ``heldout_fraction``, so the split is
fixed by the text alone (disjoint by construction, stable when documents are added or removed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model.embedding import TokenizerInfo, load_tokenizer, resolve_model_dir, tokenizer_info
from ..spec import DataSpec, ModelSpec, SpecError
from .corpus import load_corpus, source_key

DATA_FORMAT_VERSION = 1
EVAL_MASK_SEED = 20_191_111  # eval masks depend on the data only, so every trial and seed sees the same batches


def cache_root(data: DataSpec) -> Path:
    """Where tokenized data and auto targets are cached."""
    root = data.cache_dir or os.environ.get("SPARSESEARCH_CACHE") or "~/.cache/sparsesearch"
    return Path(root).expanduser()


@dataclass
class TokenizedData:
    """Packed token sequences of both sides of the split, plus what masking needs."""

    train: torch.Tensor  # [n_train, seq_len] int64
    heldout: torch.Tensor  # [n_heldout, seq_len] int64
    tokenizer: TokenizerInfo
    cache_key: str  # where the prepared data is cached (what its source and settings are, not what it holds)
    stats: dict

    @property
    def fingerprint(self) -> str:
        """The corpus fingerprint: a hash of the token ids of both splits (``corpus_fingerprint``)."""
        return str(self.stats["fingerprint"])

    @property
    def seq_len(self) -> int:
        """Tokens per sequence, [CLS] and [SEP] included."""
        return int(self.train.shape[1])


def corpus_fingerprint(train: torch.Tensor, heldout: torch.Tensor) -> str:
    """16 hex digits of a SHA-256 over the token ids of the training and held-out sequences (shapes included): two
    runs made on the same fingerprint saw the same data, whatever source, cache or machine produced it."""
    digest = hashlib.sha256()
    for name, ids in (("train", train), ("heldout", heldout)):
        digest.update(f"{name}:{tuple(ids.shape)}:".encode())
        digest.update(ids.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return digest.hexdigest()[:16]


def _in_heldout(doc: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(doc.encode()).digest()[:8], "big")
    return h / 2.0**64 < fraction


def _pack(token_lists: list[list[int]], seq_len: int, info: TokenizerInfo) -> torch.Tensor:
    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(info.sep_id)
    body = seq_len - 2
    n = len(stream) // body
    if n == 0:
        return torch.empty(0, seq_len, dtype=torch.long)
    chunks = torch.tensor(stream[: n * body], dtype=torch.long).view(n, body)
    cls = torch.full((n, 1), info.cls_id, dtype=torch.long)
    sep = torch.full((n, 1), info.sep_id, dtype=torch.long)
    return torch.cat([cls, chunks, sep], dim=1)


def _tokenize(docs: list[str], model_dir: str) -> list[list[int]]:
    tok = load_tokenizer(model_dir)
    out: list[list[int]] = []
    for i in range(0, len(docs), 256):
        enc = tok(docs[i : i + 256], add_special_tokens=False, truncation=False, verbose=False)
        out.extend(enc["input_ids"])
    return out


def prepare_data(data: DataSpec, model: ModelSpec, *, use_cache: bool = True) -> TokenizedData:
    """Load, split, tokenize and pack the corpus; cached by (source content, tokenizer, seq_len, split)."""
    model_dir = str(resolve_model_dir(model.embedding))
    info = tokenizer_info(model_dir)
    where: dict[str, Any] = {
        "config": data.config,
        "split": data.split,
        "text_field": data.text_field,
        "max_documents": data.max_documents,
    }
    key = json.dumps(
        [DATA_FORMAT_VERSION, source_key(data.source, **where), info.fingerprint, model.seq_len, data.heldout_fraction]
    )
    cache_key = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = cache_root(data) / "data" / f"{cache_key}.pt"
    if use_cache and path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        train, heldout = blob["train"].long(), blob["heldout"].long()
        stats = json.loads(blob["stats"])
        stats.setdefault("fingerprint", corpus_fingerprint(train, heldout))  # cached before fingerprints
        return TokenizedData(train=train, heldout=heldout, tokenizer=info, cache_key=cache_key, stats=stats)

    corpus = load_corpus(data.source, **where)
    held = [d for d in corpus.documents if _in_heldout(d, data.heldout_fraction)]
    train = [d for d in corpus.documents if not _in_heldout(d, data.heldout_fraction)]
    if not held:  # tiny corpora: hold out at least one document
        held, train = train[-1:], train[:-1]
    train_ids, held_ids = _tokenize(train, model_dir), _tokenize(held, model_dir)
    train_seq, held_seq = _pack(train_ids, model.seq_len, info), _pack(held_ids, model.seq_len, info)
    if len(train_seq) == 0 or len(held_seq) == 0:
        side = "training" if len(train_seq) == 0 else "held-out"
        raise SpecError(
            f"data.source: the {side} side has fewer tokens than one sequence of "
            f"model.seq_len={model.seq_len}; use more text or a shorter seq_len"
        )
    stats = {
        "source": corpus.description,
        "documents": len(corpus.documents),
        "train_documents": len(train),
        "heldout_documents": len(held),
        "tokens": sum(map(len, train_ids)) + sum(map(len, held_ids)),
        "train_sequences": int(train_seq.shape[0]),
        "heldout_sequences": int(held_seq.shape[0]),
        "seq_len": model.seq_len,
        "fingerprint": corpus_fingerprint(train_seq, held_seq),
    }
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"train": train_seq.int(), "heldout": held_seq.int(), "stats": json.dumps(stats)}, tmp)
        os.replace(tmp, path)  # atomic: concurrent trials never read half a file
    return TokenizedData(train=train_seq, heldout=held_seq, tokenizer=info, cache_key=cache_key, stats=stats)


def describe_data(stats: dict) -> str:
    """The console's one line about the prepared data: source, size and corpus fingerprint."""
    return (
        f"{stats['source']}: {stats['documents']:,} documents, {stats['tokens']:,} tokens; "
        f"{stats['train_sequences']:,} training / {stats['heldout_sequences']:,} held-out sequences of "
        f"{stats['seq_len']}; corpus fingerprint {stats['fingerprint']}"
    )


def mask_tokens(
    ids: torch.Tensor, mask_prob: float, info: TokenizerInfo, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking (Devlin et al. 2019): select ``mask_prob`` of non-special tokens; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. Returns (inputs, labels) with labels -100 where not selected."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for sid in info.special_ids:
        special |= ids == sid
    selected = (torch.rand(ids.shape, generator=generator) < mask_prob) & ~special
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[selected & (roll < 0.8)] = info.mask_id
    random_pos = selected & (roll >= 0.8) & (roll < 0.9)
    inputs[random_pos] = torch.randint(0, info.vocab_size, ids.shape, generator=generator)[random_pos]
    return inputs, labels


class Batches:
    """Training batches as pure functions of the step (resumable from a step number alone), and one fixed
    held-out evaluation set whose masks depend on the data only (same for every trial, seed and batch size)."""

    def __init__(self, data: TokenizedData, *, batch_size: int, mask_prob: float, seed: int, eval_sequences: int):
        self.data, self.batch_size, self.mask_prob, self.seed = data, batch_size, mask_prob, seed
        # Sequences per epoch rounded down to whole batches; a batch never spans two epochs.
        self.steps_per_epoch = max(1, data.train.shape[0] // batch_size)
        self._perm_epoch, self._perm = -1, torch.arange(0)
        held = data.heldout[:eval_sequences]
        self.eval_inputs, self.eval_labels = mask_tokens(held, mask_prob, data.tokenizer, _generator(EVAL_MASK_SEED))

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels for training step ``step`` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.data.train.shape[0], generator=_generator(self.seed, epoch))
            self._perm_epoch = epoch
        n = self.data.train.shape[0]
        # Wraps around only when the corpus holds fewer sequences than one batch.
        idx = self._perm[torch.arange(k * self.batch_size, (k + 1) * self.batch_size) % n]
        return mask_tokens(self.data.train[idx], self.mask_prob, self.data.tokenizer, _generator(self.seed, 1, step))

    def eval_chunks(self):
        """The fixed evaluation set in chunks of at most ``batch_size`` sequences."""
        for i in range(0, self.eval_inputs.shape[0], self.batch_size):
            yield self.eval_inputs[i : i + self.batch_size], self.eval_labels[i : i + self.batch_size]


def _generator(*key: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big") >> 1)
    return g
