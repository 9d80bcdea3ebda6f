"""Text sources: the built-in offline corpus, local files, and `datasets` names -> a list of documents.

The built-in corpus ``python-docs`` is real English prose that every Python installation carries: the reference
documentation topics of ``pydoc_data`` and the docstrings of the standard library, read with ``ast`` (nothing is
imported or executed). Interactive examples (``>>>`` lines) are dropped. Documents are de-duplicated.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN_SOURCES = ("python-docs",)
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


def _python_docs() -> list[str]:
    docs: list[str] = []
    from pydoc_data.topics import topics

    for key in sorted(topics):
        docs.append(topics[key])
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
                    docs.append(doc)
    return docs


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
        raw = _python_docs()
        desc = f"python-docs (Python {sys.version.split()[0]} reference topics and stdlib docstrings)"
        docs = [d for d in (_clean(t) for t in raw) if len(d.split()) >= _MIN_WORDS]
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

    Built-in: the Python version. Local files: every file's path, size and modification time. datasets: name,
    config and split (the datasets library caches by these too)."""
    ident: list[Any]
    if source == "python-docs":
        ident = ["python-docs", sys.version, sysconfig.get_paths()["stdlib"]]
    elif Path(source).expanduser().exists():
        ident = [
            [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in _local_files(Path(source).expanduser())
        ]
    else:
        ident = ["datasets", source, config, split]
    return json.dumps([ident, text_field, max_documents, _MIN_WORDS])
