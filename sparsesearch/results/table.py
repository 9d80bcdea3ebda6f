"""Read an experiment directory into one table of trials (parameters, status, metrics).

Reads only what the search stored: each trial's ``result.json`` (one JSON row per report), ``error.txt``,
Ray's latest ``experiment_state-*.json`` when present, and ``sparsesearch.json``. It never trains and never
starts Ray, so it works on a finished, a running or an interrupted experiment, and on a directory copied from
another machine (every path it follows is relative to the experiment directory).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..definitions import (
    DIVERGED,
    ERRORED,
    INVALID,
    LEGACY_STATUSES,
    NOT_REACHED,
    REACHED,
    STOPPED_EARLY,
    UNFINISHED,
    at_target,
)
from ..experiment import (
    DENSE_FAMILY,
    META_KEYS,
    STATE_FILE,
    base_raw,
    family_size,
    role,
    rung_key,
    trial_number,
    upgrade_state,
)
from ..model.shape import ModelShape
from ..spec import Spec, SpecError, spec_from_dict
from .format import missing
from .pareto import OBJECTIVES

# Per-trial columns from the trial's last report (a ``TrialReport``), renamed where the meaning narrows.
_LAST = {
    "eval_loss": "final_eval_loss",
    "step": "steps",
    "target_loss": "target_loss",
    "time_to_target_s": "time_to_target_s",
    "flop_ratio": "flop_ratio",
    "net_time_s": "net_time_s",
    "wall_net_time_s": "wall_net_time_s",
    "method_overhead": "method_overhead",
    "net_flops": "net_flops",
    "avg_sparsity": "avg_sparsity",
    "train_time_s": "train_time_s",
    "flops": "flops",
    "method": "method",
    "level": "level",
    "node": "node",
    "precision": "precision",
    "corpus": "corpus",
}
_TEXT = ("method", "node", "precision", "corpus")
# Per rung: from the trial's reports, and the speedups computed here (columns rung<i>_<key>).
_RUNG_COLUMNS = ("loss", "steps", "net_time_s", "net_flops")
_RUNG_SPEEDUPS = ("speedup", "flop_speedup", "frontier_speedup", "frontier_flop_speedup")
COLUMNS = (
    "trial",
    "trial_id",
    "role",
    "size",
    "reference",
    "status",
    "method",
    "target_loss",
    "final_eval_loss",
    "best_eval_loss",
    "steps",
    "steps_to_target",
    "time_to_target_s",
    "projected",
    "flop_ratio",
    "net_time_s",
    "wall_net_time_s",
    "method_overhead",
    "net_flops",
    "avg_sparsity",
    "speedup",
    "flop_speedup",
    "frontier_speedup",
    "frontier_flop_speedup",
    "train_time_s",
    "flops",
    "reports",
    "node",
    "precision",
    "corpus",
    "trial_dir",
)


class ResultsError(ValueError):
    """The path is not a readable experiment directory."""


def experiment_dir(path: str | Path) -> Path:
    """``path`` itself when it is an experiment, or the one experiment inside a storage directory."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ResultsError(f"{p}: no such directory")
    if (p / STATE_FILE).is_file():
        return p
    inside = sorted(d for d in p.iterdir() if (d / STATE_FILE).is_file())
    if len(inside) == 1:
        return inside[0]
    if inside:
        raise ResultsError(f"{p} holds {len(inside)} experiments; name one: " + ", ".join(d.name for d in inside))
    raise ResultsError(f"{p}: not a sparsesearch experiment (no {STATE_FILE}, and none in its subfolders)")


def load_state(exp: Path) -> dict:
    """The experiment's ``sparsesearch.json``: its spec, target and what ``resume`` needs; checked to hold what
    the readers use (a truncated or hand-edited file is named, never followed into a traceback)."""
    path = exp / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: unreadable ({e}); not a complete experiment") from None
    problem = _state_problem(state)
    if problem:
        raise ResultsError(f"{path}: {problem}; not a complete experiment")
    return upgrade_state(state)


