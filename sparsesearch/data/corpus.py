"""Text sources: the built-in offline corpora, local files, and `datasets` names -> a list of documents.

The built-in corpus ``python-docs`` is real English prose that every Python installation carries: the reference
documentation topics of ``pydoc_data`` and the docstrings of the standard library, read with ``ast`` (nothing is
imported or executed). Interactive examples (``>>>`` lines) are dropped. Documents are de-duplicated.

The built-in corpus ``package-docs`` is the larger one for long runs: the documentation of a fixed list of
distributions at exact versions (``package_docs.txt`` beside this module; the README's set-up installs exactly those
versions through ``constraints.txt``), so that it is the same bytes on every machine set up that way, whatever else
is installed and whichever Python runs it. It reads docstrings and documentation strings of their Python files (with
``ast``, never imported), their ``.rst``/``.md`` pages and their long descriptions, and keeps prose only: doctests,
code and literal blocks, tables, parameter names and types, reference and example sections, and reST/Markdown markup
are dropped; paragraphs repeated anywhere earlier (docstrings repeat a lot across packages) are dropped; documents
keep their first occurrence, in a fixed order (distributions as listed, files by path). A listed distribution that is
missing or installed at another version is named in the corpus description (the corpus fingerprint then differs).
"""

from __future__ import annotations

import ast
import email
import hashlib
import inspect
import itertools
import json
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .prose import prose_paragraphs

BUILTIN_SOURCES = ("python-docs", "package-docs")
LOCAL_SUFFIXES = (".txt", ".json", ".jsonl", ".parquet")
_MIN_WORDS = 30  # shorter docstrings are mostly one-line summaries, not prose
_SKIP_STDLIB_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo"}


class CorpusError(ValueError):
    """The configured corpus cannot be read."""


@dataclass(frozen=True)
class Corpus:
    """The documents of a source, cleaned and de-duplicated, and where they came from."""

    documents: tuple[str, ...]
    description: str


def _clean(text: str) -> str:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith((">>>", "... "))]
    return re.sub(r"[ \t]+", " ", "\n".join(lines)).strip()


def _python_docs() -> Iterator[str]:
    """The reference topics of ``pydoc_data``, then the standard library's docstrings, file by file (lazily)."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield topics[key]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if _SKIP_STDLIB_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


# --- package-docs --------------------------------------------------------------------------------------------------

PACKAGE_DOCS_RULES = 3  # bump whenever the extraction or cleaning below changes: it is part of the cache key
PACKAGE_DOCS_PINS = Path(__file__).with_name("package_docs.txt")  # the distributions package-docs reads
_DOCS_PATH: list[str] | None = None  # where distributions are looked up (None: sys.path)
_SKIP_PACKAGE_DIRS = {"test", "tests", "testing", "_vendor", "vendor", "_vendored", "vendored", "externals"}
_SKIP_PAGES = re.compile(r"(licen[cs]e|copying|notice|authors|contributors|changelog|changes|history|news)", re.I)
_PAGE_SUFFIXES = (".rst", ".md")


def _call_name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


_STATEMENT_NODES = (ast.stmt, ast.excepthandler, ast.match_case)


def _doc_call_strings(call: ast.expr) -> Iterator[str]:
    """The long string arguments of a call to a documentation helper (torch's ``add_docstr``, numpy's
    ``add_newdoc``, ...: any call whose name contains "doc"), ``.format()`` templates included."""
    if not (isinstance(call, ast.Call) and "doc" in _call_name(call.func).lower()):
        return
    for arg in call.args:
        for value in arg.elts if isinstance(arg, ast.Tuple) else [arg]:
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
                value = value.func.value  # r"""...""".format(**common_args)
            if isinstance(value, ast.Constant) and isinstance(value.value, str) and len(value.value) > 100:
                yield inspect.cleandoc(value.value)


def _doc_strings(tree: ast.Module) -> Iterator[str]:
    """The docstrings of a module and of its classes and functions, and the strings its statements hand to
    documentation helpers, in source order. Only statements are visited, not expressions."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield doc
        elif isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)) and node.value is not None:
            yield from _doc_call_strings(node.value)
        children = [c for c in ast.iter_child_nodes(node) if isinstance(c, _STATEMENT_NODES)]
        stack.extend(reversed(children))


