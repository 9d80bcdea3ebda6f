"""Sparsity: a contract suite over every registered method (and one defined only here), layer densities,
schedules and FLOP charges."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import pytest
import torch

from sparsesearch.data.batches import prepare_data
from sparsesearch.model.flops import step_flops
from sparsesearch.model.shape import weight_group
from sparsesearch.model.units import live_units
from sparsesearch.sparsity.distributions import layer_densities
from sparsesearch.sparsity.masks import drop_and_grow
from sparsesearch.sparsity.method import Method, SparsityView, state_of, state_to
from sparsesearch.sparsity.registry import METHODS, get_method
from sparsesearch.sparsity.schedules import UpdateSchedule, gmp_sparsity
from sparsesearch.spec import SpecError, spec_from_dict
from sparsesearch.training.trainer import Trainer


class EmaGrad(Method):
    """A method defined in this file alone, to show that one class and one registry entry make a method: drop
    the smallest magnitudes, regrow where an exponential average of |gradient| (kept every step, saved with the
    checkpoint) is largest."""

    name = "ema_grad"

    def __init__(self, sparsity):
        super().__init__(sparsity)
        self.ema: dict[str, torch.Tensor] = {}

    @classmethod
    def check_spec(cls, sparsity, path):
        if sparsity.distribution == "er":
            raise SpecError(f"{path}.distribution: ema_grad needs an exact level (uniform or erk)")

    def needs_dense_gradient(self, update):
        return True

    def observe_gradients(self, view, update):
        for n in view.masks:
            g = view.grad(n).abs()
            self.ema[n] = g if n not in self.ema else self.ema[n].mul_(0.5).add_(g, alpha=0.5)

    def grow_score(self, view, name):
        return self.ema[name]

    def state_dict(self):
        return {"ema": state_of(self.ema)}

    def load_state_dict(self, state, view):
        self.ema = state_to(state["ema"], view)


CONTRACT = [*METHODS, EmaGrad.name]  # every registered method, and the one above
SPARSE = [m for m in CONTRACT if m != "dense"]
SCALED = {"init_scale": "density", "lr_scale": "density"}  # SuPar's initialisation and learning rates
UPDATING = [m for m in SPARSE if m != "static"]


@pytest.fixture(autouse=True)
def _register_test_method(monkeypatch):
    monkeypatch.setitem(METHODS, EmaGrad.name, EmaGrad)


# What a method needs beyond the common settings: the core methods open their periphery a quarter into the horizon.
CORE_METHODS = ("core_grow", "core_flop_rigl")
METHOD_SETTINGS = {m: {"update_start": 0.25} for m in CORE_METHODS}


def _scaled_ok(method: str, scaled: bool) -> None:
    """The core methods refuse density scaling (their core is a dense narrow model): nothing to run."""
    if scaled and method in CORE_METHODS:
        pytest.skip(f"{method} refuses init_scale / lr_scale: density (a check shared by the core methods)")


def _trainer(tiny_raw, method, level=0.7, **sparsity):
    raw = {
        **tiny_raw,
        "model": {**tiny_raw["model"], "logits": "all"},
        "train": {**tiny_raw["train"], "weight_decay": 0.1, "max_steps": 1000},
        "sparsity": {
            "method": method,
            "level": level if method != "dense" else 0.0,
            "update_every": 2,
            "horizon_steps": 16,
            "update_end": 1.0,
            "drop_fraction": 0.3,
            **METHOD_SETTINGS.get(method, {}),
            **sparsity,
        },
    }
    return Trainer(spec_from_dict(raw), _data(tiny_raw), None)


_DATA = {}


def _data(tiny_raw):
    key = str(tiny_raw["model"])
    if key not in _DATA:
        spec = spec_from_dict(tiny_raw)
        _DATA[key] = prepare_data(spec.data, spec.model)
    return _DATA[key]


def _state_tensors(tr, w):
    return [v for v in tr.optimizer.state.get(w, {}).values() if torch.is_tensor(v) and v.shape == w.shape]


def _active(sp):
    return {n: int(m.sum()) for n, m in sp.masks.items()}


def _spy_counts(sp) -> list[tuple[int, dict, dict]]:
    """Record every update's (step, counts asked for, active counts before)."""
    seen, original = [], sp.method.counts

    def spy(view, step):
        out = original(view, step)
        seen.append((step, out, {n: view.active(n) for n in view.masks}))
        return out

    sp.method.counts = spy
    return seen


