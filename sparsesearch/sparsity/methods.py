"""The registered sparse training methods. Each says what it does in a few lines; the research argument behind
our own methods (flop_rigl, grow) and the departures from the papers are in analysis/METHODS.md."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..model.network import INIT_STD
from ..model.shape import weight_group
from ..spec import SparsitySpec, SpecError
from .masks import random_mask, top_fraction
from .method import Method, SparsityView, state_of, state_to
from .schedules import gmp_sparsity


class _FixedMasks(Method):
    """Masks that never change after step 0."""

    def wants_update(self, view: SparsityView, step: int) -> bool:
        return False

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        raise RuntimeError(f"{self.name}: masks never change, so nothing is grown")


class Dense(_FixedMasks):
    """No sparsity: every weight trains (the reference)."""

    name = "dense"

    @classmethod
    def check_spec(cls, sparsity: SparsitySpec, path: str) -> None:
        if sparsity.level > 0 or sparsity.group_levels:
            raise SpecError(
                f"{path}.method: 'dense' trains every weight, but sparsity.level is "
                f"{sparsity.level:g}; choose a sparse method or level 0"
            )

    def layer_densities(self, shapes: Mapping[str, tuple[int, int]]) -> dict[str, float]:
        return {n: 1.0 for n in shapes}


class Static(_FixedMasks):
    """A random mask drawn at step 0 and never changed (the static sparse baseline of Evci et al. 2020)."""

    name = "static"


class SET(Method):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop the smallest magnitudes, regrow at random."""

    name = "set"

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        w = view.weight(name)
        return torch.rand(w.shape, generator=view.generator).to(w.device)


class RigL(Method):
    """Rigging the Lottery (Evci et al. 2020): drop the smallest magnitudes, regrow where the dense gradient is
    largest. The dense gradient is needed (and charged) on update steps only."""

    name = "rigl"

    def __init__(self, sparsity: SparsitySpec):
        super().__init__(sparsity)
        self.scores: dict[str, torch.Tensor] = {}  # |dense gradient| of the step before an update

    def needs_dense_gradient(self, update: bool) -> bool:
        return update

    def observe_gradients(self, view: SparsityView, update: bool) -> None:
        if update:
            self.scores = {n: view.grad(n).abs() for n in view.masks}

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        return self.scores[name]

    def after_masks_changed(self, view: SparsityView) -> None:
        self.scores = {}  # used up: the next update observes its own step


class SNFS(Method):
    """Sparse momentum (Dettmers & Zettlemoyer 2019): drop the smallest magnitudes, share the regrowth among
    layers by the mean momentum of their active weights, regrow where the momentum is largest. The dense
    momentum is kept every step, so the dense weight gradient is charged every step."""

    name = "snfs"

    def __init__(self, sparsity: SparsitySpec):
        super().__init__(sparsity)
        self.momentum: dict[str, torch.Tensor] = {}  # of every weight of each masked layer, dense

    def needs_dense_gradient(self, update: bool) -> bool:
        return True

    def observe_gradients(self, view: SparsityView, update: bool) -> None:
        beta = self.sparsity.momentum
        for n in view.masks:
            g = view.grad(n)
            buf = self.momentum.get(n)
            self.momentum[n] = g.clone() if buf is None else buf.mul_(beta).add_(g, alpha=1.0 - beta)

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        return self.momentum[name].abs()

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        frac = view.schedule.drop_fraction_at(step)
        # Unlike the per-layer methods, the drop is not capped by the layer's own free slots: regrowth may go
        # elsewhere (a layer that filled up must still be able to shed weights).
        drops = {n: round(frac * view.active(n)) for n in view.masks}
        names = list(view.masks)
        # Capacity after the drop: inactive slots a layer can regrow into.
        cap = {n: view.masks[n].numel() - view.active(n) + drops[n] for n in names}
        mean_m = {n: float(self.momentum[n][view.masks[n]].abs().mean()) if view.masks[n].any() else 0.0 for n in names}
        grow = allocate(sum(drops.values()), mean_m, cap)
        return {n: (drops[n], grow[n]) for n in names}

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": state_of(self.momentum)}

    def load_state_dict(self, state: Mapping[str, Any], view: SparsityView) -> None:
        self.momentum = state_to(state.get("momentum", {}), view)


