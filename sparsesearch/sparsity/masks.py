"""Mask operations shared by every method: a random mask, the top entries of a score, and one drop-and-grow."""

from __future__ import annotations

import math

import torch


def random_mask(shape: torch.Size | tuple[int, ...], density: float, generator: torch.Generator) -> torch.Tensor:
    """A mask with exactly round(density * numel) active entries, uniformly placed."""
    n = math.prod(shape)
    k = round(density * n)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=generator)[:k]] = True
    return mask.view(shape)


def top_fraction(score: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the round(density * numel) largest scores."""
    k = round(density * score.numel())
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    mask[torch.topk(score.reshape(-1).float(), k, sorted=False).indices] = True
    return mask.view(score.shape)


def drop_and_grow(
    mask: torch.Tensor, drop_score: torch.Tensor, grow_score: torch.Tensor | None, n_drop: int, n_grow: int
) -> torch.Tensor:
    """New mask: the ``n_drop`` active entries with the lowest drop score removed, then the ``n_grow`` entries
    with the highest grow score among those now inactive (just-dropped ones included, as in RigL) added."""
    flat = mask.reshape(-1)
    new = flat.clone()
    active = int(flat.sum())
    if not 0 <= n_drop <= active:
        raise ValueError(f"cannot drop {n_drop} of {active} active weights")
    if n_drop:
        score = drop_score.reshape(-1).float().masked_fill(~flat, math.inf)
        new[torch.topk(score, n_drop, largest=False, sorted=False).indices] = False
    if n_grow:
        if grow_score is None:
            raise ValueError(f"cannot grow {n_grow} weights without a grow score")
        if n_grow > int((~new).sum()):
            raise ValueError(f"cannot grow {n_grow} into {int((~new).sum())} inactive weights")
        score = grow_score.reshape(-1).float().masked_fill(new, -math.inf)
        new[torch.topk(score, n_grow, sorted=False).indices] = True
    return new.view_as(mask)