# ----- contract: every method ---------------------------------------------------------------------------------


def test_unknown_method_raises_listing_choices():
    with pytest.raises(SpecError, match=r"unknown method 'lottery' \(choices: dense, static, set, rigl"):
        get_method("lottery")


def test_a_method_brings_its_own_spec_rules(tiny_raw):
    from sparsesearch.checks import check_spec

    raw = {**tiny_raw, "sparsity": {"method": "ema_grad", "level": 0.7, "distribution": "er"}}
    with pytest.raises(SpecError, match="sparsity.distribution: ema_grad needs an exact level"):
        check_spec(spec_from_dict(raw))


@pytest.mark.parametrize("method", CONTRACT)
@pytest.mark.parametrize("scaled", [False, True], ids=["standard", "density-scaled"])
def test_masked_weights_and_optimizer_state_stay_exactly_zero(tiny_raw, method, scaled):
    _scaled_ok(method, scaled)
    tr = _trainer(tiny_raw, method, **(SCALED if scaled else {}))
    for _ in range(12):  # several mask updates, AdamW with weight decay 0.1
        tr.train_step()
        for name, mask in tr.sparsifier.masks.items():
            w = tr.sparsifier.weights[name]
            assert torch.count_nonzero(w[~mask]) == 0, name
            for s in _state_tensors(tr, w):
                assert torch.count_nonzero(s[~mask]) == 0, name
    if method == "dense":
        assert not tr.sparsifier.masks and tr.avg_sparsity() == 0.0
    else:
        assert tr.sparsifier.masks


@pytest.mark.parametrize("method", SPARSE)
@pytest.mark.parametrize("scaled", [False, True], ids=["standard", "density-scaled"])
def test_active_counts_are_exactly_what_the_method_asked_for(tiny_raw, method, scaled):
    _scaled_ok(method, scaled)
    tr = _trainer(tiny_raw, method, **(SCALED if scaled else {}))
    sp = tr.sparsifier
    seen = _spy_counts(sp)
    for _ in range(16):  # the whole horizon: every update, the last one included
        before, n_seen = _active(sp), len(seen)
        tr.train_step()
        if len(seen) > n_seen:
            _, counts, _ = seen[-1]
            assert _active(sp) == {n: before[n] - counts[n][0] + counts[n][1] for n in before}
        else:
            assert _active(sp) == before
        forward = sp.method.forward_masks(sp.view)
        if forward is not None:  # a forward set inside the mask is exact too, and inside it
            assert {n: int(m.sum()) for n, m in forward.items()} == {
                n: round(sp.target_density[n] * m.numel()) for n, m in sp.masks.items()
            }
            assert all(not (forward[n] & ~sp.masks[n]).any() for n in forward)
    final = {n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()}
    assert sum(_active(sp).values()) == sum(final.values())  # the level is exact at the end
    assert tr.avg_sparsity() == pytest.approx(0.7, abs=1e-3)
    if method not in ("snfs", "flop_rigl", "core_flop_rigl"):  # these move weights between layers on purpose
        assert _active(sp) == final


# gmp never grows; Top-KAST's re-entering weights resume their stored (stale) values by design.
@pytest.mark.parametrize("method", [m for m in UPDATING if m not in ("gmp", "topkast")])
def test_grown_weights_start_at_zero_with_zero_state(tiny_raw, method):
    tr = _trainer(tiny_raw, method)
    sp = tr.sparsifier
    first = 4 if method in CORE_METHODS else 2  # updates after steps 2, 4, ...; the core's switch after step 4
    for _ in range(first - 1):
        tr.train_step()
    assert not sp.updates
    before = {n: m.clone() for n, m in sp.masks.items()}
    tr.train_step()
    assert sp.updates and sp.updates[-1]["step"] == first
    grown_any = False
    for n, m in sp.masks.items():
        grown = m & ~before[n]
        grown_any |= bool(grown.any())
        w = sp.weights[n]
        assert torch.count_nonzero(w[grown]) == 0
        for s in _state_tensors(tr, w):
            assert torch.count_nonzero(s[grown]) == 0
    assert grown_any
    tr.train_step()  # and they then train
    assert any(torch.count_nonzero(sp.weights[n][sp.masks[n] & ~before[n]]) > 0 for n in sp.masks)


