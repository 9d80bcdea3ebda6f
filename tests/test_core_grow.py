"""core_grow: a dense narrow core inside the wide model, then a sparse periphery (behaviour that defines it)."""

from __future__ import annotations

import pytest
import torch

from sparsesearch.checks import load_checked
from sparsesearch.data.batches import prepare_data
from sparsesearch.model.shape import weight_group
from sparsesearch.model.units import live_units
from sparsesearch.spec import SpecError, spec_from_dict
from sparsesearch.training.trainer import Trainer

# The tiny model widened so that neither it nor its core matches the 16-d embedding (which would drop the
# embedding projection): hidden 64 with 2 heads of 32, FFN 128; the core is one whole head.
MODEL = {"hidden_size": 64, "num_heads": 2, "ffn_size": 128}
CORE, CORE_FFN = 32, 64


def _raw(tiny_raw, **sparsity):
    return {
        **tiny_raw,
        "model": {**tiny_raw["model"], **MODEL},
        "train": {**tiny_raw["train"], "precision": "fp32", "max_steps": 100},
        "target": {"loss": 0.01, "dense_steps": 30},
        "sparsity": {
            "method": "core_grow",
            "level": 0.5,
            "distribution": "uniform",
            "core_width": CORE,
            "update_start": 0.2,
            "update_every": 2,
            "horizon_steps": 30,
            **sparsity,
        },
    }


@pytest.fixture(scope="module")
def data(tiny_spec):
    return prepare_data(tiny_spec.data, tiny_spec.model)


def _narrow(tiny_raw, data) -> Trainer:
    """The dense model of the core's size: one head of the core's width, the spec's FFN ratio."""
    model = {**tiny_raw["model"], "hidden_size": CORE, "num_heads": 1, "ffn_size": CORE_FFN}
    raw = {**tiny_raw, "model": model, "train": {**tiny_raw["train"], "precision": "fp32"}, "target": {"loss": 0.01}}
    return Trainer(spec_from_dict(raw), data, None)


def _core_slices(name: str) -> tuple[slice, slice]:
    rows, cols = {
        "embed_proj": (CORE, None),
        "attn_qkv": (CORE, CORE),
        "attn_out": (CORE, CORE),
        "ffn_in": (CORE_FFN, CORE),
        "ffn_out": (CORE, CORE_FFN),
        "head_transform": (None, CORE),
    }[weight_group(name)]
    return slice(rows), slice(cols)


def _load_core_into_narrow(wide: Trainer, narrow: Trainer) -> None:
    """Copy the core's weights, biases, position and LayerNorm channels into the narrow model."""
    with torch.no_grad():
        for name, p in narrow.model.named_parameters():
            w = wide.model.get_parameter(name)
            if name in wide.sparsifier.weights:
                rows, cols = _core_slices(name)
                p.copy_(w[rows, cols])
            elif p.shape == w.shape:
                p.copy_(w)
            elif p.ndim == 1:  # a bias or LayerNorm vector of hidden or FFN width: its first channels
                p.copy_(w[: p.shape[0]])
            else:  # the position embedding [seq, hidden]
                p.copy_(w[:, : p.shape[1]])


def test_the_core_computes_and_costs_what_a_narrow_dense_model_does(tiny_raw, data):
    wide = Trainer(spec_from_dict(_raw(tiny_raw)), data, None)
    narrow = _narrow(tiny_raw, data)
    _load_core_into_narrow(wide, narrow)
    assert wide.evaluate() == pytest.approx(narrow.evaluate(), rel=1e-5)
    for step in range(5):  # the core phase: both train the same way, step for step, at the same cost
        assert not wide.sparsifier.is_update_step(step)
        loss_w, n_w, dens_w = wide.train_step()
        loss_n, n_n, dens_n = narrow.train_step()
        assert loss_w == pytest.approx(loss_n, rel=1e-4)
        assert n_w == n_n
        assert wide.step_flops(n_w, dens_w)[0].total == pytest.approx(narrow.step_flops(n_n, dens_n)[0].total, rel=1e-6)
    assert wide.flops == pytest.approx(narrow.flops, rel=1e-6)