def allocate(total: int, weights: Mapping[str, float], cap: Mapping[str, int]) -> dict[str, int]:
    """Split ``total`` into integers proportional to ``weights`` without exceeding ``cap`` (largest remainder;
    what a capped layer cannot take goes to the others)."""
    out = {n: 0 for n in weights}
    left, open_ = total, [n for n in weights if cap[n] > 0]
    while left > 0 and open_:
        w = {n: max(weights[n], 0.0) for n in open_}
        norm = sum(w.values())
        share = {n: (w[n] / norm if norm > 0 else 1.0 / len(open_)) * left for n in open_}
        give = {n: min(math.floor(share[n]), cap[n] - out[n]) for n in open_}
        rest = left - sum(give.values())
        for n in sorted(open_, key=lambda n: share[n] - math.floor(share[n]), reverse=True):
            if rest <= 0:
                break
            if out[n] + give[n] < cap[n]:
                give[n] += 1
                rest -= 1
        for n in open_:
            out[n] += give[n]
        left = total - sum(out.values())
        open_ = [n for n in open_ if out[n] < cap[n]]
        if sum(give.values()) == 0:
            break
    return out


class GMP(Method):
    """Gradual magnitude pruning (Zhu & Gupta 2017): start dense and prune the smallest magnitudes on a cubic
    ramp from update_start to update_end, down to each layer's final density. No regrowth; the dense phase
    costs dense FLOPs while it lasts."""

    name = "gmp"

    def initial_mask(self, view: SparsityView, name: str, density: float) -> torch.Tensor:
        return torch.ones(view.weight(name).shape, dtype=torch.bool)

    def wants_update(self, view: SparsityView, step: int) -> bool:
        # Also after the ramp, until every layer is at its final density (a skipped last prune is caught up).
        return view.schedule.is_update(step) or (step >= view.schedule.end and self._pending(view))

    def _pending(self, view: SparsityView) -> bool:
        return any(view.active(n) > round(view.target_density[n] * m.numel()) for n, m in view.masks.items())

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        raise RuntimeError("gmp only prunes, so nothing is grown")

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        sch, out = view.schedule, {}
        for name, mask in view.masks.items():
            if step >= sch.end:
                keep = round(view.target_density[name] * mask.numel())
            else:
                final_sparsity = 1.0 - view.target_density[name]
                s = gmp_sparsity(step, final=final_sparsity, start=sch.start, end=sch.end)
                keep = mask.numel() - round(s * mask.numel())
            out[name] = (max(0, view.active(name) - keep), 0)
        return out


