"""Shared by the end-to-end tests: run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _command(args: tuple[str, ...]) -> list[str]:
    # the installed console script, as users run it (beside this Python when its venv is not on PATH)
    exe = shutil.which("sparsesearch") or shutil.which("sparsesearch", path=str(Path(sys.executable).parent))
    return [*([exe] if exe else [sys.executable, "-m", "sparsesearch.cli"]), *args]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **(extra or {})}


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 900, **kw
) -> subprocess.CompletedProcess:
    """Run ``sparsesearch ARGS`` to the end, capturing its output as text."""
    return subprocess.run(
        _command(args), capture_output=True, text=True, cwd=cwd, env=_env(env_extra), timeout=timeout, **kw
    )


def start_cli(*args: str, cwd: Path = ROOT, **kw) -> subprocess.Popen:
    """Start ``sparsesearch ARGS`` in its own session (so a test can signal the whole process group)."""
    return subprocess.Popen(
        _command(args),
        cwd=cwd,
        env=_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kw,
    )


def search_spec_file(tmp_path, tiny_raw, num_samples=3, **tune):
    """A tiny search spec file (method, level and lr searched; the same-size dense alone), storage in ``tmp_path``."""
    raw = {
        **tiny_raw,
        "train": {**tiny_raw["train"], "max_steps": 60},
        "sparsity": {"method": "rigl", "level": 0.7},
        "search": {
            "num_samples": num_samples,
            "seed": 1,
            "params": {
                "sparsity.method": {"choice": ["rigl", "set"]},
                "sparsity.level": {"uniform": [0.5, 0.9]},
                "train.lr": {"loguniform": [1e-3, 1e-2]},
            },
            "asha": {"grace_period": 10, "reduction_factor": 2},
            "dense_family": {
                "sizes": 1,
                "configs": 1,
                "depths": [],
            },  # the same-size dense alone (test_family.py: more)
        },
        "tune": {"max_concurrent": 2, "cpus_per_trial": 1, "storage": str(tmp_path / "runs"), **tune},
    }
    path = tmp_path / "tiny_search.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def trial_results(exp: Path) -> dict[str, list[dict]]:
    """Every report of every trial of an experiment directory, by trial id (read from the trials' result.json)."""
    out = {}
    for f in exp.glob("*/result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def wait_for(predicate, timeout: float) -> bool:
    """Poll ``predicate`` every half second until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.5)
    return False
