"""The fuzzing library: hypothesis generators of spec files, overrides and damaged experiment directories, and the
checks that judge sparsesearch on them (success, or one clean error line; never a traceback, a hang or a memory
blow-up). ``tests/test_fuzz.py`` runs a few hundred cases in the suite; ``benchmarks/fuzz.py`` is the long run
(thousands of cases, minimised crashes, reproductions).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import io
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
import typing
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiny
import yaml
from hypothesis import strategies as st

from sparsesearch import spec as spec_module
from sparsesearch.cli import main as cli_main
from sparsesearch.model.shape import SPARSIFIABLE_GROUPS
from sparsesearch.results.table import ResultsError, load_results
from sparsesearch.sparsity.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sparsesearch"
CASE_TIMEOUT_S = 20.0
# Room above the process's size for one case; a spec asking for a huge model must fail, not take the machine.
MEMORY_HEADROOM = 3 << 30

# ----- the harness -----------------------------------------------------------------------------------------------


class Validated(BaseException):  # BaseException: no `except Exception` on the way may take it for an error
    """`train` passed validation: raised where its data work would start."""


class CaseTimeout(BaseException):
    """A case ran longer than its time limit."""


@dataclass
class Outcome:
    kind: str  # "ok" (success), "error" (a clean error) or "crash"
    signature: tuple = ()  # a crash's identity: (kind of failure, where, ...)
    detail: str = ""  # a crash's message
    trace: str = ""  # a crash's traceback, or the output that broke the property


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` (no limit elsewhere, or when None)."""
    import threading

    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise CaseTimeout(f"no answer after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def memory_cap(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Cap this process's address space at its size plus ``headroom`` (soft limit only, restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _vm_size()
    if not size:
        yield
        return
    cap = size + headroom if hard == resource.RLIM_INFINITY else min(size + headroom, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def stop_before_data() -> Iterator[None]:
    """`train` raises Validated where it would prepare its data (its session module calls prepare_data)."""
    import sparsesearch.data.batches as batches
    import sparsesearch.training.session as session

    def stop(*args, **kwargs):
        raise Validated

    saved = batches.prepare_data, session.prepare_data
    batches.prepare_data = session.prepare_data = stop
    try:
        yield
    finally:
        batches.prepare_data, session.prepare_data = saved


def _where(tb: traceback.StackSummary, line: bool = True) -> str:
    ours = [f for f in tb if Path(f.filename).resolve().is_relative_to(PACKAGE)]
    frame = ours[-1] if ours else tb[-1] if tb else None
    if frame is None:
        return "?"
    name = Path(frame.filename)
    name_text = str(name.resolve().relative_to(ROOT)) if ours else name.name
    return f"{name_text}:{frame.lineno} ({frame.name})" if line else f"{name_text} ({frame.name})"


def crash_of(e: BaseException, check: str) -> Outcome:
    tb = traceback.extract_tb(e.__traceback__)
    # A hang or an allocation stops anywhere inside a loop: the function, not the line, names it.
    where = _where(tb, line=not isinstance(e, (CaseTimeout, MemoryError)))
    text = f"{type(e).__name__}: {e}"
    return Outcome(
        "crash",
        (check, type(e).__name__, where),
        text if len(text) < 400 else text[:400] + "...",
        "".join(traceback.format_exception(e)[-40:]),  # a RecursionError's is thousands of lines
    )


def call_main(argv: list[str], timeout: float | None = CASE_TIMEOUT_S) -> tuple[int | str | None, str, str]:
    """``main(argv)`` with its output captured: (exit code, stdout, stderr); argparse's SystemExit is an exit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(timeout):
        try:
            rc = cli_main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def judge_cli(argv: list[str], timeout: float | None = CASE_TIMEOUT_S) -> Outcome:
    """Run one command; a success, a clean error, or a crash."""
    command = argv[0]
    try:
        rc, out, err = call_main(argv, timeout)
    except Validated:
        return Outcome("ok")
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        return crash_of(e, command)
    if rc == 130:  # main turns Ctrl-C into exit 130: stop the fuzzing, not one case
        raise KeyboardInterrupt
    if rc == 0:
        return Outcome("ok")
    prefix = f"sparsesearch {command}: error:"
    if rc == 2 and err.startswith(prefix) and err.endswith("\n") and err.count("\n") == 1:
        return Outcome("error")
    lines = err.count("\n") + (not err.endswith("\n"))
    why = f"exit {rc}" if rc != 2 else "not one line" if lines != 1 else "no error prefix"
    # Grouped by what is wrong with the output, not by message: one cause (user text echoed raw) has many.
    return Outcome(
        "crash",
        (command, "UncleanError", why),
        f"exit {rc}, {lines} stderr line(s): {err[:300]!r}",
        f"stdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}",
    )


def judge_load_results(path: Path) -> Outcome:
    try:
        with time_limit(CASE_TIMEOUT_S):
            load_results(path)
    except ResultsError as e:
        if "\n" in str(e) or not str(e):
            return Outcome("crash", ("load_results", "UncleanError", "not one line"), repr(str(e)[:300]))
        return Outcome("error")
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        return crash_of(e, "load_results")
    return Outcome("ok")


# ----- spec cases ------------------------------------------------------------------------------------------------


class Plain(str):
    """A string written unquoted in the YAML file, so that YAML reads it as whatever it looks like."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_plain(dumper: yaml.SafeDumper, value: Plain) -> yaml.Node:
    tag = dumper.resolve(yaml.ScalarNode, str(value), (True, False))
    return dumper.represent_scalar(tag, str(value))


_Dumper.add_representer(Plain, _represent_plain)


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def yaml_value(value: Any) -> str:
    """``value`` as the text after ``--set KEY=``."""
    text = yaml.dump(value, Dumper=_Dumper, default_flow_style=True, allow_unicode=True, width=10**6).strip()
    return text.removesuffix("...").strip()


@dataclass(frozen=True)
class SpecCase:
    """One spec case: the command, the spec file (a YAML document, or bytes as they are), overrides and flags."""

    command: str  # "train" or "run" (always with --dry-run)
    doc: Any = None
    text: bytes | None = None
    overrides: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    def content(self) -> bytes:
        if self.text is not None:
            return self.text
        return dump_yaml(self.doc).encode("utf-8")

    def argv(self, path: Path | str) -> list[str]:
        head = [self.command, str(path)] + (["--dry-run"] if self.command == "run" else [])
        return head + list(self.flags) + [x for o in self.overrides for x in ("--set", o)]

    def reproduction(self, path: str = "/tmp/fuzz_spec.yaml") -> str:
        data = self.content()
        if len(data) > 200:  # a deep or long file: compressed, so the command stays one short line
            blob = base64.b64encode(zlib.compress(data, 9)).decode()
            write = f"import base64,zlib; open({path!r}, 'wb').write(zlib.decompress(base64.b64decode({blob!r})))"
        else:
            write = f"open({path!r}, 'wb').write({data!r})"
        return f"python -c {shlex.quote(write)} && sparsesearch " + " ".join(map(shlex.quote, self.argv(path)))

    def show(self) -> str:
        body = self.content().decode("utf-8", "backslashreplace") if self.text is None else repr(self.text)
        if len(body) > 600:
            body = body[:600] + f"... ({len(self.content())} bytes)"
        lines = [f"{self.command}{' --dry-run' if self.command == 'run' else ''}; spec file:"]
        lines += ["  " + line for line in body.splitlines()] or ["  (empty)"]
        if self.overrides:
            lines.append("overrides: " + " ".join(f"--set {shlex.quote(o)}" for o in self.overrides))
        if self.flags:
            lines.append("flags: " + " ".join(map(shlex.quote, self.flags)))
        return "\n".join(lines)


def judge_spec(case: SpecCase, workdir: Path, timeout: float | None = CASE_TIMEOUT_S) -> Outcome:
    path = workdir / "fuzz_spec.yaml"
    path.write_bytes(case.content())
    with memory_cap():
        if case.command == "train":
            with stop_before_data():
                return judge_cli(case.argv(path), timeout)
        return judge_cli(case.argv(path), timeout)


def _fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dict]]:
    """(dotted path, type, metadata) of every leaf key of a spec section, nested sections walked."""
    import dataclasses

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp, dict(f.metadata)))
    return out