def pinned_distributions(path: Path | None = None) -> list[tuple[str, str]]:
    """The (name, version) pairs that package-docs reads, in reading order (``package_docs.txt``)."""
    pins = []
    for line in (path or PACKAGE_DOCS_PINS).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep or not name.strip() or not version.strip():
                raise CorpusError(f"data.source: {path or PACKAGE_DOCS_PINS}: {line!r} is not NAME==VERSION")
            pins.append((name.strip(), version.strip()))
    return pins


def _doc_distributions() -> tuple[list[metadata.Distribution], list[str]]:
    """The installed distributions of the pinned list, in its order, and how the installation differs from the
    pins (a distribution missing, or at another version: it is read all the same)."""
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions() if _DOCS_PATH is None else metadata.distributions(path=_DOCS_PATH):
        if dist.name:
            found.setdefault(canonicalize_name(dist.name), dist)  # the first on the path, as import would
    dists: list[metadata.Distribution] = []
    differences: list[str] = []
    for name, version in pinned_distributions():
        installed = found.get(canonicalize_name(name))
        if installed is None:
            differences.append(f"{name} not installed")
            continue
        if installed.version != version:
            differences.append(f"{name} {installed.version} (pinned {version})")
        dists.append(installed)
    return dists, differences


def _doc_files(dist: metadata.Distribution) -> list[Path]:
    """The files of a distribution that package-docs reads: Python sources and reST/Markdown pages, by path,
    outside tests and vendored code."""
    files = []
    for f in sorted(dist.files or [], key=str):
        parts = f.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        if _SKIP_PACKAGE_DIRS.intersection(p.lower() for p in parts[:-1]):
            continue
        if f.suffix == ".py" or (f.suffix in _PAGE_SUFFIXES and not _SKIP_PAGES.match(f.name)):
            files.append(Path(str(dist.locate_file(f))))
    return files


