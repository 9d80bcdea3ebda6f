"""Spec validation: defaults, overrides, and one clear message naming the field for every bad spec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparsesearch.checks import check_spec
from sparsesearch.cli import main
from sparsesearch.spec import Spec, SpecError, describe_defaults, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]


def test_empty_spec_is_all_defaults():
    spec = spec_from_dict({})
    assert spec == Spec()
    assert spec.target.loss == "auto" and spec.sparsity.method == "dense"


@pytest.mark.parametrize("name", ["smoke.yaml", "rigl.yaml"])
def test_shipped_specs_validate(name):
    spec = load_spec(ROOT / "search_spaces" / name)
    assert spec.model.hidden_size % spec.model.num_heads == 0


def test_overrides_by_dotted_path_parse_yaml_values():
    spec = spec_from_dict(
        {},
        [
            "train.lr=3e-4",
            "model.num_layers=3",
            "target.loss=5.5",
            "train.grad_clip=null",
            "model.freeze_embedding=false",
        ],
    )
    assert spec.train.lr == pytest.approx(3e-4)
    assert spec.model.num_layers == 3
    assert spec.target.loss == 5.5
    assert spec.train.grad_clip is None
    assert spec.model.freeze_embedding is False


def test_yaml_exponent_without_dot_is_a_number():
    # YAML 1.1 reads 1e-3 as a string; users mean the number.
    assert spec_from_dict({"train": {"lr": "1e-3"}}).train.lr == pytest.approx(1e-3)


def test_defaults_document_every_key():
    text = describe_defaults()
    import dataclasses

    def keys(obj, indent):
        for f in dataclasses.fields(obj):
            assert f"{indent}{f.name}:" in text and f.metadata["doc"]
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                keys(value, indent + "  ")

    keys(Spec(), "")
    assert yaml.safe_load(text)["search"]["asha"]["reduction_factor"] == 3.0


BAD_SPECS = [
    ({"modle": {}}, "modle: unknown key"),
    ({"model": {"hiden_size": 3}}, "model.hiden_size: unknown key"),
    ({"model": {"hidden_size": "big"}}, "model.hidden_size: must be an integer"),
    ({"model": {"hidden_size": 0}}, "model.hidden_size: must be >= 1"),
    ({"model": {"hidden_size": 100, "num_heads": 3}}, "model.num_heads: must divide"),
    ({"model": {"num_layers": 2.5}}, "model.num_layers: must be an integer"),
    ({"model": {"logits": "some"}}, "model.logits: must be one of 'masked', 'all'"),
    ({"model": {"freeze_embedding": "yes"}}, "model.freeze_embedding: must be true or false"),
    ({"model": {"dropout": 1.0}}, "model.dropout: must be < 1"),
    ({"model": []}, "model: must be a mapping"),
    ({"data": {"mask_prob": 0}}, "data.mask_prob: must be > 0"),
    ({"data": {"heldout_fraction": 0.9}}, "data.heldout_fraction: must be <= 0.5"),
    ({"data": {"source": ""}}, "data.source: must be a non-empty string"),
    ({"train": {"lr": -1}}, "train.lr: must be > 0"),
    ({"train": {"lr": "fast"}}, "train.lr: must be a number"),
    ({"train": {"lr": float("nan")}}, "train.lr: must be a finite number"),
    ({"train": {"batch_size": True}}, "train.batch_size: must be an integer"),
    ({"train": {"device": "tpu"}}, "train.device: must be 'auto'"),
    ({"train": {"lr_schedule": "step"}}, "train.lr_schedule: must be one of"),
    ({"target": {"loss": "low"}}, "target.loss: must be"),
    ({"target": {"loss": -2.0}}, "target.loss: must be > 0"),
    ({"sparsity": {"method": "magic"}}, "sparsity.method: unknown method 'magic' (choices: dense"),
    (
        {"target": {"dense_steps": [1000, 200]}, "train": {"max_steps": 2000}},
        "target.dense_steps: rungs must increase (easiest first), got [1000, 200]",
    ),
    ({"target": {"loss": [5.5, 6.0]}}, "target.loss: rungs must decrease (easiest, highest loss first)"),
    ({"target": {"dense_steps": [200, 5000]}}, "target.dense_steps: the last rung (5000 steps) needs train.max_steps"),
    ({"target": {"loss": [6.0, 5.5], "objective_rung": 2}}, "target.objective_rung: must index one of the 2 rung(s)"),
    ({"search": {"sparsity": 1}}, "search.sparsity: unknown key"),
    ([1, 2], "spec: must be a mapping"),
]


@pytest.mark.parametrize("raw,message", BAD_SPECS, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD_SPECS)])
def test_bad_spec_names_field_and_rule(raw, message):
    with pytest.raises(SpecError) as e:
        check_spec(spec_from_dict(raw))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr", "must be KEY=VALUE"),
        ("=3", "key must be a dotted path"),
        ("train..lr=3", "key must be a dotted path"),
        ("train.lr.x=3", "train.lr: is a value"),
        ("train.nope=3", "train.nope: unknown key"),
    ],
)
def test_bad_override(override, message):
    with pytest.raises(SpecError, match=None) as e:
        spec_from_dict({"train": {"lr": 0.1}}, [override])
    assert message in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden_size: [1,\n")
    with pytest.raises(SpecError, match=r"not valid YAML \(line"):
        load_spec(bad)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "missing.yaml"],
        ["flops", "search_spaces/smoke.yaml", "--set", "model.hidden_size=-4"],
        ["train", "search_spaces/smoke.yaml", "--set", "sparsity.method=nope"],
        ["train", "search_spaces/smoke.yaml", "--set", "target.dense_steps=[40, 20]"],
        ["run", "search_spaces/smoke.yaml", "--dry-run", "--set", "target.dense_steps=[40, 400]"],
        ["flops", "search_spaces/smoke.yaml", "--set", "model.embedding=/no/such/dir"],
    ],
)
def test_cli_reports_bad_input_in_one_line_with_exit_2(args, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_cli_bad_arguments_exit_2_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "sparsesearch.cli", "train"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "required" in proc.stderr