class TopKAST(Method):
    """Top-KAST (Jayakumar et al. 2020): a dense store theta; the forward pass uses the top-D_f of each layer by
    |theta| (set A), gradients reach the larger top-D_b set B (the mask), and both are re-selected by |theta| at
    each update. Weights outside B keep stale values in theta and can re-enter."""

    name = "topkast"

    @classmethod
    def check_spec(cls, sparsity: SparsitySpec, path: str) -> None:
        backward = sparsity.topkast_backward_level
        if backward is not None and backward > sparsity.level:
            raise SpecError(
                f"{path}.topkast_backward_level: must be <= sparsity.level ({sparsity.level:g}): the "
                f"backward set contains the forward set, got {backward:g}"
            )

    def __init__(self, sparsity: SparsitySpec):
        super().__init__(sparsity)
        forward_density = 1.0 - sparsity.level
        backward_level = (
            sparsity.topkast_backward_level
            if sparsity.topkast_backward_level is not None
            else max(0.0, 1.0 - 2.0 * forward_density)
        )
        self.factor = (1.0 - backward_level) / forward_density if forward_density > 0 else 1.0
        self.theta: dict[str, torch.Tensor] = {}  # the dense store: the weight's value on B, stale values off it
        self.forward: dict[str, torch.Tensor] = {}  # A, inside the mask B

    def mask_density(self, density: float) -> float:
        return min(1.0, density * self.factor)

    def initial_mask(self, view: SparsityView, name: str, density: float) -> torch.Tensor:
        return top_fraction(view.weight(name).abs(), density)

    def start(self, view: SparsityView) -> None:
        self.theta = {n: view.weight(n).clone() for n in view.masks}
        self._select_forward(view)

    def _select_forward(self, view: SparsityView) -> None:
        """A = top-D_f of |theta| within B, so B contains A."""
        for name, mask in view.masks.items():
            score = self.theta[name].abs().masked_fill(~mask, -1.0)
            self.forward[name] = top_fraction(score, view.target_density[name])

    def stored_values(self, view: SparsityView) -> Mapping[str, torch.Tensor] | None:
        return self.theta

    def after_optimizer_step(self, view: SparsityView) -> None:
        with torch.no_grad():  # theta takes the optimizer's new values on B
            for name, mask in view.masks.items():
                torch.where(mask, view.weight(name), self.theta[name], out=self.theta[name])

    def drop_score(self, view: SparsityView, name: str) -> torch.Tensor:
        return self.theta[name].abs()

    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        return self.theta[name].abs()

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        """Swap exactly the weights that make B the top-|B| of |theta| again: those of B outside the new top set
        out, the same number in."""
        out = {}
        for name, mask in view.masks.items():
            top = top_fraction(self.theta[name].abs(), view.active(name) / mask.numel())
            n = int((top & ~mask).sum())
            out[name] = (n, n)
        return out

    def after_masks_changed(self, view: SparsityView) -> None:
        self._select_forward(view)

    def forward_masks(self, view: SparsityView) -> Mapping[str, torch.Tensor] | None:
        return self.forward or None

    def state_dict(self) -> dict[str, Any]:
        return {"theta": state_of(self.theta), "forward": state_of(self.forward)}

    def load_state_dict(self, state: Mapping[str, Any], view: SparsityView) -> None:
        self.theta.update(state_to(state.get("theta", {}), view))
        self.forward.update(state_to(state.get("forward", {}), view))


class FlopRigL(RigL):
    """FLOP-priced RigL (ours): drop per layer as RigL does, but regrow the same total globally where the dense
    gradient per training FLOP of the weight, |dL/dw| / c_l, is largest; layer densities drift towards cheap,
    useful weights while the overall level stays exact."""

    name = "flop_rigl"

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        frac = view.schedule.drop_fraction_at(step)
        names = list(view.masks)
        drops = {n: round(frac * view.active(n)) for n in names}
        total = sum(drops.values())
        if total == 0:
            return {n: (0, 0) for n in names}
        scores = []
        for n in names:
            mask = view.masks[n].reshape(-1)
            candidates = ~mask
            if drops[n]:  # the weights the shared update will drop (same scores, same selection) can regrow
                s = self.drop_score(view, n).reshape(-1).float().masked_fill(~mask, math.inf)
                candidates = candidates.clone()
                candidates[torch.topk(s, drops[n], largest=False, sorted=False).indices] = True
            g = self.scores[n].reshape(-1).float() / view.weight_cost[n]
            scores.append(g.masked_fill(~candidates, -math.inf))
        sizes = [view.masks[n].numel() for n in names]
        chosen = torch.topk(torch.cat(scores), total, sorted=False).indices
        bounds = torch.tensor(sizes, device=chosen.device).cumsum(0)
        per_layer = torch.bincount(torch.bucketize(chosen, bounds, right=True), minlength=len(names))
        return {n: (drops[n], int(per_layer[i])) for i, n in enumerate(names)}