def _state_problem(state: Any) -> str | None:
    """What is wrong with an experiment state, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not an experiment state"
    if not isinstance(state.get("raw"), dict):
        return "has no spec (raw)"
    try:
        spec_from_dict(base_raw(state["raw"]))
    except SpecError as e:
        return f"its spec is invalid ({e})"
    try:
        losses = _target_losses(state)
    except (TypeError, ValueError, AttributeError):
        return "its target is malformed"
    if not losses or not all(math.isfinite(v) for v in losses):
        return "has no finite target loss"
    if not isinstance(state.get("name", ""), str):
        return "its name is not a string"
    family = state.get("dense_family", [])
    if not isinstance(family, list) or not all(
        isinstance(f, dict) and isinstance(f.get("index"), int) and isinstance(f.get("flops_per_step", 0), (int, float))
        for f in family
    ):
        return "its dense family is malformed"
    if "model_shape" in state:
        try:
            ModelShape(**state["model_shape"])
            float(state["expected_masked"])
        except (TypeError, ValueError, KeyError):
            return "its model shape is malformed"
    return None


def _rows(result_file: Path) -> list[dict]:
    """Reports of one trial; a last line cut short by a running or killed trial is skipped."""
    rows: list[dict] = []
    try:
        text = result_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):  # anything else is not a report (a damaged file)
            rows.append(row)
    return _one_run(rows)


def _one_run(rows: list[dict]) -> list[dict]:
    """The reports of the run a trial actually continued: a report at a step the trial had already passed is a
    replay after a restore, and replaces what was reported from that step on.

    Ray Tune logs a report before it registers the report's checkpoint (a separate task on the trial's actor): when
    the trial's node dies between the two, the trial resumes from the checkpoint before and repeats the evaluations
    since, which ``result.json`` then holds twice."""
    kept: list[dict] = []
    for row in rows:
        step = row.get("step")
        if isinstance(step, int | float) and not isinstance(step, bool):
            while kept and isinstance(kept[-1].get("step"), int | float) and kept[-1]["step"] >= step:
                kept.pop()
        kept.append(row)
    return kept


def load_reported(path: str | Path) -> pd.DataFrame:
    """``load_results`` of an experiment that has at least one trial report (what export and report need)."""
    df = load_results(path)
    if df.empty:
        exp = df.attrs["experiment"]
        raise ResultsError(
            f"{exp}: no trial has reported yet, nothing to show (a search still starting, or one stopped before its "
            f"first evaluation: `sparsesearch resume {exp}` continues it)"
        )
    return df


def _ray_statuses(exp: Path) -> dict[str, str]:
    """Trial id -> Ray's status (TERMINATED, RUNNING, PENDING, ERROR, ...) from Ray's state files, oldest first so
    the newest wins (a search extended with `resume --num-samples` has one state file per run)."""
    out: dict[str, str] = {}
    for f in sorted(exp.glob("experiment_state-*.json")):
        try:
            data = json.loads(f.read_text())
            for entry in data.get("trial_data", []):
                t = json.loads(entry[0]) if isinstance(entry, list) else {}
                if isinstance(t, dict) and "trial_id" in t:
                    out[str(t["trial_id"])] = str(t.get("status", ""))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, IndexError, AttributeError):
            continue  # written while we read it, or another Ray version: the reports alone decide
    return out


def _status(last: dict | None, ray_status: str, has_error: bool) -> str:
    st = str((last or {}).get("status", ""))
    st = LEGACY_STATUSES.get(st, st)
    if st.startswith(INVALID):  # older experiments stored "invalid: <why>"
        return INVALID
    if st in (REACHED, DIVERGED, NOT_REACHED):
        return st
    if ray_status == "ERROR" or (has_error and ray_status not in ("RUNNING", "PENDING")):
        return ERRORED
    if last is not None and (last.get("done") or ray_status == "TERMINATED"):
        return STOPPED_EARLY  # the scheduler ended it mid-run
    return UNFINISHED


def _trial_dirs(exp: Path) -> list[Path]:
    return sorted(
        d for d in exp.iterdir() if d.is_dir() and ((d / "result.json").exists() or (d / "params.json").exists())
    )


def _config(d: Path, rows: list[dict]) -> dict:
    if rows and isinstance(rows[-1].get("config"), dict):
        return rows[-1]["config"]
    try:
        cfg = json.loads((d / "params.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _trial_id(d: Path, rows: list[dict]) -> str:
    if rows and rows[-1].get("trial_id"):
        return str(rows[-1]["trial_id"])
    parts = d.name.split("_")  # run_trial_<id>_<n>_...
    return parts[2] if len(parts) > 2 else d.name


def steps_to_target(rows: list[dict], target: float) -> float:
    """Step at which the eval loss first reached ``target``, interpolated linearly between the two reports
    that bracket it (the trainer's rule, ``definitions.at_target``); NaN when it never did."""
    prev = None
    for r in rows:
        row = {"eval_loss": _num(r.get("eval_loss")), "step": _num(r.get("step"))}
        if row["eval_loss"] <= target:
            return at_target(prev, row, target, ("step",))["step"]
        prev = row
    return math.nan


def _num(v) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):  # a damaged report: not a number
        return math.nan


