"""Ray and Ray Tune set-up for a search: quiet logs, a local Ray that listens on loopback only (or a cluster to
join), the storage path, and a Tune run restored from its saved state."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray
from ray import tune

from ..spec import SpecError
from .private_apis import loopback_only_ray, set_restored_callbacks


def quiet_ray_logs(verbose: bool = False) -> None:
    """Ray's own start-up and status output off the console (sparsesearch prints its own progress), unless
    ``verbose``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        # Tune's status tables and "View detailed results" boxes (the new output engine ignores verbose=0).
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        for name in ("ray", "ray.tune", "ray.air", "ray.train", "mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # Trials checkpoint at every evaluation, by design (exact resume); Tune warns about that every few seconds.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A failed trial is a line of the progress log (its traceback is in the trial's error.txt), not a traceback on
    # the console at every retry.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)  # one warning per inf metric otherwise
    if not verbose:
        for handler in logging.getLogger("ray").handlers:
            if not any(isinstance(f, _OneLineErrors) for f in handler.filters):
                handler.addFilter(_OneLineErrors())


class _OneLineErrors(logging.Filter):
    """Ray's errors as one line each, their traceback left out (``--verbose`` keeps it). Ray logs some failures it
    survives with a traceback (e.g. an old checkpoint it cannot delete from storage that turned read-only), which
    the console must not show: the search says what failed and what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} {type(exc).__name__}: {exc}", None
            record.exc_info, record.exc_text = None, None
        record.stack_info = None
        return True


def init_ray(address: str | None, num_cpus: int | None = None, verbose: bool = False) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=_ray_log_level(verbose))
        except (ConnectionError, TimeoutError, ValueError) as e:
            raise SpecError(f"tune.address: cannot join the Ray cluster at {address!r}: {e}") from None
    else:
        # A local Ray serves this machine alone, so nothing of it may listen beyond it (whoever reaches a Ray port
        # runs code there): see ``private_apis.loopback_only_ray``.
        with loopback_only_ray():
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=_ray_log_level(verbose),
            )


def _ray_log_level(verbose: bool) -> int:
    """Ray's start-up lines ("Started a local Ray instance", the token notice) only when asked for."""
    return logging.INFO if verbose else logging.ERROR


def storage_path(storage: str) -> str:
    """The storage directory as an absolute path (a URI is refused by the spec's rules)."""
    return str(Path(storage).expanduser().resolve())


def restored_tuner(exp_dir: Path, trainable, callbacks: list) -> tune.Tuner:
    """Ray Tune's run of ``exp_dir``, restored from its saved state (finished trials kept, the rest resumed), with
    this process's ``callbacks`` (the stored ones were pickled without their console and log file)."""
    try:
        tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, resume_errored=True)
    except Exception as e:  # Ray raises many types for a damaged state (pickle, pyarrow, KeyError, ...)
        raise SpecError(
            f"{exp_dir}: Ray Tune's saved state cannot be restored ({type(e).__name__}: {str(e)[:200]}); the "
            f"stored trials can still be read with `sparsesearch export {exp_dir}`"
        ) from None
    set_restored_callbacks(tuner, callbacks)
    return tuner