FIELDS = _fields(spec_module.Spec)
FIELD_TYPES = {path: (tp, meta) for path, tp, meta in FIELDS}
SECTIONS = sorted({p.rsplit(".", 1)[0] for p, _, _ in FIELDS})  # model, ..., search, search.asha, ...
SEARCHABLE = [p for p, _, _ in FIELDS if p.split(".")[0] in spec_module.SEARCHABLE_SECTIONS]
KEY_NAMES = sorted({p.split(".")[-1] for p, _, _ in FIELDS} | {s.split(".")[-1] for s in SECTIONS})

YAML_SPECIAL = [
    "yes", "no", "on", "off", "y", "n", "~", "null", "NULL", "true", "False", ".nan", ".NaN", ".inf", "-.inf",
    "1e3", "1e-3", "1.0e+400", "-1.0e+400", "0x1F", "0o17", "017", "0b101", "1_000", "190:20:30", "-0", "+12",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", ".5", "=", "<<", "auto", "Auto", "AUTO", "cuda:", "cuda:-1",
    "cuda:1", "cpu ", "1e5000", "nan", "inf", "-inf", "NaN", "Infinity", "0.", "1/2", "1,000", "1e", "e3",
]  # fmt: skip
BIG_INTS = [2**31, 2**53 + 1, 2**63, 2**64, 10**20, 10**308, 10**309, 10**400, -(10**400)]
SPECIAL_FLOATS = [0.0, -0.0, 1e-300, 5e-324, 1e308, 1.7976931348623157e308, float("nan"), float("inf"), -float("inf")]
# Values every key meets at least sometimes: out of every range, of no number type, and of every YAML type.
EXTREMES = [*BIG_INTS, *SPECIAL_FLOATS, -1, True, None, "", " ", "1e999", "nan", [], {}, [None], {"": None}]


def scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-20, 5000),
        st.integers(),
        st.sampled_from(BIG_INTS),
        st.floats(),
        st.sampled_from(SPECIAL_FLOATS),
        st.text(max_size=12),
        st.sampled_from(YAML_SPECIAL),
        st.sampled_from(YAML_SPECIAL).map(Plain),
        st.sampled_from(KEY_NAMES + list(METHODS) + list(SPARSIFIABLE_GROUPS) + list(spec_module.DISTRIBUTIONS)),
    )


def keys() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(KEY_NAMES + SEARCHABLE + ["when", *spec_module.DISTRIBUTIONS]),
        st.text(max_size=10),
        st.integers(-5, 5),
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
    )


def values(max_leaves: int = 12) -> st.SearchStrategy:
    return st.recursive(
        scalars(),
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys(), children, max_size=4)),
        max_leaves=max_leaves,
    )