def _long_description(dist: metadata.Distribution) -> str:
    """The distribution's long description (its README, in its metadata)."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    message = email.message_from_string(text)
    payload = message.get_payload()
    return payload if isinstance(payload, str) and payload.strip() else str(message.get("Description") or "")


def _distribution_texts(dist: metadata.Distribution) -> Iterator[str]:
    """The raw documentation texts of one distribution, in a fixed order."""
    yield _long_description(dist)
    for path in _doc_files(dist):
        try:
            if path.suffix == ".py":
                yield from _doc_strings(ast.parse(path.read_bytes()))
            else:
                yield path.read_text(encoding="utf-8")
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
            continue


def _package_docs(dists: Iterable[metadata.Distribution]) -> Iterator[str]:
    """Documents of prose, each distribution's in turn. A paragraph seen before anywhere is dropped; a document
    keeps at least ``_MIN_WORDS`` words of new paragraphs."""
    seen: set[bytes] = set()
    texts = itertools.chain.from_iterable(map(_distribution_texts, dists))
    for text in texts:
        if len(text.split()) < _MIN_WORDS:  # cleaning only removes words: this cannot make a document
            continue
        fresh = []
        for paragraph in prose_paragraphs(text):
            key = hashlib.sha1(re.sub(r"\W+", " ", paragraph.lower()).encode()).digest()
            if key not in seen:
                seen.add(key)
                fresh.append(paragraph)
        document = "\n\n".join(fresh)
        if len(document.split()) >= _MIN_WORDS:
            yield document


def _package_docs_key() -> list[Any]:
    """What package-docs' text depends on: the cleaning rules, and each distribution's name, version and the size
    and modification time of every file read."""
    idents = []
    for dist in _doc_distributions()[0]:
        digest = hashlib.sha256()
        for path in _doc_files(dist):
            try:
                st = path.stat()
            except OSError:
                continue
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        digest.update(_long_description(dist).encode())
        idents.append([dist.name, dist.version, digest.hexdigest()[:16]])
    return ["package-docs", PACKAGE_DOCS_RULES, idents]


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in LOCAL_SUFFIXES:
            raise CorpusError(f"data.source: {path} must end in one of {', '.join(LOCAL_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOCAL_SUFFIXES)
    if not files:
        raise CorpusError(f"data.source: directory {path} holds no {'/'.join(LOCAL_SUFFIXES)} files")
    return files


def _read_local(path: Path, text_field: str) -> list[str]:
    docs: list[str] = []
    for f in _local_files(path):
        try:
            if f.suffix == ".txt":
                # One document per paragraph (blank-line separated).
                docs.extend(re.split(r"\n\s*\n", f.read_text(encoding="utf-8")))
            elif f.suffix == ".parquet":
                import pandas as pd

                frame = pd.read_parquet(f)
                if text_field not in frame.columns:
                    raise CorpusError(
                        f"data.text_field: column {text_field!r} not in {f} "
                        f"(columns: {', '.join(map(str, frame.columns))})"
                    )
                docs.extend(str(t) for t in frame[text_field].dropna())
            else:
                text = f.read_text(encoding="utf-8")
                records = (
                    [json.loads(ln) for ln in text.splitlines() if ln.strip()]
                    if f.suffix == ".jsonl"
                    else json.loads(text)
                )
                if isinstance(records, dict):
                    records = [records]
                for i, rec in enumerate(records):
                    if not isinstance(rec, dict) or text_field not in rec:
                        raise CorpusError(f"data.text_field: record {i} of {f} has no field {text_field!r}")
                    docs.append(str(rec[text_field]))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorpusError(f"data.source: cannot read {f}: {type(e).__name__}: {e}") from None
    return docs


def _read_datasets(name: str, config: str | None, split: str, text_field: str) -> list[str]:
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CorpusError(
            f"data.source: cannot load dataset {name!r} (config={config!r}, split={split!r}): "
            f"{type(e).__name__}: {first}"
        ) from None
    if text_field not in ds.column_names:
        raise CorpusError(
            f"data.text_field: column {text_field!r} not in dataset {name!r} (columns: {', '.join(ds.column_names)})"
        )
    return [str(t) for t in ds[text_field] if t]


def load_corpus(
    source: str,
    *,
    config: str | None = None,
    split: str = "train",
    text_field: str = "text",
    max_documents: int | None = None,
) -> Corpus:
    """Read, clean and de-duplicate the documents of a source (see module docstring)."""
    if source == "python-docs":
        desc = f"python-docs (Python {sys.version.split()[0]} reference topics and stdlib docstrings)"
        docs = [d for d in (_clean(t) for t in _python_docs()) if len(d.split()) >= _MIN_WORDS]
    elif source == "package-docs":
        dists, differences = _doc_distributions()
        # Documents come out unique and in their final order, so reading can stop at max_documents.
        docs = list(itertools.islice(_package_docs(dists), max_documents))
        desc = f"package-docs (documentation of {len(dists)} pinned distributions, prose only)"
        if differences:
            shown = ", ".join(differences[:3]) + (f" and {len(differences) - 3} more" if len(differences) > 3 else "")
            desc += f"; NOT the pinned corpus: {shown} (install with -c constraints.txt)"
    else:
        path = Path(source).expanduser()
        if path.exists():
            raw = _read_local(path, text_field)
            desc = f"local files at {path}"
        elif source.startswith((".", "/", "~")) or Path(source).suffix in LOCAL_SUFFIXES:
            raise CorpusError(f"data.source: {source} does not exist")
        else:
            raw = _read_datasets(source, config, split, text_field)
            desc = f"datasets {source!r} config={config!r} split={split!r}"
        docs = [d for d in (t.strip() for t in raw) if d]
    seen: set[str] = set()
    unique = []
    for d in docs:
        key = hashlib.sha1(d.encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(d)
    if max_documents is not None:
        unique = unique[:max_documents]
    if len(unique) < 2:
        raise CorpusError(
            f"data.source: {source!r} yields {len(unique)} document(s); need at least 2 "
            f"(one for training, one held out)"
        )
    return Corpus(documents=tuple(unique), description=desc)


def source_key(source: str, *, config: str | None, split: str, text_field: str, max_documents: int | None) -> str:
    """A cheap identity of the corpus a source yields (no text read): the tokenized-data cache key.

    python-docs: the Python version. package-docs: the cleaning rules, and every pinned distribution's installed
    name, version and the size and modification time of each file read. Local files: every file's path, size and
    modification time. datasets: name, config and split (the datasets library caches by these too)."""
    ident: list[Any]
    if source == "python-docs":
        ident = ["python-docs", sys.version, sysconfig.get_paths()["stdlib"]]
    elif source == "package-docs":
        ident = _package_docs_key()
    elif Path(source).expanduser().exists():
        ident = [
            [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in _local_files(Path(source).expanduser())
        ]
    else:
        ident = ["datasets", source, config, split]
    return json.dumps([ident, text_field, max_documents, _MIN_WORDS])
