"""An experiment's own state on disk (``sparsesearch.json``): written whole or not at all, read back and checked
for what ``resume`` needs; whether any trial has started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ..definitions import UNFINISHED
from ..experiment import STATE_FILE, upgrade_state
from ..results.table import load_results
from ..spec import SpecError
from ..training.target import Target


def write_state(path: Path, state: dict) -> None:
    """Write ``sparsesearch.json`` whole or not at all (a crash mid-write leaves the old file or none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def started(exp_dir: Path) -> bool:
    """Whether any trial of the experiment has reported: before that, nothing in it is worth keeping."""
    return any(f.stat().st_size > 0 for f in exp_dir.glob("*/result.json"))


@contextlib.contextmanager
def removed_unless_started(exp_dir: Path):
    """Delete a new experiment directory when the run fails before its first trial reports, so that a re-run
    with the same name starts afresh instead of meeting a half-made experiment."""
    try:
        yield
    except BaseException:
        if exp_dir.is_dir() and not started(exp_dir):
            shutil.rmtree(exp_dir, ignore_errors=True)
        raise


def unfinished_trials(exp_dir: Path) -> int:
    """Trials of the experiment without a final status."""
    df = load_results(exp_dir)
    return int((df["status"] == UNFINISHED).sum())


def read_state(exp_dir: Path) -> dict:
    """An experiment's ``sparsesearch.json``, checked to hold what ``resume`` needs."""
    state_file = exp_dir / STATE_FILE
    if not state_file.is_file():
        raise SpecError(f"{exp_dir}: not a sparsesearch experiment (no {STATE_FILE})")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpecError(f"{state_file}: unreadable, cannot resume ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("raw"), dict):
        raise SpecError(f"{state_file}: not an experiment state (no spec in it), cannot resume")
    try:
        state = upgrade_state(state)
        stored_target(state)
    except (KeyError, TypeError, ValueError):
        raise SpecError(f"{state_file}: its target is missing or malformed, cannot resume") from None
    return state


def stored_target(state: dict) -> Target:
    """The target an experiment was started with (``state`` in the current format: ``upgrade_state``)."""
    t = state["target"]
    return Target(tuple(t["losses"]), t["objective"], t["source"], t.get("path"))