def _field_values(path: str) -> st.SearchStrategy:
    """Values for one spec key that are likely wrong: at and just past its bounds, of every type, random ones."""
    tp, meta = FIELD_TYPES.get(path, (Any, {}))
    near = []
    for b in (meta.get("lo"), meta.get("hi")):
        if b is not None:
            near += [b, b - 1, b + 1, b - 1e-9, b + 1e-9, b * 2, -b, int(b)]
    specific: list[Any] = []
    for arg in typing.get_args(tp) or (tp,):
        if typing.get_origin(arg) is typing.Literal:
            specific += list(typing.get_args(arg))
    name = path.split(".")[-1]
    if name == "method":
        specific += list(METHODS)
    if name in ("dense_groups", "group_levels"):
        specific += [list(SPARSIFIABLE_GROUPS[:2]), {g: 0.5 for g in SPARSIFIABLE_GROUPS[:2]}, {"nope": 0.5}]
    if name in ("loss", "dense_steps"):
        specific += [[5.0, 4.0], [4.0, 5.0], [10, 20], [20, 10], [], [1], ["auto"], [float("nan")]]
    if name == "device":
        specific += ["cpu", "cuda", "cuda:0", "cuda:x", "tpu"]
    return st.one_of(
        st.sampled_from(near + specific) if near + specific else st.nothing(),
        st.sampled_from(EXTREMES),
        scalars(),
        values(max_leaves=4),
    )


def _number(tp: Any, meta: dict) -> st.SearchStrategy:
    lo, hi = meta.get("lo"), meta.get("hi")
    if tp is int:
        low = int(lo or 0) + bool(meta.get("lo_open"))
        return st.integers(low, int(hi) if hi is not None else low + 64)
    low = float(lo) if lo is not None else -10.0
    return st.floats(
        low,
        float(hi) if hi is not None else low + 10.0,
        exclude_min=bool(meta.get("lo_open")),
        exclude_max=bool(meta.get("hi_open")),
    )


def valid_values(path: str) -> st.SearchStrategy:
    """Values one spec key accepts on its own (its other rules, relating it to other keys, may still fail)."""
    name = path.split(".")[-1]
    special = {
        "method": st.sampled_from(list(METHODS)),
        "dense_groups": st.lists(st.sampled_from(SPARSIFIABLE_GROUPS), unique=True, max_size=3),
        "group_levels": st.dictionaries(st.sampled_from(SPARSIFIABLE_GROUPS), st.floats(0, 0.99), max_size=2),
        "loss": st.one_of(
            st.just("auto"),
            st.floats(0.5, 10),
            st.lists(st.floats(0.5, 10), min_size=1, max_size=3, unique=True).map(lambda v: sorted(v)[::-1]),
        ),
        "dense_steps": st.one_of(
            st.integers(1, 60), st.lists(st.integers(1, 60), min_size=1, max_size=3, unique=True).map(sorted)
        ),
        "objective_rung": st.integers(-3, 2),
        "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:0"]),
        "embedding": st.just("default"),  # the offline package; the tiny model is the base spec's
        "params": search_params(sound=True),
    }
    if name in special:
        return special[name]
    tp, meta = FIELD_TYPES.get(path, (Any, {}))
    options = []
    for arg in typing.get_args(tp) or (tp,):
        if typing.get_origin(arg) is typing.Literal:
            options.append(st.sampled_from(typing.get_args(arg)))
        elif arg is type(None):
            options.append(st.none())
        elif arg is bool:
            options.append(st.booleans())
        elif arg in (int, float):
            options.append(_number(arg, meta))
        elif arg is str:
            options.append(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8))
    return st.one_of(*options) if options else _field_values(path)


def sound_distributions(key: str) -> st.SearchStrategy:
    """A distribution whose every value the key accepts on its own."""
    item = valid_values(key)
    tp, meta = FIELD_TYPES.get(key, (Any, {}))
    kinds = [st.builds(lambda v: {"choice": v}, st.lists(item, min_size=1, max_size=4, unique_by=repr)), item]
    numeric = [a for a in typing.get_args(tp) or (tp,) if a in (int, float)]
    if numeric:
        pair = st.lists(_number(numeric[0], meta), min_size=2, max_size=2, unique=True).map(sorted)
        names = ["int", "int_log"] if numeric[0] is int else ["uniform", "loguniform"]
        kinds.append(st.builds(lambda k, b: {k: b}, st.sampled_from(names), pair))
    return st.one_of(*kinds)


def distributions(key: str, sound: bool = False) -> st.SearchStrategy:
    """A search.params entry for ``key``: a distribution (sound or broken), a constant, or something else."""
    if sound:
        return sound_distributions(key)
    item = _field_values(key)
    numbers = st.one_of(st.integers(-3, 100), st.floats(-2, 2), st.sampled_from(SPECIAL_FLOATS + BIG_INTS), scalars())
    bounds = st.one_of(st.lists(numbers, min_size=2, max_size=2), st.lists(numbers, max_size=3), scalars())
    one = st.one_of(
        sound_distributions(key),
        st.builds(lambda v: {"choice": v}, st.one_of(st.lists(item, max_size=4), item)),
        st.builds(lambda k, b: {k: b}, st.sampled_from(spec_module.DISTRIBUTIONS[1:]), bounds),
        item,
        st.dictionaries(st.sampled_from([*spec_module.DISTRIBUTIONS, "when", "normal"]), bounds, max_size=3),
    )
    when = st.dictionaries(
        st.one_of(st.sampled_from(SEARCHABLE), st.text(max_size=8)),
        st.one_of(st.lists(scalars(), max_size=3), scalars()),
        max_size=2,
    )
    return st.one_of(
        one,
        st.builds(lambda d, w: {**d, "when": w} if isinstance(d, dict) else d, one, st.one_of(when, scalars())),
    )