def test_the_periphery_opens_at_the_switch_to_each_layers_final_density_without_changing_the_function(tiny_raw, data):
    tr = Trainer(spec_from_dict(_raw(tiny_raw)), data, None)
    sp = tr.sparsifier
    core = {n: m.clone() for n, m in sp.masks.items()}
    switch = next(s for s in range(30) if sp.is_update_step(s)) + 1
    assert switch == 6  # update_start 0.2 of 30 steps, on the update grid
    for _ in range(switch - 1):
        tr.train_step()
    assert {n: int(m.sum()) for n, m in sp.masks.items()} == {n: int(m.sum()) for n, m in core.items()}
    tr.train_step()  # the switch: this step trains the core, then the periphery opens
    assert sp.updates[-1]["step"] == switch and sp.method.switched
    final = {n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()}
    assert {n: int(m.sum()) for n, m in sp.masks.items()} == final
    for n, m in sp.masks.items():
        assert bool((m | ~core[n]).all()), "level 0.5 leaves room for the whole core: nothing of it is dropped"
        grown = m & ~core[n]
        assert int(grown.sum()) == final[n] - int(core[n].sum())  # (embed_proj's core is already at 50%)
        assert torch.count_nonzero(sp.weights[n][grown]) == 0  # new weights start at zero
    assert sp.activation_densities() == {}  # every head is charged in full from now on
    # The opened periphery changes nothing yet: the wide model still computes what its core alone computes.
    narrow = _narrow(tiny_raw, data)
    _load_core_into_narrow(tr, narrow)
    assert tr.evaluate() == pytest.approx(narrow.evaluate(), rel=1e-5)


def test_a_core_denser_than_a_layers_final_density_sheds_its_smallest_weights(tiny_raw, data):
    # At 80% sparsity the embedding projection (32 of 64 rows: 50%) must drop to 20%.
    tr = Trainer(spec_from_dict(_raw(tiny_raw, level=0.8)), data, None)
    sp = tr.sparsifier
    name = "embed_proj.weight"
    for _ in range(6):
        tr.train_step()
    assert sp.method.switched
    assert int(sp.masks[name].sum()) == round(0.2 * sp.masks[name].numel())
    assert tr.avg_sparsity() == pytest.approx(0.8, abs=1e-3)


