"""End to end: the real `sparsesearch` command on a tiny spec."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import run_cli

REQUIRED = {
    "status",
    "reached_target",
    "target_loss",
    "final_eval_loss",
    "steps",
    "time_to_target_s",
    "flop_ratio",
    "net_time_s",
    "net_flops",
    "avg_sparsity",
}


@pytest.fixture(scope="module")
def tiny_spec_file(tmp_path_factory, tiny_raw):
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    return path


@pytest.mark.slow
def test_train_json_reports_every_required_key(tiny_spec_file):
    proc = run_cli("train", str(tiny_spec_file), "--json", "--set", "train.max_steps=100")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is exactly one JSON object; progress goes to stderr
    assert set(result) >= REQUIRED
    assert result["status"] == "reached" and result["reached_target"] is True
    assert result["final_eval_loss"] <= result["target_loss"]
    assert result["flop_ratio"] == 1.0 and result["avg_sparsity"] == 0.0
    # A dense run: wall net time is its time to target; net time is its FLOPs at the measured dense price.
    assert result["wall_net_time_s"] == pytest.approx(result["time_to_target_s"])
    assert result["method_overhead"] == 1.0
    assert result["net_time_s"] == pytest.approx(result["net_flops"] * result["seconds_per_flop"])
    assert result["flops_per_step"]["by_group"]["decoder"] > 0
    assert "target" in proc.stderr


@pytest.mark.slow
def test_train_readable_summary(tiny_spec_file):
    proc = run_cli("train", str(tiny_spec_file), "--set", "target.loss=0.01", "--set", "train.max_steps=20")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        "did NOT reach the target",
        "projected",
        "FLOP ratio",
        "net time",
        "FLOPs per training step",
        "ffn_in",
        "layer 1",
    ):
        assert text in out


@pytest.mark.slow
def test_train_smoke_spec_with_builtin_corpus_and_default_embedding():
    proc = run_cli("train", "search_spaces/smoke.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["reached_target"] and result["data"]["source"].startswith("python-docs")


def test_flops_json_and_table(tiny_spec_file):
    proc = run_cli("flops", str(tiny_spec_file), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["total"] == pytest.approx(sum(data["by_group"].values()))
    table = run_cli("flops", "search_spaces/rigl.yaml")
    assert table.returncode == 0 and "sparsifiable weights" in table.stdout and "decoder" in table.stdout


@pytest.mark.parametrize("command", [[], ["train"], ["flops"], ["defaults"]])
def test_help_explains_each_command(command):
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0 and "usage: sparsesearch" in proc.stdout and len(proc.stdout) > 150


def test_bad_spec_file_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -3\n")
    proc = run_cli("train", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sparsesearch train: error: train.lr: must be > 0, got -3.0"