@st.composite
def search_params(draw, sound: bool = False) -> dict:
    """A search.params section; a later key is sometimes conditional on an earlier one (by one of its values)."""
    names = st.sampled_from(SEARCHABLE)
    if not sound:
        names = st.one_of(names, st.sampled_from(["search.seed", "sparsity.lvl", "model", "a.b.c", ""]))
    params: dict = {}
    for key in draw(st.lists(names, min_size=sound, max_size=4, unique=True)):
        entry = draw(distributions(key, sound))
        earlier = [
            (k, v)
            for k, v in params.items()
            if isinstance(v, dict) and v.get("choice") and isinstance(v["choice"], list)
        ]
        if earlier and isinstance(entry, dict) and draw(st.booleans()):
            k, v = draw(st.sampled_from(earlier))
            entry = {**entry, "when": {k: draw(st.lists(st.sampled_from(v["choice"]), min_size=1, max_size=2))}}
        params[key] = entry
    return params


def _set_path(doc: dict, path: list, value: Any) -> None:
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _del_path(doc: dict, path: list) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


@st.composite
def perturbed_specs(draw, base: dict) -> dict:
    """A valid spec with one to three keys changed: to values each key accepts (about half the time), to wrong
    ones, deleted, unknown keys added, sections replaced, the search space redrawn."""
    doc = copy.deepcopy(base)
    actions = ["valid", "valid", "valid", "set", "extreme", "delete", "unknown", "section", "params", "valid"]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(actions))
        path = draw(st.sampled_from([p for p, _, _ in FIELDS]))
        if action == "valid":
            _set_path(doc, path.split("."), draw(valid_values(path)))
        elif action == "set":
            _set_path(doc, path.split("."), draw(_field_values(path)))
        elif action == "extreme":
            _set_path(doc, path.split("."), draw(st.sampled_from(EXTREMES)))
        elif action == "delete":
            _del_path(doc, path.split(".") if draw(st.booleans()) else path.split(".")[:1])
        elif action == "unknown":
            section = draw(st.sampled_from(["", *SECTIONS, "search.params"]))
            _set_path(doc, [*(section.split(".") if section else []), draw(keys())], draw(values(4)))
        elif action == "section":
            _set_path(doc, draw(st.sampled_from(SECTIONS)).split("."), draw(values(4)))
        else:
            params = draw(search_params(sound=draw(st.booleans())))
            if draw(st.booleans()) and isinstance(doc.get("search"), dict):
                old = doc["search"].get("params")
                params = {**(old if isinstance(old, dict) else {}), **params}
            _set_path(doc, ["search", "params"], params)
    return doc


def deep(depth: int, style: str) -> bytes:
    if style == "flow_list":
        return b"[" * depth + b"]" * depth
    if style == "flow_map":
        return b"{a: " * depth + b"1" + b"}" * depth
    return b"".join(b"  " * i + b"a:\n" for i in range(depth)) + b"  " * depth + b"1\n"


TEXTS = [
    b"", b"\n", b"   \n\t\n", b"# nothing but a comment\n", b"---\n", b"...\n", b"---\n...\n", b"a: 1\n---\nb: 2\n",
    b"- model\n- train\n", b"just text", b"42", b"3.5", b"null", b"~", b"[]", b"{}", b"''", b"true",
    b"!!python/object/apply:os.system ['true']\n", b"model: !!binary aGVsbG8=\n", b"model: !!set {a, b}\n",
    b"train: !!omap [lr: 1]\n", b"train: {lr: !!timestamp 2001-12-14}\n", b"model: &x {hidden_size: 32}\ndata: *x\n",
    b"model: *nope\n", b"<<: {model: {}}\n", b"model: {<<: {hidden_size: 32}}\n", b"? [a, b]\n: 1\n",
    b"? {a: 1}\n: 1\n", b"model: {hidden_size: 32\n", b"\xff\xfe\x00\x00", b"\xfe\xff\x00m", b"\xef\xbb\xbfmodel: {}\n",
    b"model:\x00\n", b"\x80abc", "model: \xfc\n".encode("latin-1"), b"\tmodel: {}\n", b"model:\n\t- 1\n",
    b"%YAML 1.2\n---\nmodel: {}\n", b"%TAG ! tag:x,2000:\n---\n!foo 1\n", b"model: 'unterminated\n",
    b"model: {hidden_size: 1e400}\n", b"train: {lr: 1e-400}\n", b"model: {hidden_size: 0x7fffffffffffffffff}\n",
    b"train: {max_steps: 1_000_000_000_000_000_000}\n", b"model: {num_heads: 190:20:30}\n", b"model:\n  model:\n",
    b"search: {params: {train.lr: {uniform: [.nan, .inf]}}}\n", b"model: [hidden_size, 32]\n", b"a: b: c\n",
    b"model: !!float 32\n", b"model: {hidden_size: !!int '32'}\n", b"train: {lr: !!str 0.1}\n", b"- - - -\n",
]  # fmt: skip


@st.composite
def garbled(draw, valid: bytes) -> bytes:
    """A valid spec file cut, garbled, its lines dropped, repeated or re-indented."""
    text = valid
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["cut", "bytes", "drop_line", "dup_line", "indent", "insert"]))
        at = draw(st.integers(0, max(len(text), 1)))
        lines = text.split(b"\n")
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if how == "cut":
            text = text[:at]
        elif how == "bytes":
            junk = draw(st.binary(min_size=1, max_size=4))
            text = text[:at] + junk + text[at + len(junk) :]
        elif how == "drop_line":
            text = b"\n".join(lines[:i] + lines[i + 1 :])
        elif how == "dup_line":
            text = b"\n".join(lines[: i + 1] + lines[i:])
        elif how == "indent":
            lines[i] = draw(st.sampled_from([b" ", b"\t", b"    "])) + lines[i]
            text = b"\n".join(lines)
        else:
            text = text[:at] + draw(st.sampled_from(TEXTS)) + text[at:]
    return text


