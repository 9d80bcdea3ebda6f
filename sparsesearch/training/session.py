"""One training run of a checked spec, set up the same way by ``sparsesearch train`` and ``sparsesearch.train``:
data, the resolved target, the measured price of a dense FLOP, and the trainer, with a line for each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..data.batches import TokenizedData, describe_data, prepare_data
from ..spec import Spec
from .reference import measure_reference
from .target import Target, resolve_target, rung_eval_steps
from .trainer import Trainer


@dataclass
class Session:
    """What a run needs, ready to ``trainer.run()``."""

    data: TokenizedData
    target: Target
    trainer: Trainer


def start_session(spec: Spec, say: Callable[[str], None]) -> Session:
    """Prepare the data, resolve the target (a dense run for ``auto``, once, cached), price a dense FLOP and
    build the trainer; ``say`` gets one line for each step."""
    data = prepare_data(spec.data, spec.model)
    say(f"data    {describe_data(data.stats)}")
    target = resolve_target(spec, data, log=say)
    where = f" ({target.source}: {target.path})" if target.path else f" ({target.source})"
    say(f"target  held-out MLM loss {target.describe()}{where}")
    reference = measure_reference(spec, data)
    say(
        f"price   a dense step of the spec's model takes {reference.dense_step_s * 1e3:.0f} ms here: net time is in "
        "these dense-equivalent seconds"
    )
    trainer = Trainer(
        spec,
        data,
        target.losses,
        eval_steps=rung_eval_steps(spec),
        seconds_per_flop=reference.seconds_per_flop,
    )
    return Session(data, target, trainer)
