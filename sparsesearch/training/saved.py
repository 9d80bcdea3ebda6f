"""A trained model on disk: its weights and masks, the spec that built it and the run's metrics (``train --save``).

A saved directory holds two files:

* ``model.safetensors``: the model's ``state_dict`` (masked weights are exactly zero) and, under ``mask/<weight
  name>``, the boolean mask of every masked weight (the weights the forward pass uses). A frozen pre-trained token
  embedding is not saved: it is reloaded from the spec's ``model.embedding`` and checked against the shape and
  checksum recorded at save time. A trained embedding is saved with the rest.
* ``trained.json``: ``format``, ``spec`` (the full spec, every key), ``embedding`` (saved or not, its shape and
  checksum), ``densities`` (every sparsifiable weight's density, 1.0 when unmasked), ``sparsity`` (the fraction
  of masked weights among the sparsifiable ones), ``target_source`` and ``result`` (the ``RunResult``, infinities
  written as null).

``load_trained(DIR)`` rebuilds the model ready for evaluation (``Trained``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..definitions import json_safe
from ..model.embedding import resolve_model_dir, shared_token_embedding
from ..model.network import MLMModel, build_model
from ..sparsity.registry import get_method
from ..spec import Spec, SpecError, spec_from_dict
from .trainer import Trainer

FORMAT = "sparsesearch-trained/1"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "trained.json"
MASK_PREFIX = "mask/"
EMBEDDING_KEY = "token_embedding.weight"


class SavedModelError(ValueError):
    """The directory does not hold a loadable saved model (missing or damaged files, another embedding)."""


def prepare_save_dir(path: str | Path, option: str = "--save") -> Path:
    """The directory a trained model will be saved to, created now so that a bad path fails before training: it
    must be new, empty, or hold an earlier save (which is replaced)."""
    d = Path(path).expanduser()
    if d.exists() and not d.is_dir():
        raise SpecError(f"{option} {d}: is a file, not a directory")
    if d.is_dir() and any(d.iterdir()) and not (d / META_FILE).is_file():
        raise SpecError(f"{option} {d}: exists and is not empty (and holds no saved model); choose another directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError(f"{option} {d}: cannot create the directory ({e.strerror or e})") from None
    if not os.access(d, os.W_OK):
        raise SpecError(f"{option} {d}: not writable")
    return d


def _checksum(table: torch.Tensor) -> float:
    return float(table.detach().double().sum())


def _densities(model: MLMModel, masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {n: (int(masks[n].sum()) / masks[n].numel() if n in masks else 1.0) for n in model.sparsifiable_weights()}


def _sparsity(model: MLMModel, densities: dict[str, float]) -> float:
    """Fraction of masked weights among all sparsifiable weights (``Trainer.avg_sparsity``'s rule)."""
    weights = model.sparsifiable_weights()
    total = sum(w.numel() for w in weights.values())
    return 1.0 - sum(densities[n] * w.numel() for n, w in weights.items()) / total


def save_trained(trainer: Trainer, directory: str | Path, *, target_source: str | None = None) -> Path:
    """Save a finished run (``trainer.result`` set) to ``directory`` (see the module docstring); returns it."""
    from safetensors.torch import save_file

    if trainer.result is None:
        raise ValueError("save_trained: the run has not finished (trainer.result is None)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model, sparsifier = trainer.model, trainer.sparsifier
    masks = sparsifier.method.forward_masks(sparsifier.view) or sparsifier.masks  # what the forward pass uses
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    frozen = trainer.spec.model.freeze_embedding
    table = state[EMBEDDING_KEY]
    if frozen:
        del state[EMBEDDING_KEY]
    tensors = {**state, **{MASK_PREFIX + n: m.detach().cpu().bool().contiguous() for n, m in masks.items()}}
    densities = _densities(model, masks)
    meta = {
        "format": FORMAT,
        "spec": json_safe(trainer.spec.to_dict()),
        "embedding": {
            "saved": not frozen,
            "source": trainer.spec.model.embedding,
            "shape": list(table.shape),
            "checksum": _checksum(table),
        },
        "densities": densities,
        "sparsity": _sparsity(model, densities),
        "target_source": target_source,
        "result": json_safe(trainer.result.to_dict()),
    }
    # Each file whole or not at all: written beside its final name, then renamed over it.
    save_file(tensors, str(d / (WEIGHTS_FILE + ".tmp")), metadata={"format": FORMAT})
    os.replace(d / (WEIGHTS_FILE + ".tmp"), d / WEIGHTS_FILE)
    (d / (META_FILE + ".tmp")).write_text(json.dumps(meta, indent=1))
    os.replace(d / (META_FILE + ".tmp"), d / META_FILE)
    return d


@dataclass
class Trained:
    """A saved model, loaded: ``model`` (in eval mode, masked weights zero), ``masks`` (weight name -> bool
    tensor), ``spec``, ``metrics`` (the run's ``RunResult`` as a dict, infinities as None), ``path``."""

    model: MLMModel
    masks: dict[str, torch.Tensor]
    spec: Spec
    metrics: dict[str, Any]
    path: Path

    def densities(self) -> dict[str, float]:
        """Density of every sparsifiable weight (1.0 for an unmasked one)."""
        return _densities(self.model, self.masks)

    def sparsity(self) -> float:
        """Fraction of masked (zero) weights among the sparsifiable weights: the run's ``avg_sparsity``."""
        return _sparsity(self.model, self.densities())

    def describe(self) -> str:
        """One line: what the model is, its sparsity and the run's outcome."""
        m, weights = self.spec.model, self.model.sparsifiable_weights()
        total = sum(w.numel() for w in weights.values())
        loss = self.metrics.get("final_eval_loss")
        return (
            f"{self.path}: {self.spec.sparsity.method} model (hidden {m.hidden_size}, {m.num_layers} layers), "
            f"sparsity {self.sparsity():.4f} of {total:,} sparsifiable weights ({len(self.masks)} masked tensors); "
            f"run {self.metrics.get('status')} after {self.metrics.get('steps')} steps, final held-out loss "
            + (f"{loss:.4f}" if isinstance(loss, (int, float)) else "-")
        )

    def evaluate(self, data=None) -> float:
        """The held-out MLM loss as the trainer measures it (same evaluation set, precision and code); ``data``:
        the ``TokenizedData`` of the spec (default: prepared from the spec, cached)."""
        from ..data.batches import prepare_data

        if data is None:
            data = prepare_data(self.spec.data, self.spec.model)
        evaluator = Trainer(self.spec, data, None, token_embedding=self.model.token_embedding.weight.detach())
        evaluator.model.load_state_dict(self.model.state_dict())
        return evaluator.evaluate()


def _read_meta(d: Path) -> dict:
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SavedModelError(f"{d / META_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SavedModelError(f"{d / META_FILE}: not a saved sparsesearch model (format {FORMAT})")
    for key, kind in (("spec", dict), ("embedding", dict), ("result", dict)):
        if not isinstance(meta.get(key), kind):
            raise SavedModelError(f"{d / META_FILE}: '{key}' is missing or malformed")
    return meta


def load_trained(directory: str | Path, device: str | torch.device | None = None) -> Trained:
    """Load a model saved by ``sparsesearch train --save DIR`` (or ``sparsesearch.train(..., save=DIR)``): the
    model ready for evaluation on ``device`` (default CPU), its masks, its spec and the run's metrics."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(directory).expanduser()
    if not d.is_dir():
        raise SavedModelError(f"{d}: no such directory")
    meta = _read_meta(d)
    try:
        spec = spec_from_dict(meta["spec"])
    except SpecError as e:
        raise SavedModelError(f"{d / META_FILE}: its spec is invalid ({e})") from None
    try:
        tensors = load_file(str(d / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise SavedModelError(f"{d / WEIGHTS_FILE}: unreadable ({e})") from None
    masks = {k[len(MASK_PREFIX) :]: v.bool() for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    emb = meta["embedding"]
    if emb.get("saved"):
        if EMBEDDING_KEY not in state:
            raise SavedModelError(f"{d / WEIGHTS_FILE}: the trained token embedding is missing")
        table = state[EMBEDDING_KEY]
    else:
        table = shared_token_embedding(str(resolve_model_dir(spec.model.embedding)))
        if list(table.shape) != emb.get("shape") or not math.isclose(
            _checksum(table), float(emb.get("checksum", math.nan)), rel_tol=1e-9, abs_tol=1e-6
        ):
            raise SavedModelError(
                f"{d}: the embedding {spec.model.embedding!r} differs from the one the model was trained with "
                f"(shape {list(table.shape)} vs {emb.get('shape')}, or its values)"
            )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    model = build_model(spec.model, table, spec.train.seed, dev)
    # The method's normalisation is part of the network (core_grow's core statistics), as in training.
    model.set_norm_channels(get_method(spec.sparsity.method)(spec.sparsity).norm_channels(model.shape.weight_shapes()))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise SavedModelError(f"{d / WEIGHTS_FILE}: does not fit the spec's model ({str(e)[:200]})") from None
    if unexpected or set(missing) - {EMBEDDING_KEY}:
        raise SavedModelError(
            f"{d / WEIGHTS_FILE}: does not fit the spec's model (missing {missing}, unexpected {unexpected})"
        )
    weights = model.sparsifiable_weights()
    if set(masks) - set(weights) or any(m.shape != weights[n].shape for n, m in masks.items()):
        raise SavedModelError(f"{d / WEIGHTS_FILE}: its masks do not fit the spec's weights")
    masks = {n: m.to(dev) for n, m in masks.items()}
    with torch.no_grad():
        for n, m in masks.items():
            weights[n].masked_fill_(~m, 0.0)  # already zero when saved; kept exact whatever the file says
    model.eval()
    return Trained(model=model, masks=masks, spec=spec, metrics=meta["result"], path=d)