def texts(valid: bytes) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(TEXTS),
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda s: s.encode("utf-8")),
        st.builds(deep, st.integers(1, 3000), st.sampled_from(["flow_list", "flow_map", "block"])),
        garbled(valid),
        st.lists(st.sampled_from(TEXTS), min_size=2, max_size=4).map(b"".join),
    )


_ARG_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=24)


def overrides() -> st.SearchStrategy:
    field_paths = [p for p, _, _ in FIELDS]
    assignment = st.one_of(
        st.sampled_from(field_paths).flatmap(lambda p: valid_values(p).map(lambda v: f"{p}={yaml_value(v)}")),
        st.sampled_from(field_paths).flatmap(lambda p: _field_values(p).map(lambda v: f"{p}={yaml_value(v)}")),
        st.builds(lambda p, v: f"{p}={v}", st.sampled_from(field_paths), st.sampled_from(YAML_SPECIAL)),
        st.builds(lambda k, v: f"search.params.{k}={yaml_value(v)}", st.sampled_from(SEARCHABLE), values(4)),
        st.builds(
            lambda p, v: f"{p}={v}",
            st.one_of(st.sampled_from([*SECTIONS, "", ".", "a..b", "model.hidden_size.x", " = "]), _ARG_TEXT),
            _ARG_TEXT,
        ),
        _ARG_TEXT,
    )
    # Most cases have none: a bad override ends the case before the spec's own keys are checked.
    return st.one_of(st.just(()), st.just(()), st.lists(assignment, min_size=1, max_size=3).map(tuple))


def flags(command: str) -> st.SearchStrategy:
    if command == "train":
        return st.sampled_from([(), ("--json",)])
    number = st.one_of(st.integers(1, 8).map(str), st.integers(-3, 10**20).map(str), _ARG_TEXT)
    flag = st.one_of(
        st.tuples(st.just("--num-samples"), number),
        st.tuples(st.sampled_from(["--name", "--storage", "--address"]), _ARG_TEXT),
    )
    listed = st.lists(flag, min_size=1, max_size=2).map(lambda fs: tuple(x for f in fs for x in f))
    return st.one_of(st.just(()), st.just(()), listed)


def valid_specs(tiny_raw: dict) -> tuple[dict, dict]:
    """Bases of the perturbed cases: a valid `train` spec and a valid `run` spec (tiny model, a search section)."""
    train = {**copy.deepcopy(tiny_raw), "sparsity": {"method": "rigl", "level": 0.7}}
    run = {
        **copy.deepcopy(train),
        "search": {
            "num_samples": 4,
            "params": {
                "sparsity.method": {"choice": ["rigl", "set"]},
                "sparsity.level": {"uniform": [0.5, 0.9]},
                "sparsity.drop_fraction": {"uniform": [0.1, 0.5], "when": {"sparsity.method": ["rigl"]}},
                "train.lr": {"loguniform": [1e-3, 1e-2]},
                "train.batch_size": {"int": [4, 16]},
            },
            "asha": {"grace_period": 10, "reduction_factor": 2},
            "dense_family": {"sizes": 2, "configs": 2, "depths": []},
        },
        "tune": {"max_concurrent": 2, "cpus_per_trial": 1},
    }
    return train, run


def spec_cases(tiny_raw: dict, command: str | None = None) -> st.SearchStrategy:
    """Spec cases for `train` and `run --dry-run` (or ``command`` alone); most perturb a valid spec."""
    bases = dict(zip(("train", "run"), valid_specs(tiny_raw)))

    def for_command(cmd: str) -> st.SearchStrategy:
        base = bases[cmd]
        valid = dump_yaml(base).encode()
        sections = st.sampled_from([s for s in SECTIONS if "." not in s] + ["extra"])
        kinds = {
            "perturbed": perturbed_specs(base).map(lambda d: {"doc": d}),
            "document": values(16).map(lambda d: {"doc": d}),
            "sections": st.dictionaries(sections, values(8), max_size=4).map(lambda d: {"doc": d}),
            "bytes": texts(valid).map(lambda t: {"text": t}),
        }
        # Three quarters perturb the valid spec (random documents mostly stop at their first unknown key). Weights
        # by repetition; perturbed at both ends, where hypothesis draws more often.
        weights = ["perturbed", "document", *["perturbed"] * 8, "sections", "bytes", "perturbed", "bytes", "perturbed"]
        files = st.sampled_from(weights).flatmap(kinds.__getitem__)
        return st.builds(
            lambda f, o, fl: SpecCase(cmd, f.get("doc"), f.get("text"), o, fl), files, overrides(), flags(cmd)
        )

    commands = [command] if command else ["train", "run"]
    return st.one_of(*[for_command(c) for c in commands])


# ----- shrinking a spec case -------------------------------------------------------------------------------------


