"""Shared fixtures: a private cache, a tiny offline BERT-family model directory and corpus, test-size specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny
import torch
import yaml
from helpers import run_cli, search_spec_file

from sparsesearch.spec import spec_from_dict


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
    return tiny.write_model(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A .txt corpus of 300 paragraphs written in the tiny vocabulary (learnable structure, no [UNK])."""
    return tiny.write_corpus(tmp_path_factory.mktemp("corpus") / "tiny.txt")


@pytest.fixture(scope="session")
def tiny_raw(tiny_model_dir, tiny_corpus) -> dict:
    """Raw spec of test size: hidden 32, 2 layers, vocabulary 62."""
    return tiny.raw_spec(tiny_model_dir, tiny_corpus)


@pytest.fixture(scope="session")
def tiny_spec(tiny_raw):
    return spec_from_dict(tiny_raw)


@pytest.fixture(scope="session")
def tiny_data(tiny_spec):
    from sparsesearch.data.batches import prepare_data

    return prepare_data(tiny_spec.data, tiny_spec.model)


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, tiny_raw):
    """A finished tiny search run by the CLI, shared by the tests that only read it: 3 sparse trials and the
    same-size dense, none stopped early (several reach the target), logged to MLflow. Returns (the finished CLI
    process, the experiment directory)."""
    tmp = tmp_path_factory.mktemp("finished")
    path = search_spec_file(tmp, tiny_raw, num_samples=3)
    raw = yaml.safe_load(path.read_text())
    raw["search"]["asha"] = {"grace_period": 60}  # every trial trains to its target or budget
    raw["tune"]["callbacks"] = ["mlflow"]
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = run_cli("run", str(path), "--name", "exp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, tmp / "runs" / "exp"
