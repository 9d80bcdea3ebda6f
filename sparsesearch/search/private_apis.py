"""Private APIs of Ray and Optuna that sparsesearch needs and that have no public way, each wrapped once here.

Checked against Ray 2.60.0 and Optuna 5.1.0 (the versions constraints.txt installs); tests/test_private_apis.py
fails loudly when one of them changes, rather than the search quietly doing something else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ray._private import ray_constants

CHECKED_AGAINST = {"ray": "2.60.0", "optuna": "5.1.0"}


@contextlib.contextmanager
def loopback_only_ray() -> Iterator[None]:
    """While inside, ``ray.init(address="local")`` binds every server of the new local Ray to 127.0.0.1.

    Ray binds its servers (GCS, raylet, workers, agents, metrics) to loopback only when the node IP is loopback,
    and ray.init makes ``_node_ip_address="127.0.0.1"`` the machine's IP unless ``ENABLE_RAY_CLUSTER``
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read when Ray is imported) is off; no ray.init argument does it."""
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def optuna_trial(searcher: Any, trial_id: str) -> Any:
    """The live ``optuna.Trial`` that Ray's ``OptunaSearch`` asked for a Ray trial (None once it is told), which
    sparsesearch reports intermediate values and user attributes to (``OptunaSearch._ot_trials``)."""
    return searcher._ot_trials.get(trial_id)


def optuna_trial_told(searcher: Any, trial_id: str) -> bool:
    """Whether ``OptunaSearch`` has already told the study how a Ray trial ended (``_completed_trials``)."""
    return trial_id in searcher._completed_trials


def forget_asha_trial(scheduler: Any, trial_id: str) -> None:
    """Drop a trial from Ray's ASHA bookkeeping (``AsyncHyperBandScheduler._trial_info``: trial -> bracket)."""
    scheduler._trial_info.pop(trial_id, None)


def set_restored_callbacks(tuner: Any, callbacks: Sequence[Any]) -> None:
    """Give a restored ``tune.Tuner`` this process's callbacks (the stored ones were pickled without their console
    and log file): Tune has no public way, so the run config of its local tuner is changed in place."""
    tuner._local_tuner.get_run_config().callbacks = list(callbacks)