def _full_state(tr):
    return {
        "model": {k: v.clone() for k, v in tr.model.state_dict().items()},
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict(),
        "sparsifier": tr.sparsifier.state_dict(),
        "step": tr.step,
    }


@pytest.mark.parametrize("method", SPARSE)
@pytest.mark.parametrize("scaled", [False, True], ids=["standard", "density-scaled"])
def test_checkpoint_round_trip_gives_identical_masks_and_next_steps(tiny_raw, method, scaled):
    _scaled_ok(method, scaled)
    import copy

    a = _trainer(tiny_raw, method, **(SCALED if scaled else {}))
    for _ in range(5):
        a.train_step()
    state = copy.deepcopy(_full_state(a))
    b = _trainer(tiny_raw, method, **(SCALED if scaled else {}))
    b.model.load_state_dict(state["model"])
    b.optimizer.load_state_dict(state["optimizer"])
    b.scheduler.load_state_dict(state["scheduler"])
    b.sparsifier.load_state_dict(state["sparsifier"])
    b.step = state["step"]
    for n in a.sparsifier.masks:
        assert torch.equal(a.sparsifier.masks[n], b.sparsifier.masks[n])
    for _ in range(3):  # includes an update step (after step 6)
        la, _, _ = a.train_step()
        lb, _, _ = b.train_step()
        assert la == lb
    for n in a.sparsifier.masks:
        assert torch.equal(a.sparsifier.masks[n], b.sparsifier.masks[n])
    for (ka, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_checkpoint_of_another_model_is_refused(tiny_raw):
    a = _trainer(tiny_raw, "rigl")
    state = a.sparsifier.state_dict()
    state["masks"].pop(next(iter(state["masks"])))
    with pytest.raises(ValueError, match="do not match"):
        a.sparsifier.load_state_dict(state)


@pytest.mark.parametrize("method", UPDATING)
def test_non_finite_gradients_skip_the_update(tiny_raw, method):
    tr = _trainer(tiny_raw, method)
    sp = tr.sparsifier
    while not sp.is_update_step(tr.step):  # up to the step before the first update
        tr.train_step()
    before = {n: m.clone() for n, m in sp.masks.items()}
    name = next(iter(sp.masks))
    # Poison a gradient right after backward, before the sparsifier sees it.
    hook = sp.weights[name].register_hook(lambda g: torch.full_like(g, math.inf))
    tr.train_step()
    hook.remove()
    assert sp.updates == [{"step": tr.step, "skipped": "non-finite gradients"}]
    for n, m in sp.masks.items():
        assert torch.equal(m, before[n])
        assert torch.count_nonzero(sp.weights[n][~m]) == 0, "masked weights stay exactly zero even then"


def test_a_method_sees_a_read_only_view(tiny_raw):
    view = _trainer(tiny_raw, "rigl").sparsifier.view
    assert isinstance(view, SparsityView)
    name = next(iter(view.masks))
    with pytest.raises(TypeError):
        view.masks[name] = torch.ones_like(view.masks[name])  # only the sparsifier changes masks
    assert not view.weight(name).requires_grad


def test_gmp_prunes_on_its_cubic_ramp(tiny_raw):
    tr = _trainer(tiny_raw, "gmp")
    sp = tr.sparsifier
    for step in range(16):
        tr.train_step()
        s = gmp_sparsity(
            sp.updates[-1]["step"] if sp.updates else 0, final=1.0, start=sp.schedule.start, end=sp.schedule.end
        )
        for n, m in sp.masks.items():
            final = 1.0 - sp.target_density[n]
            keep = m.numel() - round(final * s * m.numel()) if s < 1 else round(sp.mask_density[n] * m.numel())
            assert abs(int(m.sum()) - keep) <= 1, (n, step)  # rounding of s*final vs final*s


def test_grow_stays_between_its_start_and_final_density(tiny_raw):
    tr = _trainer(tiny_raw, "grow")
    sp = tr.sparsifier
    start = {n: round(sp.mask_density[n] * sp.method.start_ratio * m.numel()) for n, m in sp.masks.items()}
    final = {n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()}
    for step in range(16):
        tr.train_step()
        assert all(start[n] <= c <= final[n] for n, c in _active(sp).items()), step
    assert _active(sp) == final


# ----- the shared update ------------------------------------------------------------------------------------


def test_drop_and_grow_is_exact():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(20, 30, generator=g) < 0.3
    w = torch.randn(20, 30, generator=g) * mask
    score = torch.rand(20, 30, generator=g)
    active = int(mask.sum())
    new = drop_and_grow(mask, w.abs(), score, 10, 10)
    assert int(new.sum()) == active
    dropped = mask & ~new
    kept_mags = w.abs()[mask & new]
    assert int(dropped.sum()) <= 10 and w.abs()[dropped].max() <= kept_mags.min()
    grown = new & ~mask
    assert score[grown].min() >= score[~new].max()
    with pytest.raises(ValueError, match="cannot drop"):
        drop_and_grow(mask, w.abs(), score, active + 1, 0)


# ----- layer densities ---------------------------------------------------------------------------------------

SHAPES = {
    "embed_proj.weight": (32, 16),
    "encoder.layer.0.attention.self.query.weight": (32, 32),
    "encoder.layer.0.intermediate.dense.weight": (128, 32),
    "encoder.layer.0.output.dense.weight": (32, 128),
    "head_transform.weight": (16, 32),
}
SIZES = {n: a * b for n, (a, b) in SHAPES.items()}


def _sparsity(dens):
    return 1 - sum(dens[n] * SIZES[n] for n in SIZES) / sum(SIZES.values())


@pytest.mark.parametrize("level", [0.3, 0.5, 0.8, 0.95])
def test_uniform_and_erk_meet_the_budget_exactly(level):
    uni = layer_densities(SHAPES, level, "uniform")
    assert all(d == pytest.approx(1 - level) for d in uni.values())
    erk = layer_densities(SHAPES, level, "erk")
    assert _sparsity(erk) == pytest.approx(level)
    raw = {n: (a + b) / (a * b) for n, (a, b) in SHAPES.items()}
    free = [n for n in SHAPES if erk[n] < 1.0]
    scale = erk[free[0]] / raw[free[0]]
    for n in SHAPES:  # uncapped layers follow (n_in + n_out) / (n_in * n_out); capped ones are dense
        assert erk[n] == pytest.approx(scale * raw[n]) if n in free else erk[n] == 1.0
        assert erk[n] <= 1.0


def test_er_caps_without_redistributing():
    er, erk = layer_densities(SHAPES, 0.3, "er"), layer_densities(SHAPES, 0.3, "erk")
    assert max(er.values()) == 1.0 and _sparsity(er) > 0.3  # capping leaves budget unspent
    assert _sparsity(erk) == pytest.approx(0.3)
    assert layer_densities(SHAPES, 0.9, "er") == pytest.approx(layer_densities(SHAPES, 0.9, "erk"))


def test_group_overrides_and_impossible_budgets():
    dens = layer_densities(SHAPES, 0.6, "uniform", dense_groups=("embed_proj",), group_levels={"ffn_in": 0.9})
    assert dens["embed_proj.weight"] == 1.0
    assert dens["encoder.layer.0.intermediate.dense.weight"] == pytest.approx(0.1)
    assert _sparsity(dens) == pytest.approx(0.6)
    with pytest.raises(SpecError, match="sparsity.level: 0.95 cannot be met"):
        layer_densities(SHAPES, 0.95, "erk", dense_groups=("ffn_in", "ffn_out"))


def test_group_names_cover_every_sparsifiable_weight(tiny_raw):
    tr = _trainer(tiny_raw, "dense")
    groups = {weight_group(n) for n in tr.model.sparsifiable_weights()}
    assert groups == {"embed_proj", "attn_qkv", "attn_out", "ffn_in", "ffn_out", "head_transform"}


# ----- schedules ---------------------------------------------------------------------------------------------


def test_drop_fraction_schedules():
    kw = dict(every=10, start=0, end=100, drop_fraction=0.4)
    cos, lin, const = (UpdateSchedule(**kw, kind=k) for k in ("cosine", "linear", "constant"))
    assert [cos.drop_fraction_at(s) for s in (0, 50, 100)] == pytest.approx([0.4, 0.2, 0.0])
    assert cos.drop_fraction_at(25) == pytest.approx(0.2 * (1 + math.cos(math.pi / 4)))
    assert [lin.drop_fraction_at(s) for s in (0, 25, 100)] == pytest.approx([0.4, 0.3, 0.0])
    assert const.drop_fraction_at(90) == 0.4
    assert [s for s in range(120) if cos.is_update(s)] == list(range(10, 100, 10))


def test_gmp_cubic_ramp():
    assert gmp_sparsity(0, final=0.8, start=10, end=110) == 0.0
    assert gmp_sparsity(60, final=0.8, start=10, end=110) == pytest.approx(0.8 * (1 - 0.5**3))
    assert gmp_sparsity(200, final=0.8, start=10, end=110) == 0.8


@pytest.mark.parametrize("method", ["set", "rigl", "snfs"])
def test_each_update_drops_the_scheduled_fraction(tiny_raw, method):
    tr = _trainer(tiny_raw, method, drop_schedule="cosine")
    sp = tr.sparsifier
    seen = _spy_counts(sp)
    for _ in range(12):
        tr.train_step()
    assert [s for s, _, _ in seen] == [2, 4, 6, 8, 10, 12]
    for step, counts, active in seen:
        drops = {n: counts[n][0] for n in counts}
        frac = sp.schedule.drop_fraction_at(step)
        assert frac == pytest.approx(0.15 * (1 + math.cos(math.pi * step / 16)))
        for n in drops:  # per-layer methods regrow in place, so they cannot drop more than there is room for
            cap = active[n] if method == "snfs" else sp.masks[n].numel() - active[n]
            assert drops[n] == min(round(frac * active[n]), cap)
    if method != "snfs":  # snfs regrows more than it dropped in layers with strong momentum
        assert all(0 <= c <= 0.31 for u in sp.updates for c in u["changed"].values())


# ----- FLOP charges ------------------------------------------------------------------------------------------


def _weight_grad_flops(tr, names):
    comps = {c.name: c for c in step_flops(tr.shape, tr.spec.train.batch_size, 0).components}
    return {n: comps[n].backward_weight for n in names}


@pytest.mark.parametrize("method", CONTRACT)
@pytest.mark.parametrize("scaled", [False, True], ids=["standard", "density-scaled"])
def test_cumulative_flops_equal_the_methods_analytic_formula(tiny_raw, method, scaled):
    _scaled_ok(method, scaled)
    tr = _trainer(tiny_raw, method, **(SCALED if scaled else {}))
    sp = tr.sparsifier
    bs = tr.spec.train.batch_size
    dense_wgrad = _weight_grad_flops(tr, list(sp.masks))
    steps = 12
    expected = 0.0
    measured = 0.0
    for step in range(steps):
        dens = {**sp.densities(), **sp.activation_densities()}  # the masks (and active heads) of this step
        backward = {k: m.sum().item() / m.numel() for k, m in sp.masks.items()}  # weight gradients cover the mask
        dense_gradient = sp.method.needs_dense_gradient(sp.is_update_step(step))
        _, n, charged = tr.train_step()
        measured += tr.step_flops(n, charged)[0].total
        sparse = step_flops(tr.shape, bs, n, dens).total
        wgrad = {k: 1.0 if dense_gradient else backward[k] for k in sp.masks}
        expected += sparse + sum((wgrad[k] - dens[k]) * dense_wgrad[k] for k in sp.masks)
    assert measured == pytest.approx(expected, rel=1e-12)
    dense_total = steps * step_flops(tr.shape, bs, 0).total  # logits at all positions: n does not matter
    if method == "dense":
        assert measured == pytest.approx(dense_total)
    else:
        assert measured < dense_total


def test_rigl_flop_ratio_is_reported_by_the_trainer(tiny_raw):
    tr = _trainer(tiny_raw, "rigl", level=0.8)
    tr.spec = dataclasses.replace(tr.spec, train=dataclasses.replace(tr.spec.train, max_steps=10))
    rows = list(tr.run())
    r = tr.result
    assert r.avg_sparsity == pytest.approx(0.8, abs=1e-3)
    assert r.flop_ratio == pytest.approx(rows[-1]["flops"] / rows[-1]["dense_flops"])
    assert 0 < r.flop_ratio < 1
    assert rows[-1]["layer_density"] and all(0 < d < 1 for d in rows[-1]["layer_density"].values())
    assert [u["step"] for row in rows for u in row["mask_updates"]] == [2, 4, 6, 8, 10]
    # every evaluation says how much of the encoder takes part; the diagnostic reads the weights themselves
    live = live_units(tr.model.encoder.layer, tr.spec.model.num_heads)
    assert {k: rows[-1][k] for k in live} == live and all(0 < v <= 1 for v in live.values())


def _regularized_gradient(tr) -> tuple[str, torch.Tensor]:
    """After a step, the gradient the sparsifier leaves on a zero gradient of the first masked weight."""
    tr.train_step()
    name = next(iter(tr.sparsifier.masks))
    w = tr.sparsifier.weights[name]
    w.grad = torch.zeros_like(w)
    tr.sparsifier.before_optimizer_step(tr.step)
    return name, w.grad


def test_l2_regularizer_adds_to_active_gradients(tiny_raw):
    tr = _trainer(tiny_raw, "static", regularizer="l2", regularizer_strength=0.5)
    name, grad = _regularized_gradient(tr)
    assert torch.allclose(grad, 0.5 * tr.sparsifier.weights[name].detach() * tr.sparsifier.masks[name])


# ----- edge cases ----------------------------------------------------------------------------------------------


def test_snfs_layer_that_filled_up_can_still_shed_weights(tiny_raw):
    tr = _trainer(tiny_raw, "snfs")
    sp = tr.sparsifier
    full = next(iter(sp.masks))
    total_before = sum(int(m.sum()) for m in sp.masks.values())
    extra = sp.masks[full].numel() - int(sp.masks[full].sum())
    # Move weights from other layers into `full` until it is dense, keeping the total.
    donors = [n for n in sp.masks if n != full]
    for n in donors:
        take = min(extra, int(sp.masks[n].sum()) - 1)
        idx = sp.masks[n].reshape(-1).nonzero().reshape(-1)[:take]
        sp.masks[n].reshape(-1)[idx] = False
        extra -= take
        if not extra:
            break
    sp.masks[full][:] = True
    sp.method.momentum = {n: torch.rand(m.shape) for n, m in sp.masks.items()}
    counts = sp.method.counts(sp.view, 2)
    assert counts[full][0] > 0, "a dense layer sheds its share of weights"
    assert sum(d for d, _ in counts.values()) == sum(g for _, g in counts.values())
    assert sum(int(m.sum()) for m in sp.masks.values()) == total_before


def test_snfs_momentum_ignores_non_finite_gradients(tiny_raw):
    tr = _trainer(tiny_raw, "snfs")
    sp = tr.sparsifier
    tr.train_step()
    name = next(iter(sp.masks))
    hook = sp.weights[name].register_hook(lambda g: torch.full_like(g, math.nan))
    tr.train_step()
    hook.remove()
    assert all(torch.isfinite(m).all() for m in sp.method.momentum.values())


def test_gmp_catches_up_when_its_last_prune_was_skipped(tiny_raw):
    tr = _trainer(tiny_raw, "gmp", update_end=0.5)  # ramp ends after step 8
    sp = tr.sparsifier
    for _ in range(7):
        tr.train_step()
    real = sp._gradients_finite
    sp._gradients_finite = lambda: False  # as if step 8's gradients were not finite (weights left intact)
    tr.train_step()  # step 8: the final prune is skipped
    sp._gradients_finite = real
    assert sp.updates[-1] == {"step": 8, "skipped": "non-finite gradients"}
    for _ in range(2):
        tr.train_step()
    assert {n: int(m.sum()) for n, m in sp.masks.items()} == {
        n: round(sp.target_density[n] * m.numel()) for n, m in sp.masks.items()
    }
    assert all(u["grown"] == 0 and u["dropped"] > 0 for u in sp.updates if "changed" in u)


def test_topkast_regularizer_reaches_the_backward_set(tiny_raw):
    tr = _trainer(tiny_raw, "topkast", regularizer="l2", regularizer_strength=0.5)
    name, grad = _regularized_gradient(tr)
    theta = tr.sparsifier.method.theta[name]
    between = tr.sparsifier.masks[name] & ~tr.sparsifier.method.forward[name]
    assert between.any()
    assert torch.allclose(grad[between], 0.5 * theta[between])


# ----- our methods ------------------------------------------------------------------------------------------------


def test_flop_rigl_regrows_where_gradient_per_flop_is_largest(tiny_raw):
    tr = _trainer(tiny_raw, "flop_rigl", update_every=1)
    sp = tr.sparsifier
    cheap = "head_transform.weight"
    # growth there is ~free
    sp.view.weight_cost = MappingProxyType({n: (1e-9 if n == cheap else 1.0) for n in sp.view.weight_cost})
    before = {n: int(m.sum()) for n, m in sp.masks.items()}
    counts = {}
    original = sp.method.counts
    sp.method.counts = lambda s, step: counts.setdefault(step, original(s, step))
    tr.train_step()
    after = {n: int(m.sum()) for n, m in sp.masks.items()}
    (n_by_layer,) = counts.values()
    total_drop = sum(d for d, _ in n_by_layer.values())
    assert total_drop > 0 and sum(after.values()) == sum(before.values())
    free = sp.masks[cheap].numel() - before[cheap] + n_by_layer[cheap][0]
    assert n_by_layer[cheap][1] == min(total_drop, free)  # the cheap layer takes all it can
    assert after[cheap] > before[cheap]


def test_trainer_prices_weights_by_their_training_flops(tiny_raw):
    raw = {**tiny_raw, "sparsity": {"method": "flop_rigl", "level": 0.5}}
    tr = Trainer(spec_from_dict(raw), _data(tiny_raw), None)
    cost = tr.sparsifier.view.weight_cost
    tokens = tr.spec.train.batch_size * tr.spec.model.seq_len
    ffn = next(n for n in cost if n.endswith("intermediate.dense.weight"))
    assert cost[ffn] == pytest.approx(6 * tokens)  # forward, input gradient, weight gradient: 2 FLOPs each
    assert cost["head_transform.weight"] < cost[ffn] / 3  # only masked positions reach the head


def test_grow_starts_at_half_the_final_density_and_ramps_late(tiny_raw):
    tr = _trainer(tiny_raw, "grow", level=0.8)
    sp = tr.sparsifier
    start = {n: int(m.sum()) for n, m in sp.masks.items()}
    final = {n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()}
    assert all(abs(start[n] - final[n] / 2) <= 1 for n in start)
    assert sp.method.ramp(sp.view, 8) == pytest.approx(0.125)  # (8/16)^3: most density arrives late
    assert sp.method.ramp(sp.view, sp.schedule.end - 1) == 1.0  # the last update completes the ramp
    tr2 = _trainer(tiny_raw, "grow", level=0.8, initial_level=0.95)
    assert tr2.sparsifier.method.start_ratio == pytest.approx(0.25)


def test_grow_initial_level_below_level_is_refused():
    from sparsesearch.checks import check_spec

    with pytest.raises(SpecError, match=r"sparsity.initial_level: must be >= sparsity.level \(0.8\)"):
        check_spec(spec_from_dict({"sparsity": {"method": "grow", "level": 0.8, "initial_level": 0.5}}))


# ----- density-scaled training (SuPar): the behaviour that defines each option -----------------------------------


@pytest.mark.parametrize("method", ["rigl", "grow", "topkast"])
def test_density_init_divides_each_masked_weight_by_the_root_of_its_starting_density(tiny_raw, method):
    standard = _trainer(tiny_raw, method, level=0.8)
    scaled = _trainer(tiny_raw, method, level=0.8, init_scale="density")
    for name, mask in scaled.sparsifier.masks.items():
        assert torch.equal(mask, standard.sparsifier.masks[name])  # the same masks: scaling draws no randomness
        density = min(float(mask.sum()) / mask.numel(), scaled.sparsifier.target_density[name])
        if method == "grow":  # the density of the moment: grow starts sparser than its target
            assert density < scaled.sparsifier.target_density[name]
        a, b = scaled.sparsifier.weights[name], standard.sparsifier.weights[name]
        active = b != 0
        assert torch.allclose(a[active], b[active] / density**0.5)
        # the variance of a pre-activation's sum matches a dense layer's: density x scaled variance = dense's
        assert density * float(a[active].detach().var()) == pytest.approx(float(b[active].detach().var()), rel=1e-4)
    dense = _trainer(tiny_raw, "dense", init_scale="density")  # no mask: nothing to scale
    plain = _trainer(tiny_raw, "dense")
    assert all(torch.equal(p, q) for p, q in zip(dense.model.parameters(), plain.model.parameters()))


def test_density_lr_follows_the_density_of_the_moment_and_leaves_the_rest(tiny_raw):
    tr = _trainer(tiny_raw, "grow", level=0.8, lr_scale="density")  # grow ramps its density up
    lr = tr.spec.train.lr

    def rates() -> dict[str | None, float]:
        return {g.get("name"): g["lr"] for g in tr.optimizer.param_groups}

    def expected(step: int) -> dict[str, float]:
        dens = tr.sparsifier.densities()
        return {n: lr * tr._lr_factor(step) / dens[n] for n in tr.sparsifier.weights}

    start = rates()
    assert {n: start[n] for n in tr.sparsifier.weights} == pytest.approx(expected(0))
    assert start[None] == pytest.approx(lr * tr._lr_factor(0))  # the unnamed groups keep the run's rate
    first = dict(tr.sparsifier.densities())
    for _ in range(16):
        tr.train_step()
    assert tr.sparsifier.densities() != first, "grow changed its densities"
    after = rates()
    # the rates of the next step were set when the last one ended, after its mask update
    assert {n: after[n] for n in tr.sparsifier.weights} == pytest.approx(expected(tr.step))


def test_a_ramp_led_by_the_data_keeps_the_tokens_per_active_weight(tiny_raw):
    """grow with tokens_per_weight: after each mask update, the active sparsifiable weights are the tokens read so
    far over tokens_per_weight (within a weight per layer of rounding), between the start and the final density;
    new weights start at zero with zero optimizer state (the contract suite covers grow) and cost FLOPs from then
    on (the trainer charges the density of the moment)."""
    tpw = 4.0
    tr = _trainer(tiny_raw, "grow", level=0.8, tokens_per_weight=tpw, horizon_steps=40)
    sp, view = tr.sparsifier, tr.sparsifier.view
    per_step = tr.spec.train.batch_size * tr.spec.model.seq_len
    final = {n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()}
    start = {n: int(m.sum()) for n, m in sp.masks.items()}
    assert view.tokens_per_step == per_step and sum(start.values()) < sum(final.values())
    seen, flops_before = [], tr.flops
    for _ in range(40):
        tr.train_step()
        if sp.updates and sp.updates[-1]["step"] == tr.step:
            wanted = tr.step * per_step / tpw - view.dense_weights
            expected = min(sum(final.values()), max(sum(start.values()), wanted))
            active = sum(int(m.sum()) for m in sp.masks.values())
            assert abs(active - expected) <= len(sp.masks), (tr.step, active, expected)
            seen.append(active)
    assert seen == sorted(seen) and seen[0] < seen[-1], "it grows with the data, never shrinks"
    assert flops_before == tr.flops  # train_step alone does not count FLOPs: the trainer's run() does
    sparser = _trainer(tiny_raw, "grow", level=0.8, tokens_per_weight=4 * tpw, horizon_steps=40)
    for _ in range(40):
        sparser.train_step()
    assert sum(int(m.sum()) for m in sparser.sparsifier.masks.values()) < seen[-1], "more tokens per weight: fewer"


def test_the_data_led_ramp_keeps_the_contract(tiny_raw):
    """grow led by the data: masked weights and their optimizer state exactly zero after every step, and a
    checkpoint round trip that continues with identical masks and losses."""
    import copy

    a = _trainer(tiny_raw, "grow", level=0.8, tokens_per_weight=2.0)
    for _ in range(6):
        a.train_step()
        for name, mask in a.sparsifier.masks.items():
            w = a.sparsifier.weights[name]
            assert torch.count_nonzero(w[~mask]) == 0, name
            assert all(torch.count_nonzero(s[~mask]) == 0 for s in _state_tensors(a, w)), name
    state = copy.deepcopy(_full_state(a))
    b = _trainer(tiny_raw, "grow", level=0.8, tokens_per_weight=2.0)
    b.model.load_state_dict(state["model"])
    b.optimizer.load_state_dict(state["optimizer"])
    b.scheduler.load_state_dict(state["scheduler"])
    b.sparsifier.load_state_dict(state["sparsifier"])
    b.step = state["step"]
    for _ in range(4):  # two updates, each growing
        assert a.train_step()[0] == b.train_step()[0]
    assert all(torch.equal(a.sparsifier.masks[n], b.sparsifier.masks[n]) for n in a.sparsifier.masks)