class Grow(RigL):
    """Sparse-to-less-sparse RigL (ours): start at initial_level (default: half the final density) and grow each
    layer to its final density on a late cubic ramp over [update_start, update_end], with RigL's drop-and-grow
    on top; the last update before update_end completes the ramp. With ``tokens_per_weight`` the ramp is led by
    the data instead: at each update the active sparsifiable weights are as many as the tokens read so far over
    ``tokens_per_weight`` (between the start and the final density; Staged Training, Shen et al. 2022, and "The
    Journey Matters", Jin et al. 2025, motivate growing width with the data)."""

    name = "grow"

    @classmethod
    def check_spec(cls, sparsity: SparsitySpec, path: str) -> None:
        if sparsity.initial_level is not None and sparsity.initial_level < sparsity.level:
            raise SpecError(
                f"{path}.initial_level: must be >= sparsity.level ({sparsity.level:g}): grow only "
                f"adds weights, got {sparsity.initial_level:g}"
            )

    def __init__(self, sparsity: SparsitySpec):
        super().__init__(sparsity)
        final = 1.0 - sparsity.level
        initial = 1.0 - sparsity.initial_level if sparsity.initial_level is not None else final / 2.0
        self.start_ratio = initial / final if final > 0 else 1.0

    def initial_mask(self, view: SparsityView, name: str, density: float) -> torch.Tensor:
        return random_mask(view.weight(name).shape, density * self.start_ratio, view.generator)

    def ramp(self, view: SparsityView, step: int) -> float:
        """How far each layer's density has grown from its start to its final value after ``step`` steps:
        d(t) = d_0 + (d_f - d_0) * r^3 with r the progress through [update_start, update_end]; or, led by the data,
        the share of the way from the start's active weights to the final ones that ``step`` steps of tokens over
        ``tokens_per_weight`` ask for."""
        if self.sparsity.tokens_per_weight is not None:
            sizes = {n: (view.mask_density[n], m.numel()) for n, m in view.masks.items()}
            final = sum(round(d * numel) for d, numel in sizes.values())
            start = sum(round(d * self.start_ratio * numel) for d, numel in sizes.values())  # as counts() does
            wanted = step * view.tokens_per_step / self.sparsity.tokens_per_weight - view.dense_weights
            return min(1.0, max(0.0, (wanted - start) / max(1, final - start)))
        sch = view.schedule
        if step + sch.every >= sch.end:  # no update after this one: finish the ramp
            return 1.0
        r = min(1.0, max(0.0, (step - sch.start) / max(1, sch.end - sch.start)))
        return r**3

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        frac = view.schedule.drop_fraction_at(step)
        r = self.ramp(view, step)
        out = {}
        for name, mask in view.masks.items():
            numel, active = mask.numel(), view.active(name)
            final = round(view.mask_density[name] * numel)
            start = round(view.mask_density[name] * self.start_ratio * numel)
            keep = max(active, min(final, start + round(r * (final - start))))
            n_drop = min(round(frac * active), numel - keep)
            out[name] = (n_drop, n_drop + keep - active)
        return out