def _trial_record(
    d: Path, rows: list[dict], cfg: dict, ray_status: dict[str, str], state: dict, rungs: int
) -> dict[str, Any]:
    """One trial's row of the table (without its sampled parameters)."""
    tid = _trial_id(d, rows)
    last = rows[-1] if rows else None
    status = _status(last, ray_status.get(tid, ""), (d / "error.txt").exists())
    ref = role(cfg) == DENSE_FAMILY
    try:
        size = family_size(cfg)
    except (TypeError, ValueError):  # a damaged params.json: the trial shows, without its size
        size = None
    rec: dict[str, Any] = {
        "trial": trial_number(d.name),
        "trial_id": tid,
        "role": role(cfg),
        "size": math.nan if size is None else size,
        "reference": False,  # set once the best same-size dense configuration is known
        "status": status,
        "trial_dir": d.name,
        "reports": len(rows),
        "projected": bool(last.get("projected")) if last else True,
    }
    for src, dst in _LAST.items():
        v = (last or {}).get(src)
        rec[dst] = v if src in _TEXT else _num(v)
    if rec["target_loss"] != rec["target_loss"]:
        rec["target_loss"] = _num(state.get("target_loss"))
    rec["method"] = rec["method"] or ("dense" if ref else cfg.get("sparsity.method"))
    rec["best_eval_loss"] = min((_num(r["eval_loss"]) for r in rows), default=math.nan)
    rec["steps_to_target"] = steps_to_target(rows, rec["target_loss"]) if status == REACHED else math.nan
    if status != REACHED:  # only a reached target has a measured time; the rest is projection
        rec["projected"] = status != INVALID and rec["projected"]
    for i in range(rungs):
        crossed = bool((last or {}).get(rung_key(i, "reached")))
        for k in _RUNG_COLUMNS:
            rec[rung_key(i, k)] = _num((last or {}).get(rung_key(i, k))) if crossed or k == "loss" else math.nan
    return rec


def load_results(path: str | Path) -> pd.DataFrame:
    """One row per trial of the experiment at ``path`` (an experiment directory, or a storage directory that
    holds exactly one experiment).

    Columns: ``COLUMNS`` (status is one of ``STATUSES``), then one column per sampled parameter under its
    dotted spec key (e.g. ``sparsity.level``). ``speedup`` is the dense reference's net time over the trial's,
    ``flop_speedup`` the same for net FLOPs; both are NaN for trials that did not reach the target.
    Projected values (``projected`` True) are estimates for ranking, never results.
    """
    exp = experiment_dir(path)
    state = load_state(exp)
    losses = _target_losses(state)
    ray_status = _ray_statuses(exp)
    records: list[dict[str, Any]] = []
    param_keys: dict[str, None] = {}  # sampled parameters, in the order first seen
    configs: dict[str, dict] = {}
    for d in _trial_dirs(exp):
        rows = [r for r in _rows(d / "result.json") if "eval_loss" in r]
        cfg = _config(d, rows)
        rec = _trial_record(d, rows, cfg, ray_status, state, len(losses))
        configs[rec["trial_id"]] = cfg
        for k, v in cfg.items():
            if k not in META_KEYS:
                param_keys[k] = None
                rec[k] = v
        records.append(rec)
    rung_columns = [rung_key(i, k) for i in range(len(losses)) for k in (*_RUNG_COLUMNS, *_RUNG_SPEEDUPS)]
    df = pd.DataFrame.from_records(records, columns=[*COLUMNS, *rung_columns, *param_keys])
    df = df.sort_values("trial", kind="stable").reset_index(drop=True)
    _speedups(df, df["status"] == REACHED, "", _objective(state))
    for i in range(len(losses)):
        _speedups(df, df[rung_key(i, "net_flops")].notna(), rung_key(i, ""), None)
    df["reference"] = df["reference"].astype(bool)
    df["projected"] = df["projected"].astype(bool)
    df.attrs.update(
        experiment=str(exp),
        name=state.get("name", exp.name),
        target_loss=state.get("target_loss"),
        target_losses=list(losses),
        objective=_objective(state),
        params=list(param_keys),
        rung_columns=rung_columns,
        configs=configs,  # the sampled values as Ray passed them (a column may widen int to float)
    )
    return df


