"""Property-based fuzzing (hypothesis) of spec validation and of the results reader: on any input, success or one
clean error line (exit 2, ``sparsesearch <command>: error: ...``; ``ResultsError`` for ``load_results``), never a
traceback. The generators and checks are the fuzzing library's (tests/fuzzing.py); benchmarks/fuzz.py runs the
long version."""

from __future__ import annotations

import shutil

import fuzzing as fuzz
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# Fixed examples (derandomize) so CI sees the same cases every run; no example database in the working tree. No
# shrinking: hypothesis spends minutes on each crash here; benchmarks/fuzz.py minimises the inputs it finds.
QUICK = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _clean(outcome: fuzz.Outcome, shown: str, repro: str = "") -> str:
    """The assertion message of a crash: what broke, the input and how to reproduce it."""
    trace = "\n".join(outcome.trace.splitlines()[-20:])
    return f"{outcome.signature}: {outcome.detail}\n{shown}\nreproduce with: {repro}\n{trace}"


_STRATEGIES: dict = {}


@pytest.mark.parametrize("command", ["train", "run"])
@settings(QUICK, max_examples=100)
@given(data=st.data())
def test_any_spec_succeeds_or_fails_in_one_clean_line(command, data, tiny_raw, workdir):
    # train stops where its data work would start; run always has --dry-run.
    if command not in _STRATEGIES:
        _STRATEGIES[command] = fuzz.spec_cases(tiny_raw, command)
    case = data.draw(_STRATEGIES[command], label="case")
    outcome = fuzz.judge_spec(case, workdir)
    assert outcome.kind != "crash", _clean(outcome, case.show(), case.reproduction())


SPECIAL_FILES = [*fuzz.TEXTS, fuzz.deep(3000, "flow_list"), fuzz.deep(3000, "flow_map"), fuzz.deep(600, "block")]


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize("text", SPECIAL_FILES, ids=[f"file{i}" for i in range(len(SPECIAL_FILES))])
def test_special_spec_files_fail_in_one_clean_line(command, text, workdir):
    case = fuzz.SpecCase(command, text=text)
    outcome = fuzz.judge_spec(case, workdir)
    assert outcome.kind != "crash", _clean(outcome, case.show(), case.reproduction())


@pytest.fixture(scope="module")
def experiment(request, tmp_path_factory):
    """A real tiny experiment (a dense trial, a sparse one, a confirmation of both), built by the CLI with its own
    model and corpus beside it, and kept in pytest's cache until a file of sparsesearch (or the builder) changes:
    building it takes most of this module's time."""
    digest = fuzz.source_digest()
    cache = getattr(request.config, "cache", None)
    if cache is None:
        where = tmp_path_factory.mktemp("fuzz_experiment")
    else:
        where = cache.mkdir(f"fuzz_experiment_{digest}")
        for stale in where.parent.glob("fuzz_experiment_*"):
            if stale != where:
                shutil.rmtree(stale, ignore_errors=True)
    return fuzz.build_experiment(fuzz.tiny_raw_in(where / "assets"), where / "build", small=True)


def _op(target: str, action: str, index: int = 0, **kw) -> dict:
    return {
        "target": target,
        "index": index,
        "action": action,
        "frac": 0.5,
        "data": b"{".hex(),
        "key": "eval_loss",
        "value": None,
        "lines": [],
        "drop": False,
        **kw,
    }


READER_SPECIALS = {
    "missing": [_op("root", "", fuzz.ROOT_ACTIONS.index("missing"))],
    "a_file": [_op("root", "", fuzz.ROOT_ACTIONS.index("as_file"))],
    "no_state": [_op("state", "delete")],
    "study_garbage": [_op("study", "garbage")],
    "results_wrong_shape": [_op("result", "json", lines=[[1, 2], "x", {"eval_loss": "low"}])],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(READER_SPECIALS))
def test_special_experiment_directories_fail_in_one_clean_line(name, experiment, workdir):
    ops, log = READER_SPECIALS[name], []
    for check, outcome in fuzz.judge_reader(experiment, ops, workdir / "reader", log=log).items():
        shown = f"{check} after: {'; '.join(log)}"
        assert outcome.kind != "crash", _clean(outcome, shown, fuzz.reader_reproduction(ops, check))


@pytest.mark.slow
@settings(QUICK, max_examples=6)
@given(ops=fuzz.reader_ops())
def test_any_experiment_directory_reads_or_fails_in_one_clean_line(ops, experiment, workdir):
    log: list[str] = []
    for check, outcome in fuzz.judge_reader(experiment, ops, workdir / "reader", log=log).items():
        shown = f"{check} after: {'; '.join(log)}"
        assert outcome.kind != "crash", _clean(outcome, shown, fuzz.reader_reproduction(ops, check))