def _paths(doc: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every position in a document, outermost first."""
    children = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    items = list(children)
    for k, _ in items:
        yield (*prefix, k)
    for k, v in items:
        yield from _paths(v, (*prefix, k))


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _with(doc: Any, path: tuple, value: Any = None, delete: bool = False) -> Any:
    doc = copy.deepcopy(doc)
    parent = _get(doc, path[:-1])
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _simpler(v: Any) -> list[Any]:
    if isinstance(v, (dict, list)):
        out = [[]] if isinstance(v, list) and v else [{}] if isinstance(v, dict) and v else []
        return out + [c for c in (v.values() if isinstance(v, dict) else v) if c != v][:3]
    if isinstance(v, bool) or v is None:
        return [] if v is None else [None]
    if isinstance(v, int):
        return [x for x in (0, 1, -1, 10**20) if abs(x) < abs(v) or (x == 10**20 and abs(v) > 10**20)][:3]
    if isinstance(v, float):
        return [x for x in (0.0, 1.0, 0.5) if x != v] if v == v else []
    if isinstance(v, str):
        return [type(v)(v[: len(v) // 2])] if len(v) > 1 else []
    return []


def _spec_candidates(case: SpecCase) -> Iterator[SpecCase]:
    from dataclasses import replace

    for i in range(len(case.overrides)):
        yield replace(case, overrides=case.overrides[:i] + case.overrides[i + 1 :])
    for i in range(0, len(case.flags), 2 if case.command == "run" else 1):
        yield replace(case, flags=case.flags[:i] + case.flags[i + 2 :])
    if case.text is not None:
        lines = case.text.split(b"\n")
        for size in (len(lines) // 2, 8, 4, 2, 1):
            for i in range(0, len(lines), max(size, 1)):
                if size and len(lines) > 1:
                    yield replace(case, text=b"\n".join(lines[:i] + lines[i + size :]))
        for cut in (len(case.text) // 2, len(case.text) * 3 // 4, len(case.text) - 1):
            if 0 <= cut < len(case.text):
                yield replace(case, text=case.text[:cut])
        return
    paths = list(_paths(case.doc))
    for p in paths:
        yield replace(case, doc=_with(case.doc, p, delete=True))
    for p in paths:
        for v in _simpler(_get(case.doc, p)):
            yield replace(case, doc=_with(case.doc, p, v))
    for v in _simpler(case.doc):
        yield replace(case, doc=v)


def shrink(case: Any, same: Callable[[Any], bool], candidates: Callable, budget_s: float, calls: int = 400) -> Any:
    """Greedy: take the first smaller candidate that still fails the same way, until none does or time is up."""
    end = time.monotonic() + budget_s
    progress = True
    while progress and calls > 0 and time.monotonic() < end:
        progress = False
        for cand in candidates(case):
            if calls <= 0 or time.monotonic() > end:
                break
            calls -= 1
            if same(cand):
                case, progress = cand, True
                break
    return case


# ----- the tiny assets and the experiment ------------------------------------------------------------------------


def tiny_raw_in(workdir: Path) -> dict:
    """The tests' tiny spec (tests/tiny.py) with its model directory and corpus made in ``workdir``."""
    model, corpus = workdir / "tiny_bert", workdir / "tiny.txt"
    if not (model / "model.safetensors").is_file():
        tiny.write_model(model)
    if not corpus.is_file():
        tiny.write_corpus(corpus)
    return tiny.raw_spec(model, corpus)


def source_digest() -> str:
    """Changes with any file of sparsesearch and with the builder: a cached experiment is only as current as the
    code that wrote it."""
    import inspect

    text = b"".join(p.read_bytes() for p in sorted(PACKAGE.rglob("*.py")))
    return hashlib.sha1(text + inspect.getsource(build_experiment).encode()).hexdigest()[:12]


def build_experiment(tiny_raw: dict, where: Path, small: bool = False) -> Path:
    """A real experiment of a tiny search (2 sparse trials, a dense family of 2 sizes, a confirmation of the best
    on 2 seeds; ``small``: 1 sparse trial, 1 dense size), run by the CLI in a subprocess (its own Ray instance);
    kept and reused when ``where`` already holds one."""
    exp = where / "runs" / "fuzz"
    done = where / "built"
    if done.is_file() and (exp / "sparsesearch.json").is_file():
        return exp
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    raw = {
        **copy.deepcopy(tiny_raw),
        "train": {**tiny_raw["train"], "max_steps": 20 if small else 40, "eval_every": 10},
        "target": {"loss": "auto", "dense_steps": 10 if small else 20},
        "sparsity": {"method": "rigl", "level": 0.7},
        "search": {
            "num_samples": 1 if small else 2,
            "seed": 1,
            "params": {
                "sparsity.method": {"choice": ["rigl", "set"]},
                "sparsity.level": {"uniform": [0.5, 0.9]},
                "train.lr": {"loguniform": [2e-3, 1e-2]},
            },
            "asha": {"grace_period": 10, "reduction_factor": 2},
            "dense_family": {"sizes": 1 if small else 2, "configs": 1, "depths": []},
            "confirm": {"top": 1, "seeds": 2},
        },
        "tune": {"max_concurrent": 2, "cpus_per_trial": 1, "storage": str(where / "runs")},
    }
    spec = where / "fuzz_search.yaml"
    spec.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "SPARSESEARCH_CACHE": str(where / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sparsesearch.cli", "run", str(spec), "--name", "fuzz"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the experiment did not build (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    done.write_text("ok\n")
    return exp


# ----- reader cases ----------------------------------------------------------------------------------------------

TARGETS = ["state", "study", "result", "params", "ray_state", "trial", "confirm", "file", "root"]
FILE_ACTIONS = ["delete", "truncate", "flip", "garbage", "empty", "json", "perturb", "to_dir", "append"]
DIR_ACTIONS = ["delete", "to_file", "junk", "empty"]
ROOT_ACTIONS = ["missing", "as_file", "empty", "storage", "two", "junk", "junk"]
# Keys of what the reader parses, to perturb the real documents where it looks.
REPORT_KEYS = [
    "step", "eval_loss", "status", "config", "trial_id", "done", "target_loss", "net_time_s", "net_flops",
    "flop_ratio", "avg_sparsity", "method", "projected", "time_to_target_s", "rung0_loss", "rung0_reached",
    "rung0_net_flops", "node", "precision", "train_time_s", "flops", "level", "objective",
]  # fmt: skip
STATE_KEYS = [
    "raw", "target_loss", "target", "name", "spec_path", "storage", "model_shape", "expected_masked",
    "dense_family", "family_configs", "created",
]  # fmt: skip
CONFUSIONS = ["x", "", "NaN", [], {}, [1.0], {"a": 1}, None, True, -1, 0, 1e308, 10**400, -(10**30)]
CONFIG_KEYS = ["role", "family_size", "family_config", "reference", "confirm_of", "sparsity.method", "train.lr"]


def json_values(max_leaves: int = 6) -> st.SearchStrategy:
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.sampled_from(BIG_INTS),
        st.floats(),
        st.text(max_size=8),
        st.sampled_from(["reached", "diverged", "not_reached", "invalid", "running", "auto", "net_time", "x"]),
    )
    return st.recursive(
        leaf,
        lambda c: st.one_of(
            st.lists(c, max_size=3),
            st.dictionaries(
                st.one_of(st.sampled_from(REPORT_KEYS + STATE_KEYS + CONFIG_KEYS), st.text(max_size=6)), c, max_size=3
            ),
        ),
        max_leaves=max_leaves,
    )


def reader_ops() -> st.SearchStrategy:
    """One to three mutations of an experiment directory, as JSON-able dicts (so a crash can be replayed)."""
    op = st.fixed_dictionaries(
        {
            # Weighted towards the documents the reader parses; a broken root mostly ends in the first check.
            "target": st.sampled_from([*TARGETS, "result", "result", "state", "params", "trial"]),
            "index": st.integers(0, 50),
            "action": st.sampled_from(["perturb", *sorted(set(FILE_ACTIONS + DIR_ACTIONS)), "perturb", "perturb"]),
            "frac": st.floats(0, 1),
            "data": st.one_of(
                st.binary(max_size=40), st.sampled_from([b"{", b"\n", b'{"eval_loss": 1}\n', b"\xff"])
            ).map(lambda b: b.hex()),
            # The metrics the reader computes with, more often than the rest; values of the wrong type, mostly.
            "key": st.sampled_from([*REPORT_KEYS[:12], *REPORT_KEYS, *STATE_KEYS, *CONFIG_KEYS, "eval_loss"]),
            "value": st.one_of(st.sampled_from(CONFUSIONS), json_values(), st.sampled_from(CONFUSIONS)),
            "lines": st.lists(json_values(4), max_size=3),
            "drop": st.booleans(),
        }
    )
    return st.lists(op, min_size=1, max_size=3)


def _order(path: Path) -> tuple:
    """The experiment's own files first, trial folders by trial number: their ids are random, their numbers
    follow the order the search created them, so an index names the same trial in every build."""
    parts = []
    for p in path.parts:
        n = p.split("_")
        parts.append(f"run_trial_{int(n[3]):06d}" if p.startswith("run_trial_") and n[3:4] and n[3].isdigit() else p)
    return len(parts), parts


def _candidates(exp: Path, target: str) -> list[Path]:
    if not exp.is_dir():
        return []
    every = sorted(exp.rglob("*"), key=_order)
    files = [p for p in every if p.is_file()]
    if target == "state":
        return [p for p in files if p.name == "sparsesearch.json"]
    if target == "study":
        return [p for p in files if p.name == "study.db"]
    if target in ("result", "params"):
        return [p for p in files if p.name == f"{target}.json"]
    if target == "ray_state":
        return [p for p in files if p.parent == exp and p.name not in ("sparsesearch.json", "study.db")]
    if target == "trial":
        return [p for p in every if p.is_dir() and ((p / "result.json").exists() or (p / "params.json").exists())]
    if target == "confirm":
        return [p for p in every if p.is_dir() and p.name == "confirm"]
    return files


def _perturb_json(path: Path, op: dict) -> None:
    """Set (or drop) one key of a real JSON document, or of one JSON line, where the reader looks for it."""
    text = path.read_text(errors="replace")
    jsonl = path.name == "result.json"
    docs = text.splitlines() if jsonl else [text]
    if not docs:
        return
    i = op["index"] % len(docs)
    try:
        doc = json.loads(docs[i])
    except ValueError:
        return
    if not isinstance(doc, dict):
        return
    where = doc
    for nest in ("config", "raw", "target"):  # one level down, where the key lives there
        if isinstance(doc.get(nest), dict) and op["key"] in doc[nest] and op["frac"] < 0.5:
            where = doc[nest]
    if op["drop"]:
        where.pop(op["key"], None)
    else:
        where[op["key"]] = op["value"]
    docs[i] = json.dumps(doc)
    path.write_text("\n".join(docs) + "\n")


def _junk_into(d: Path, op: dict) -> None:
    names = ["run_trial_junk_99_x", "junk", "confirm", "experiment_state-9999.json", "params.json", "export"]
    j = d / names[op["index"] % len(names)]
    if j.is_file():
        j.unlink()
    j.mkdir(exist_ok=True)
    data = bytes.fromhex(op["data"])
    choice = op["index"] % 4
    if choice == 0:
        (j / "result.json").write_text("\n".join(json.dumps(v) for v in op["lines"]))
    elif choice == 1:
        (j / "params.json").write_bytes(data)
    elif choice == 2:
        (j / "result.json").mkdir(exist_ok=True)  # a folder where a file belongs
    else:
        (j / "sparsesearch.json").write_text(json.dumps(op["value"]))


def _short(path: Path, exp: Path) -> str:
    """A path inside the experiment, trial folders by their id and number (their names run to 150 characters)."""
    try:
        parts = path.relative_to(exp).parts
    except ValueError:
        return path.name
    return "/".join("_".join(p.split("_")[:4]) + "..." if p.startswith("run_trial_") else p for p in parts) or "."


def apply_ops(exp: Path, ops: list[dict], log: list[str] | None = None) -> Path:  # noqa: C901  (a branch per kind of damage)
    """Mutate the experiment copy ``exp`` in place; returns the path to read (which some mutations change).
    ``log`` gets what each mutation did, in words."""
    log = [] if log is None else log
    read = exp
    for op in ops:
        data = bytes.fromhex(op["data"])
        if op["target"] == "root":
            action = ROOT_ACTIONS[op["index"] % len(ROOT_ACTIONS)]
            if action == "missing":
                read = exp.parent / "no_such_experiment"
            elif action == "as_file":
                read = exp.parent / "a_file"
                read.write_bytes(data)
            elif action == "empty":
                read = exp.parent / "empty_dir"
                read.mkdir(exist_ok=True)
            elif action in ("storage", "two"):
                read = exp.parent
                if action == "two" and exp.is_dir():
                    shutil.copytree(exp, exp.parent / "fuzz_copy", dirs_exist_ok=True)
            elif exp.is_dir():
                _junk_into(exp, op)
            log.append(
                f"read {read.name}" if action != "junk" else f"junk folder added ({op['index'] % 6}, {op['index'] % 4})"
            )
            continue
        found = _candidates(exp, op["target"])
        if not found:
            continue
        path = found[op["index"] % len(found)]
        if not path.exists():
            continue
        where = _short(path, exp)
        if path.is_dir():
            action = DIR_ACTIONS[FILE_ACTIONS.index(op["action"]) % 4] if op["action"] in FILE_ACTIONS else op["action"]
            action = action if action in DIR_ACTIONS else "delete"
            log.append(f"{where}/: {action}" + (f" ({data!r})" if action == "to_file" else ""))
            if action == "delete":
                shutil.rmtree(path)
            elif action == "to_file":
                shutil.rmtree(path)
                path.write_bytes(data)
            elif action == "junk":
                _junk_into(path, op)
            else:
                for child in path.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            continue
        action = op["action"] if op["action"] in FILE_ACTIONS else FILE_ACTIONS[op["index"] % len(FILE_ACTIONS)]
        size = path.stat().st_size
        at = int(op["frac"] * size)
        words = {
            "truncate": f"truncated to {at} of {size} bytes",
            "flip": f"bytes at {at} of {size} replaced by {data or b'x00'!r}",
            "garbage": f"replaced by {data!r}",
            "json": "replaced by JSON "
            + (" / ".join(map(json.dumps, op["lines"])) if path.name == "result.json" else json.dumps(op["value"])),
            "perturb": f"line {op['index']} (mod lines): {op['key']} "
            + ("deleted" if op["drop"] else f":= {json.dumps(op['value'])}"),
            "append": f"{data!r} appended",
        }
        log.append(f"{where}: {words.get(action, action)}")
        if action == "delete":
            path.unlink()
        elif action == "truncate":
            with path.open("r+b") as f:
                f.truncate(at)
        elif action == "flip":
            with path.open("r+b") as f:
                f.seek(min(at, size))
                f.write(data or b"\x00")
        elif action == "garbage":
            path.write_bytes(data)
        elif action == "empty":
            path.write_bytes(b"")
        elif action == "json":
            lines = op["lines"] if path.name == "result.json" else [op["value"]]
            path.write_text("\n".join(json.dumps(v) for v in lines) + "\n")
        elif action == "perturb":
            _perturb_json(path, op)
        elif action == "to_dir":
            path.unlink()
            path.mkdir()
        else:
            with path.open("ab") as f:
                f.write(data)
    return read


READER_CHECKS = ("load_results", "export", "report")


def judge_reader(
    experiment: Path, ops: list[dict], scratch: Path, checks=READER_CHECKS, log: list[str] | None = None
) -> dict[str, Outcome]:
    """Each check's outcome on a fresh copy of ``experiment`` mutated by ``ops`` (``log``: what they did)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    exp = scratch / experiment.name
    shutil.copytree(experiment, exp, symlinks=True)
    try:
        read = apply_ops(exp, ops, log)
    except OSError as e:  # a mutation the file system refused: the case does not exist
        return {c: Outcome("ok", detail=f"mutation failed: {e}") for c in checks}
    out = {}
    with memory_cap():
        for check in checks:
            if check == "load_results":
                out[check] = judge_load_results(read)
            else:
                out[check] = judge_cli([check, str(read)])
    return out


def _reader_candidates(ops: list[dict]) -> Iterator[list[dict]]:
    for i in range(len(ops)):
        yield ops[:i] + ops[i + 1 :]
    for i, op in enumerate(ops):
        for v in _simpler(op["value"]):
            yield [*ops[:i], {**op, "value": v}, *ops[i + 1 :]]
        if op["lines"]:
            yield [*ops[:i], {**op, "lines": op["lines"][:-1]}, *ops[i + 1 :]]
        if len(op["data"]) > 2:
            yield [*ops[:i], {**op, "data": op["data"][: len(op["data"]) // 4 * 2]}, *ops[i + 1 :]]


def describe_ops(experiment: Path, ops: list[dict], scratch: Path) -> str:
    """What the mutations do to ``experiment``, in words (applied to a scratch copy)."""
    log: list[str] = []
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    with contextlib.suppress(OSError):
        apply_ops(shutil.copytree(experiment, scratch / experiment.name, symlinks=True), ops, log)
    return "; ".join(log) or "nothing (no file matched)"


def reader_reproduction(ops: list[dict], check: str, workdir: Path | None = None) -> str:
    """The command that applies ``ops`` to a copy of the cached experiment and runs ``check`` with its traceback."""
    where = f"--workdir {shlex.quote(str(workdir))} " if workdir else ""
    ops_json = json.dumps(ops, separators=(",", ":"))
    return f"python benchmarks/fuzz.py {where}--replay-reader {shlex.quote(ops_json)} --check {check}"


# ----- the long run ----------------------------------------------------------------------------------------------