def _speedups(df: pd.DataFrame, reached: pd.Series, prefix: str, objective: str | None) -> None:
    """Speedups of every reached trial against the best same-size dense trial and the dense frontier (the best
    dense trial of any size), in net time and in net FLOPs, each against the best dense at that measure.

    ``prefix``: '' for the objective rung, rung<i>_ for a rung; ``objective``: also mark the best same-size
    dense trial by this measure as the ``reference``."""
    dense = df["role"] == DENSE_FAMILY
    same = dense & (df["size"] == 0)
    for col, name in (("net_time_s", "speedup"), ("net_flops", "flop_speedup")):
        values = df[prefix + col]
        for pool, out in ((same, name), (dense, "frontier_" + name)):
            best = values[pool & reached].min()
            df[prefix + out] = (best / values).where(reached) if pool[reached].any() else math.nan
    if objective is not None and same.any():
        ok = same & reached
        col = OBJECTIVES[objective]
        best = df.loc[ok, col].idxmin() if ok.any() else df.index[same][0]
        df.loc[best, "reference"] = True


def _target_losses(state: dict) -> tuple[float, ...]:
    """The experiment's target rungs (``state`` in any format: upgraded here)."""
    target = upgrade_state(state).get("target")
    if isinstance(target, dict) and target.get("losses"):
        if not isinstance(target["losses"], list):
            raise ValueError("target.losses is not a list")
        return tuple(float(v) for v in target["losses"])
    return ()


def _objective(state: dict) -> str:
    search = state["raw"].get("search")
    objective = search.get("objective", "net_time") if isinstance(search, dict) else "net_time"
    return objective if objective in OBJECTIVES else "net_time"


_HISTORY_NUMBERS = ("step", "eval_loss", "train_loss", "flops", "net_flops", "net_time_s", "budget", "timestamp")


def load_history(path: str | Path) -> pd.DataFrame:
    """Every report of every trial (one row per evaluation): trial_id, role, reference (a dense trial), and the
    reported metrics."""
    exp = experiment_dir(path)
    frames = []
    for d in _trial_dirs(exp):
        rows = [r for r in _rows(d / "result.json") if "eval_loss" in r]
        if not rows:
            continue
        cfg = _config(d, rows)
        f = pd.DataFrame.from_records([{k: v for k, v in r.items() if k != "config"} for r in rows])
        for col in _HISTORY_NUMBERS:  # a damaged report's text or huge number becomes NaN, never a str in a curve
            if col in f:
                f[col] = f[col].map(_num)
        f["trial_id"] = _trial_id(d, rows)
        f["role"] = role(cfg)
        f["reference"] = role(cfg) == DENSE_FAMILY  # drawn as dense in the loss curves
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "role", "reference", "step", "eval_loss", "flops"])
    return pd.concat(frames, ignore_index=True)


def spec_value(row: pd.Series, key: str, spec: Spec) -> object:
    """A trial's value of a dotted spec key: its sampled value, else ``spec``'s own (the experiment's spec: what
    a trial that did not sample the key, such as the family's first configuration, trained with)."""
    if key in row and not missing(row[key]):
        return row[key]
    section, name = key.split(".", 1)
    return getattr(getattr(spec, section, None), name, None)