def test_tokens_per_weight_opens_the_periphery_once_the_core_has_read_them(tiny_raw, data):
    tr = Trainer(spec_from_dict(_raw(tiny_raw, update_start=0.0, tokens_per_weight=2.0)), data, None)
    sp = tr.sparsifier
    weights = sum(int(m.sum()) for m in sp.masks.values()) + sp.view.dense_weights
    tokens = tr.spec.train.batch_size * tr.spec.model.seq_len
    due = -(-2.0 * weights // tokens)  # first step whose tokens reach 2 per core weight
    expected = int(-(-due // 2) * 2)  # on the update grid (every 2 steps)
    while not sp.updates:
        tr.train_step()
    assert sp.updates[0]["step"] == expected


def test_core_grow_settings_are_checked_at_the_edge(tiny_raw):
    with pytest.raises(SpecError, match="sparsity.update_start: core_grow opens the periphery at update_start"):
        load_checked(_raw(tiny_raw, update_start=0.0))
    with pytest.raises(SpecError, match="sparsity.init_scale: core_grow's core is a dense narrow model"):
        load_checked(_raw(tiny_raw, init_scale="density"))
    with pytest.raises(SpecError, match=r"sparsity.core_width: the dense core must be narrower .* \(64\), got 64"):
        load_checked(_raw(tiny_raw, core_width=64))


def test_a_checkpoint_keeps_whether_the_periphery_has_opened(tiny_raw, data):
    spec = spec_from_dict(_raw(tiny_raw))
    a = Trainer(spec, data, None)
    for _ in range(7):
        a.train_step()
    b = Trainer(spec, data, None)
    b.load_state_dict(a.state_dict())
    assert b.sparsifier.method.switched and b.sparsifier.activation_densities() == {}
    a.train_step()
    b.train_step()
    assert a.flops == b.flops


def test_at_level_zero_it_is_a_growing_dense_model(tiny_raw, data):
    # The growth control: the same core phase, then the whole wide model dense; drop-and-grow has nothing to move.
    tr = Trainer(spec_from_dict(_raw(tiny_raw, level=0.0)), data, None)
    sp = tr.sparsifier
    assert set(sp.masks) == set(sp.weights) and tr.avg_sparsity() > 0.5  # the core phase trains the core alone
    for _ in range(6):
        tr.train_step()
    assert sp.method.switched and tr.avg_sparsity() == 0.0
    dense = Trainer(spec_from_dict({**_raw(tiny_raw), "sparsity": {"method": "dense"}}), data, None)
    for _ in range(10):  # update steps among them: each costs what a dense step costs and leaves every weight in
        _, n, dens = tr.train_step()
        dens_d = dense.train_step()[2]  # priced on this step's batch (n predicted tokens) for both
        assert tr.step_flops(n, dens)[0].total == pytest.approx(dense.step_flops(n, dens_d)[0].total)
        assert all(bool(m.all()) for m in sp.masks.values())
    assert any(u["step"] > 6 for u in sp.updates)


def test_core_flop_rigl_opens_as_core_grow_does_then_moves_density_between_layers(tiny_raw, data):
    # core_grow keeps every layer at the distribution's density after the switch; core_flop_rigl regrows
    # globally by gradient per FLOP, so layer densities move while the overall count holds.
    def run(method: str) -> tuple[Trainer, list[dict[str, int]]]:
        tr = Trainer(spec_from_dict(_raw(tiny_raw, method=method, level=0.8)), data, None)
        counts = []
        for _ in range(20):
            tr.train_step()
            counts.append({n: int(m.sum()) for n, m in tr.sparsifier.masks.items()})
        return tr, counts

    grow, grow_counts = run("core_grow")
    flop, flop_counts = run("core_flop_rigl")
    assert flop.sparsifier.updates[0]["step"] == grow.sparsifier.updates[0]["step"] == 6
    assert flop_counts[5] == grow_counts[5]  # the same switch: every layer to the distribution's count
    final = grow_counts[5]
    assert all(c == final for c in grow_counts[5:])
    assert all(sum(c.values()) == sum(final.values()) for c in flop_counts[5:])
    assert flop_counts[-1] != final
    assert flop.avg_sparsity() == pytest.approx(0.8, abs=1e-3)
    with pytest.raises(SpecError, match="sparsity.update_start: core_flop_rigl opens the periphery at update_start"):
        load_checked(_raw(tiny_raw, method="core_flop_rigl", update_start=0.0))


def _plain_norms(tr: Trainer) -> Trainer:
    """A copy of a trainer's model with plain LayerNorms (statistics over every channel)."""
    plain = Trainer(tr.spec, tr.data, None)
    plain.model.load_state_dict(tr.model.state_dict())
    plain.model.set_norm_channels(None)
    return plain


def test_norm_release_moves_the_statistics_to_every_channel_after_the_switch_without_a_jump(tiny_raw, data):
    tr = Trainer(spec_from_dict(_raw(tiny_raw, norm_release=4)), data, None)
    kept = Trainer(spec_from_dict(_raw(tiny_raw)), data, None)  # the same run with the core's statistics kept
    blends = []
    for _ in range(12):
        tr.train_step()
        kept.train_step()
        blends.append(float(tr.model.encoder.layer[0].output.LayerNorm.stat_blend))
    # Switch after step 6, then a quarter of the way per step, and all channels' from 4 steps after it.
    assert blends == [0, 0, 0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    # Released: the model is the same model with plain LayerNorms; kept on the core, it is not.
    assert tr.evaluate() == pytest.approx(_plain_norms(tr).evaluate(), rel=1e-6)
    assert kept.evaluate() != pytest.approx(_plain_norms(kept).evaluate(), rel=1e-4)


def test_until_the_switch_a_release_changes_nothing(tiny_raw, data):
    a = Trainer(spec_from_dict(_raw(tiny_raw, norm_release=4)), data, None)
    b = Trainer(spec_from_dict(_raw(tiny_raw)), data, None)
    for _ in range(6):  # up to and including the switch: the same losses, bit for bit
        assert a.train_step()[0] == b.train_step()[0]
    assert a.evaluate() == b.evaluate()


def test_a_checkpoint_and_a_saved_model_keep_how_far_the_statistics_have_moved(tiny_raw, data, tmp_path):
    from sparsesearch.training.saved import load_trained, save_trained

    raw = _raw(tiny_raw, norm_release=8)
    spec = spec_from_dict({**raw, "train": {**raw["train"], "max_steps": 12, "eval_every": 2}})
    whole = [(r["step"], r["eval_loss"]) for r in Trainer(spec, data, None).run()]
    first = Trainer(spec, data, None)
    rows = []
    for r in first.run():
        rows.append((r["step"], r["eval_loss"]))
        if r["step"] == 8:  # a quarter of the way: 2 of the 8 steps after the switch at step 6
            state = first.state_dict()
            break
    resumed = Trainer(spec, data, None)
    resumed.load_state_dict(state)
    rows += [(r["step"], r["eval_loss"]) for r in resumed.run()]
    assert rows == whole
    assert float(resumed.model.encoder.layer[0].output.LayerNorm.stat_blend) == 0.75
    saved = load_trained(save_trained(resumed, tmp_path / "m"))
    assert saved.evaluate() == pytest.approx(resumed.evaluate(), rel=1e-6)


def _unit_weights(tr: Trainer) -> dict[str, int]:
    """Non-zero weights in and out of the units outside the core: FFN units, the second head, per layer."""
    out = {}
    for i, block in enumerate(tr.model.encoder.layer):
        out[f"{i}.ffn_in"] = int((block.intermediate.dense.weight[CORE_FFN:] != 0).sum())
        out[f"{i}.ffn_out"] = int((block.output.dense.weight[:, CORE_FFN:] != 0).sum())
        out[f"{i}.value"] = int((block.attention.self.value.weight[CORE:] != 0).sum())
        out[f"{i}.attn_out"] = int((block.attention.output.dense.weight[:, CORE:] != 0).sum())
    return out


def test_a_gradient_opening_never_opens_the_heads_and_ffn_units_outside_the_core(tiny_raw, data):
    # Their input and output weights both start at zero, so neither gets a gradient (a saddle): only the hidden
    # width opens. This is what the study's core_grow runs trained (STUDY.md, Part A).
    tr = Trainer(spec_from_dict(_raw(tiny_raw)), data, None)
    core = live_units(tr.model.encoder.layer, tr.spec.model.num_heads)
    assert 0 < core["live_heads"] < 1 and 0 < core["live_ffn_units"] < 1  # the core's units only
    for _ in range(40):
        tr.train_step()
    assert tr.sparsifier.method.switched
    assert set(_unit_weights(tr).values()) == {0}
    assert int((tr.model.embed_proj.weight[CORE:] != 0).sum()) > 0  # the wider hidden width does train
    # the diagnostic every evaluation records says so
    assert live_units(tr.model.encoder.layer, tr.spec.model.num_heads) == core


def test_a_random_opening_keeps_the_function_at_the_switch_and_trains_every_unit(tiny_raw, data):
    tr = Trainer(spec_from_dict(_raw(tiny_raw, core_open="random")), data, None)
    sp = tr.sparsifier
    core = {n: m.clone() for n, m in sp.masks.items()}
    for _ in range(6):
        tr.train_step()
    assert sp.method.switched
    assert {n: int(m.sum()) for n, m in sp.masks.items()} == {
        n: round(sp.mask_density[n] * m.numel()) for n, m in sp.masks.items()
    }
    for n, m in sp.masks.items():
        rows = int(core[n].any(dim=1).sum())  # the core's units (all of head_transform's: the embedding dimensions)
        grown = m & ~core[n]
        w = sp.weights[n]
        assert torch.count_nonzero(w[:rows][grown[:rows]]) == 0, n  # into the core's units: zero
        assert bool((w[rows:][grown[rows:]] != 0).all()), n  # into the other units: drawn from the initialisation
    narrow = _narrow(tiny_raw, data)
    _load_core_into_narrow(tr, narrow)
    assert tr.evaluate() == pytest.approx(narrow.evaluate(), rel=1e-5)  # the function is the core's still
    for _ in range(10):
        tr.train_step()
    assert all(v > 0 for v in _unit_weights(tr).values())
    assert live_units(tr.model.encoder.layer, tr.spec.model.num_heads) == {"live_heads": 1.0, "live_ffn_units": 1.0}
