"""Shared fixtures: a private cache, a tiny offline BERT-family model directory and corpus, test-size specs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sparsesearch.spec import spec_from_dict

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


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test session caches data and targets in its own directory."""
    path = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPARSESEARCH_CACHE", str(path))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A BERT-family model directory with a 62-token WordPiece vocabulary and a 16-d embedding."""
    d = tmp_path_factory.mktemp("tiny_bert")
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


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A .txt corpus of 300 paragraphs written in the tiny vocabulary (learnable structure, no [UNK])."""
    rng = random.Random(0)
    paragraphs = [" ".join(_sentence(rng) for _ in range(rng.randint(3, 8))) for _ in range(300)]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("\n\n".join(paragraphs))
    return path


@pytest.fixture(scope="session")
def tiny_raw(tiny_model_dir, tiny_corpus) -> dict:
    """Raw spec of test size: hidden 32, 2 layers, vocabulary 62."""
    return {
        "model": {
            "embedding": str(tiny_model_dir),
            "hidden_size": 32,
            "num_layers": 2,
            "num_heads": 2,
            "ffn_size": 64,
            "seq_len": 32,
        },
        "data": {"source": str(tiny_corpus), "heldout_fraction": 0.1},
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


@pytest.fixture(scope="session")
def tiny_spec(tiny_raw):
    return spec_from_dict(tiny_raw)


@pytest.fixture(scope="session")
def tiny_data(tiny_spec):
    from sparsesearch.data.batches import prepare_data

    return prepare_data(tiny_spec.data, tiny_spec.model)