class CoreGrow(RigL):
    """Dense core, sparse periphery (ours): the model starts as a dense narrow model inside the wide one (the
    first ``core_width`` hidden channels, the matching share of FFN channels and head dimensions; LayerNorm
    statistics over the core, so the core computes what a dense model of that width computes and costs what it
    costs). At the switch (``update_start``, or once the core has read ``tokens_per_weight`` tokens per weight)
    the periphery opens: every layer goes to its final density in one update, growing by RigL's gradient criterion
    (new weights at zero with zero optimizer state, the core's weights and state kept) or, where the core alone is
    denser than the layer's final density (a narrow layer such as embed_proj), dropping its smallest core weights;
    RigL's drop-and-grow follows until ``update_end``. Grown by gradient, only the hidden width opens: a head or FFN
    unit outside the core has zero input and output weights, so neither gets a gradient, then or later.
    ``core_open: random`` opens every unit: new connections drawn at random outside the core, those into new units
    drawn from the initialisation, those into the core's units at zero (the function is still unchanged). With
    ``norm_release`` the LayerNorms' statistics then move from the core's channels to all channels, blended
    linearly over that many steps (the function does not jump at the switch, and the opened channels end
    normalised on their own scale). Positioned against Net2Net, bert2BERT, LiGO and Staged Training in
    analysis/METHODS.md."""

    name = "core_grow"
    # The core phase trains the core of a layer that ends dense too (at level 0: a growth control, dense after it).
    masks_dense_weights = True

    @classmethod
    def check_spec(cls, sparsity: SparsitySpec, path: str) -> None:
        if sparsity.update_start <= 0 and sparsity.tokens_per_weight is None:
            raise SpecError(
                f"{path}.update_start: {cls.name} opens the periphery at update_start, which must be > 0 (or set "
                "tokens_per_weight to open it once the core has read that many tokens per weight)"
            )
        for key in ("init_scale", "lr_scale"):
            if getattr(sparsity, key) == "density":
                raise SpecError(
                    f"{path}.{key}: {cls.name}'s core is a dense narrow model, whose units see a core's share of "
                    "their inputs, not the mask's density; density scaling does not apply to it (use the default)"
                )

    def __init__(self, sparsity: SparsitySpec):
        super().__init__(sparsity)
        self.switched = False  # whether the periphery has opened
        self.switch_step: int | None = None  # the update that opened it

    # ----- the core ----------------------------------------------------------------------------------------------
    def _widths(self, shapes: Mapping[str, tuple[int, int]]) -> tuple[int, int, int, int]:
        """(hidden, ffn, core hidden channels, core FFN channels) of the model these weight shapes belong to."""
        hidden = ffn = 0
        for name, (out_f, _) in shapes.items():
            group = weight_group(name)
            if group == "attn_out":
                hidden = out_f
            elif group == "ffn_in":
                ffn = out_f
        core = self.sparsity.core_width or max(1, hidden // 4)
        if core >= hidden:
            raise SpecError(
                f"sparsity.core_width: the core ({core} channels) must be narrower than model.hidden_size ({hidden})"
            )
        return hidden, ffn, core, max(1, round(core * ffn / hidden))

    def _core_mask(self, name: str, shape: tuple[int, int], widths: tuple[int, int, int, int]) -> torch.Tensor:
        """The core's entries of one weight [out, in]: rows and columns of core channels (all embedding ones)."""
        _, _, core, core_ffn = widths
        rows, cols = {
            "embed_proj": (core, shape[1]),
            "attn_qkv": (core, core),
            "attn_out": (core, core),
            "ffn_in": (core_ffn, core),
            "ffn_out": (core, core_ffn),
            "head_transform": (shape[0], core),
        }[weight_group(name)]
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[:rows, :cols] = True
        return mask

    def _shapes(self, view: SparsityView) -> dict[str, tuple[int, int]]:
        # The widths come from every sparsifiable weight, masked or not (the weight cost table names them all).
        return {n: (int(view.weight(n).shape[0]), int(view.weight(n).shape[1])) for n in view.weight_cost}

    def norm_channels(self, shapes: Mapping[str, tuple[int, int]]) -> int | None:
        return self._widths(shapes)[2]

    # ----- how the periphery opens (core_open) -------------------------------------------------------------------
    def grow_score(self, view: SparsityView, name: str) -> torch.Tensor:
        if self.switched or self.sparsity.core_open == "gradient":
            return super().grow_score(view, name)
        # random: a uniform draw over the inactive entries, i.e. everything outside the core (RigL's random start).
        w = view.weight(name)
        return torch.rand(w.shape, generator=view.generator).to(w.device)

    def grown_values(self, view: SparsityView, name: str, grown: torch.Tensor) -> torch.Tensor | None:
        if self.switched or self.sparsity.core_open == "gradient":
            return super().grown_values(view, name, grown)
        # A new unit whose input and output weights both start at zero gets no gradient on either (a saddle), so
        # weights into units outside the core start as at initialisation; weights into the core's units (and the
        # head's outputs, the embedding dimensions) start at zero, which keeps the function at the switch.
        w = view.weight(name)
        shape = (int(w.shape[0]), int(w.shape[1]))
        rows = int(self._core_mask(name, shape, self._widths(self._shapes(view))).any(dim=1).sum())
        values = torch.randn(shape, generator=view.generator) * INIT_STD
        values[:rows] = 0.0
        return values.to(w.device)

    def norm_blend(self, step: int) -> float | None:
        release = self.sparsity.norm_release
        if not release or self.switch_step is None:
            return None
        return min(1.0, max(0.0, (step - self.switch_step) / release))

    def initial_mask(self, view: SparsityView, name: str, density: float) -> torch.Tensor:
        shapes = self._shapes(view)
        return self._core_mask(name, shapes[name], self._widths(shapes))

    def activation_densities(self, view: SparsityView) -> Mapping[str, float]:
        if self.switched:
            return {}
        shapes = self._shapes(view)
        hidden, _, core, _ = self._widths(shapes)
        layers = {int(n.split(".")[2]) for n in shapes if n.startswith("encoder.layer.")}
        return {f"encoder.layer.{i}.attention.{site}": core / hidden for i in layers for site in ("scores", "values")}

    # ----- the switch --------------------------------------------------------------------------------------------
    def _switch_due(self, view: SparsityView, step: int) -> bool:
        if self.sparsity.tokens_per_weight is None:
            return step >= view.schedule.start
        weights = sum(view.active(n) for n in view.masks) + view.dense_weights
        return step * view.tokens_per_step >= self.sparsity.tokens_per_weight * weights

    def wants_update(self, view: SparsityView, step: int) -> bool:
        if not self.switched:  # on the update grid, however late: the periphery always opens
            return step > 0 and step % view.schedule.every == 0 and self._switch_due(view, step)
        return view.schedule.is_update(step)

    def counts(self, view: SparsityView, step: int) -> dict[str, tuple[int, int]]:
        if self.switched:
            return super().counts(view, step)
        self.switch_step = step
        out = {}
        for name, mask in view.masks.items():  # every layer to its final count: most grow, a dense-ish core sheds
            gap = round(view.mask_density[name] * mask.numel()) - view.active(name)
            out[name] = (max(0, -gap), max(0, gap))
        return out

    def after_masks_changed(self, view: SparsityView) -> None:
        super().after_masks_changed(view)
        self.switched = True

    def state_dict(self) -> dict[str, Any]:
        return {"switched": self.switched, "switch_step": self.switch_step}

    def load_state_dict(self, state: Mapping[str, Any], view: SparsityView) -> None:
        self.switched = bool(state.get("switched", False))
        self.switch_step = state.get("switch_step")


class CoreFlopRigL(CoreGrow, FlopRigL):
    """Dense core, then FLOP-priced RigL (ours): ``core_grow``'s core phase and switch, then ``flop_rigl``'s
    global regrowth instead of RigL's per-layer one, so that the layer densities the switch sets (the
    distribution's) can move to cheap, useful weights. Why (analysis/METHODS.md): in study v3 at one layer,
    ``core_grow`` stalls near loss 4.85 at 80% sparsity while ``flop_rigl`` at the same level goes on to ~4.4,
    and ``flop_rigl`` moved the projections from and to the frozen embedding towards dense (on the 2-layer model),
    which ERK holds at ~22%. Measured there, it did not lift the stall (it ends at 4.79-4.82)."""

    name = "core_flop_rigl"
