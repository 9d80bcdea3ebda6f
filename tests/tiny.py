"""The tiny offline assets the tests and the fuzzing benchmark train on: a BERT-family model directory with a
62-token WordPiece vocabulary and a 16-d embedding, a corpus written in that vocabulary, and a test-size spec."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NOUNS = [
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "house",
    "car",
    "road",
    "river",
    "stone",
    "cloud",
    "field",
    "horse",
    "lamp",
    "book",
    "door",
    "table",
    "garden",
    "window",
    "bridge",
]
VERBS = ["sees", "likes", "finds", "moves", "holds", "follows", "builds", "paints", "takes", "leaves"]
ADJS = ["red", "small", "old", "quiet", "bright", "heavy", "green", "cold", "soft", "tall"]
OTHER = ["the", "a", "and", "near", "under", "over", "with", "then", "it", "is", ".", ","]


def write_model(d: Path) -> Path:
    """Write the tiny model directory into ``d`` (created if needed)."""
    d.mkdir(parents=True, exist_ok=True)
    vocab = SPECIALS + sorted(set(NOUNS + VERBS + ADJS + OTHER))
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16, "vocab_size": len(vocab)}))
    g = torch.Generator().manual_seed(0)
    save_file(
        {"embeddings.word_embeddings.weight": torch.randn(len(vocab), 16, generator=g) * 0.5},
        str(d / "model.safetensors"),
    )
    return d


def _sentence(rng: random.Random) -> str:
    n1, n2 = rng.choice(NOUNS), rng.choice(NOUNS)
    return f"the {rng.choice(ADJS)} {n1} {rng.choice(VERBS)} a {n2} near the {rng.choice(NOUNS)} ."


def write_corpus(path: Path) -> Path:
    """Write a .txt corpus of 300 paragraphs in the tiny vocabulary (learnable structure, no [UNK])."""
    rng = random.Random(0)
    paragraphs = [" ".join(_sentence(rng) for _ in range(rng.randint(3, 8))) for _ in range(300)]
    path.write_text("\n\n".join(paragraphs))
    return path


def raw_spec(model_dir: Path, corpus: Path) -> dict:
    """Raw spec of test size: hidden 32, 2 layers, vocabulary 62."""
    return {
        "model": {
            "embedding": str(model_dir),
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "ffn_size": 64,
            "seq_len": 32,
        },
        "data": {"source": str(corpus), "heldout_fraction": 0.1},
        "train": {
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_steps": 5,
            "max_steps": 60,
            "eval_every": 10,
            "eval_sequences": 32,
            "num_threads": 1,
        },
        "target": {"loss": "auto", "dense_steps": 30},
    }
