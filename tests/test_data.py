"""Data: masking statistics and determinism, disjoint held-out split, cache, local sources, package-docs."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from helpers import ROOT
from packaging.utils import canonicalize_name

import sparsesearch.data.corpus as corpus_mod
from sparsesearch.data.batches import (
    Batches,
    _in_heldout,
    corpus_fingerprint,
    describe_data,
    mask_tokens,
    prepare_data,
)
from sparsesearch.data.corpus import CorpusError, load_corpus, source_key
from sparsesearch.data.prose import prose_paragraphs
from sparsesearch.spec import DataSpec, ModelSpec


def _masking_stats(data, seed=0):
    ids = data.train
    g = torch.Generator().manual_seed(seed)
    inputs, labels = mask_tokens(ids, 0.15, data.tokenizer, g)
    return ids, inputs, labels


def test_masking_statistics_follow_bert(tiny_data):
    ids, inputs, labels = _masking_stats(tiny_data)
    info = tiny_data.tokenizer
    special = torch.isin(ids, torch.tensor(info.special_ids))
    selected = labels != -100
    assert not (selected & special).any(), "special tokens are never selected"
    assert torch.equal(labels[selected], ids[selected])
    rate = selected.sum().item() / (~special).sum().item()
    assert rate == pytest.approx(0.15, abs=0.01)
    n = selected.sum().item()
    as_mask = (inputs[selected] == info.mask_id).sum().item() / n
    unchanged = (inputs[selected] == ids[selected]).sum().item() / n
    assert as_mask == pytest.approx(0.8, abs=0.03)
    # 10% kept, plus the random replacements that happen to draw the original token (1/vocab of 10%).
    assert unchanged == pytest.approx(0.1 + 0.1 / info.vocab_size, abs=0.03)
    assert torch.equal(inputs[~selected], ids[~selected]), "unselected tokens are untouched"


def test_masking_is_deterministic_by_seed(tiny_data):
    _, a_in, a_lab = _masking_stats(tiny_data, seed=1)
    _, b_in, b_lab = _masking_stats(tiny_data, seed=1)
    _, c_in, _ = _masking_stats(tiny_data, seed=2)
    assert torch.equal(a_in, b_in) and torch.equal(a_lab, b_lab)
    assert not torch.equal(a_in, c_in)


def test_batches_are_pure_functions_of_step_and_seed(tiny_data):
    b1 = Batches(tiny_data, batch_size=8, mask_prob=0.15, seed=3, eval_sequences=16)
    b2 = Batches(tiny_data, batch_size=8, mask_prob=0.15, seed=3, eval_sequences=16)
    late = b1.train_batch(57)
    assert torch.equal(b2.train_batch(57)[0], late[0])
    assert torch.equal(b2.train_batch(0)[1], b1.train_batch(0)[1])
    other = Batches(tiny_data, batch_size=8, mask_prob=0.15, seed=4, eval_sequences=16)
    assert not torch.equal(other.train_batch(0)[0], b1.train_batch(0)[0])


def test_eval_set_is_fixed_whatever_the_seed_and_batch_size(tiny_data):
    a = Batches(tiny_data, batch_size=8, mask_prob=0.15, seed=0, eval_sequences=16)
    b = Batches(tiny_data, batch_size=5, mask_prob=0.15, seed=9, eval_sequences=16)
    assert torch.equal(a.eval_inputs, b.eval_inputs) and torch.equal(a.eval_labels, b.eval_labels)
    assert torch.equal(torch.cat([x for x, _ in b.eval_chunks()]), b.eval_inputs)


def test_epoch_visits_every_sequence_once(tiny_data):
    b = Batches(tiny_data, batch_size=8, mask_prob=0.15, seed=0, eval_sequences=8)
    seen = torch.cat(
        [b._perm[torch.arange(k * 8, (k + 1) * 8)] for k in range(b.steps_per_epoch) if b.train_batch(k) is not None]
    )
    assert len(set(seen.tolist())) == len(seen) == b.steps_per_epoch * 8


def test_split_is_disjoint_by_document_and_by_sequence(tiny_spec, tiny_data):
    docs = load_corpus(tiny_spec.data.source).documents
    from sparsesearch.data.batches import _in_heldout

    held = {d for d in docs if _in_heldout(d, tiny_spec.data.heldout_fraction)}
    train = set(docs) - held
    assert held and train and not (held & train)
    assert tiny_data.stats["heldout_documents"] == len(held)
    train_rows = {tuple(r) for r in tiny_data.train.tolist()}
    assert not any(tuple(r) in train_rows for r in tiny_data.heldout.tolist())


def test_split_of_real_corpus_is_disjoint():
    from sparsesearch.data.batches import _in_heldout

    docs = load_corpus("python-docs", max_documents=500).documents
    assert len(set(docs)) == len(docs), "documents are de-duplicated"
    held = [d for d in docs if _in_heldout(d, 0.05)]
    assert 0.02 < len(held) / len(docs) < 0.09


def test_sequences_are_packed_with_cls_and_sep(tiny_data):
    info = tiny_data.tokenizer
    assert (tiny_data.train[:, 0] == info.cls_id).all() and (tiny_data.train[:, -1] == info.sep_id).all()
    assert not (tiny_data.train == info.pad_id).any()


def test_cache_is_reused_and_keyed_by_seq_len(tiny_spec, tiny_data, private_cache, monkeypatch):
    import sparsesearch.data.batches as data_mod

    monkeypatch.setattr(data_mod, "load_corpus", lambda *a, **k: pytest.fail("cache miss"))
    again = prepare_data(tiny_spec.data, tiny_spec.model)
    assert again.fingerprint == tiny_data.fingerprint and torch.equal(again.train, tiny_data.train)
    monkeypatch.undo()
    longer = prepare_data(tiny_spec.data, dataclasses.replace(tiny_spec.model, seq_len=48))
    assert longer.fingerprint != tiny_data.fingerprint and longer.seq_len == 48


def test_the_corpus_fingerprint_follows_the_token_ids_not_the_path(tiny_spec, tiny_data, tiny_corpus, tmp_path):
    """The same text elsewhere (another machine's path, another cache) has the same fingerprint; one paragraph
    less does not."""
    assert tiny_data.fingerprint == corpus_fingerprint(tiny_data.train, tiny_data.heldout)
    assert len(tiny_data.fingerprint) == 16 and tiny_data.stats["fingerprint"] == tiny_data.fingerprint
    copy = tmp_path / "elsewhere" / "tiny.txt"
    copy.parent.mkdir()
    copy.write_text(tiny_corpus.read_text())
    moved = prepare_data(dataclasses.replace(tiny_spec.data, source=str(copy)), tiny_spec.model)
    assert moved.cache_key != tiny_data.cache_key and moved.fingerprint == tiny_data.fingerprint
    copy.write_text(tiny_corpus.read_text().split("\n\n", 1)[1])
    changed = prepare_data(dataclasses.replace(tiny_spec.data, source=str(copy)), tiny_spec.model, use_cache=False)
    assert changed.fingerprint != tiny_data.fingerprint
    assert f"corpus fingerprint {tiny_data.fingerprint}" in describe_data(tiny_data.stats)


def test_local_json_jsonl_and_parquet_sources(tmp_path):
    texts = [f"document number {i} with some words" for i in range(5)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": t}) for t in texts[:2]))
    (tmp_path / "b.json").write_text(json.dumps([{"body": t} for t in texts[2:4]]))
    pd.DataFrame({"body": texts[4:]}).to_parquet(tmp_path / "c.parquet")
    corpus = load_corpus(str(tmp_path), text_field="body")
    assert sorted(corpus.documents) == sorted(texts)


@pytest.mark.parametrize(
    "source,field,message",
    [
        ("/no/such/file.txt", "text", "does not exist"),
        ("{dir}/x.csv", "text", "must end in one of"),
        ("{dir}/a.jsonl", "missing", "data.text_field: record 0"),
    ],
)
def test_bad_sources_name_the_field(tmp_path, source, field, message):
    (tmp_path / "x.csv").write_text("a,b\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello there"}) + "\n")
    with pytest.raises(CorpusError) as e:
        load_corpus(source.format(dir=tmp_path), text_field=field)
    assert message in str(e.value) and str(e.value).startswith("data.")


# --- package-docs: the larger built-in corpus (documentation of the installed dependencies) -----------------------
ALPHA_README = """# Alpha

![build](https://example.org/badge.svg)

Alpha reads configuration files written by people and turns them into typed settings objects that programs
can trust, with an error message that names the file, the line and the key whenever something is wrong.

## Installation

```bash
pip install alpha-lib
```
"""

ALPHA_INIT = '''"""Alpha is a small library that reads configuration files and turns them into typed settings for us.

Parameters
----------
path : str
    The location of the configuration file that should be read from the disk.

Examples
--------
>>> load("settings.toml")
Settings(debug=False)
"""


def load(path):
    """Read the configuration file at the given path and return the settings it describes, checked for errors.

    Every key of the file must be known to the schema, otherwise an error names the first unknown key found.

    .. code-block:: python

        settings = load("a.toml")
    """
'''

ALPHA_GUIDE = """Guide
=====

The :class:`~alpha.Settings` object keeps every value of the file together with the place it came from, so
that a program can tell its users which line of which file set a surprising value, see `the manual
<https://example.org/manual>`_ for more.

=====  =======
key    meaning
=====  =======
debug  verbose
=====  =======
"""

BETA_INIT = '''"""Beta schedules small jobs on a pool of worker threads and reports when each of them finishes or fails.

Every key of the file must be known to the schema, otherwise an error names the first unknown key found.

Args:
    workers (`int`, *optional*, defaults to 4):
        How many threads run jobs at the same time; the others wait in a queue in the order they came.
"""


def run():
    pass


add_docstr(
    run,
    r"""
    Run every queued job and wait until the last of them has finished or failed, however long that takes.

    The jobs run in the order they were queued; a failed job does not stop the others, and its error is kept.
    """,
)
'''

EXPECTED_PACKAGE_DOCS = (
    "Alpha reads configuration files written by people and turns them into typed settings objects that programs "
    "can trust, with an error message that names the file, the line and the key whenever something is wrong.",
    "Alpha is a small library that reads configuration files and turns them into typed settings for us.\n\n"
    "The location of the configuration file that should be read from the disk.",
    "Read the configuration file at the given path and return the settings it describes, checked for errors.\n\n"
    "Every key of the file must be known to the schema, otherwise an error names the first unknown key found.",
    "The Settings object keeps every value of the file together with the place it came from, so that a program "
    "can tell its users which line of which file set a surprising value, see the manual for more.",
    "Beta schedules small jobs on a pool of worker threads and reports when each of them finishes or fails.\n\n"
    "How many threads run jobs at the same time; the others wait in a queue in the order they came.",
    "Run every queued job and wait until the last of them has finished or failed, however long that takes.\n\n"
    "The jobs run in the order they were queued; a failed job does not stop the others, and its error is kept.",
)


def _fake_distribution(site, name, version, requires=(), files=None, description=""):
    """An installed distribution in ``site``: its .dist-info (METADATA, RECORD) and its files."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    header = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    header += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(header) + "\n\n" + description)
    for rel, text in (files or {}).items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in [*(files or {}), f"{info.name}/METADATA"]))


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    """A site-packages of fake distributions; the pins name alpha-lib and beta at their installed versions.
    gamma (required by Alpha_Lib's metadata), delta and unrelated are installed too, and never read."""
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(
        site,
        "Alpha_Lib",
        "1.0",
        ["beta", "gamma", 'delta ; extra == "slow"'],
        {
            "alpha_lib/__init__.py": ALPHA_INIT,
            "alpha_lib/guide.rst": ALPHA_GUIDE,
            "alpha_lib/LICENSE.md": "Permission is hereby granted, free of charge, to any person obtaining a copy "
            "of this software and associated documentation files, to deal in the Software without restriction.",
            "alpha_lib/data.txt": "not documentation",
            "alpha_lib/tests/test_alpha.py": f'"""{"A test docstring that package-docs never reads. " * 6}"""\n',
        },
        ALPHA_README,
    )
    _fake_distribution(site, "beta", "2.0", [], {"beta/__init__.py": BETA_INIT})
    for name in ("gamma", "delta", "unrelated"):
        prose = f"The {name} package should never be read, because the pinned list does not name it. " * 3
        _fake_distribution(site, name, "1.0", [], {f"{name}/__init__.py": f'"""{prose}"""\n'})
    pins = tmp_path / "package_docs.txt"
    pins.write_text("# the fake pins\nalpha-lib==1.0\nbeta == 2.0  # spaces and comments are fine\n")
    monkeypatch.setattr(corpus_mod, "PACKAGE_DOCS_PINS", pins)
    monkeypatch.setattr(corpus_mod, "_DOCS_PATH", [str(site)])
    return site


def _package_docs_key(max_documents=None):
    return source_key("package-docs", config=None, split="train", text_field="text", max_documents=max_documents)


def test_package_docs_read_the_pinned_distributions_only(fake_site):
    dists, differences = corpus_mod._doc_distributions()
    assert [d.name for d in dists] == ["Alpha_Lib", "beta"] and differences == []


def test_package_docs_name_every_difference_from_the_pins(fake_site):
    pins = corpus_mod.PACKAGE_DOCS_PINS
    pins.write_text("alpha-lib==1.0\nbeta==2.5\nmissing-package==1.0\n")
    dists, differences = corpus_mod._doc_distributions()
    assert [d.name for d in dists] == ["Alpha_Lib", "beta"]  # what is there is read all the same
    assert differences == ["beta 2.0 (pinned 2.5)", "missing-package not installed"]
    desc = load_corpus("package-docs").description
    assert "NOT the pinned corpus: beta 2.0 (pinned 2.5), missing-package not installed" in desc
    pins.write_text("alpha-lib 1.0\n")
    with pytest.raises(CorpusError, match="is not NAME==VERSION"):
        corpus_mod.pinned_distributions()


def test_the_readme_setup_installs_exactly_the_pinned_corpus():
    """package_docs.txt and the set-up's constraints.txt pin the same versions (one cannot drift from the other),
    and this environment, set up by the README, holds exactly the pinned corpus."""
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            constraints[canonicalize_name(name)] = version.strip()
    pins = corpus_mod.pinned_distributions()
    assert len(pins) >= 50
    assert {canonicalize_name(n): v for n, v in pins}.items() <= constraints.items()
    assert corpus_mod._doc_distributions()[1] == []


def test_package_docs_keep_new_prose_in_a_fixed_order(fake_site):
    corpus = load_corpus("package-docs")
    assert corpus.documents == EXPECTED_PACKAGE_DOCS
    assert corpus.description.startswith("package-docs (documentation of 2 pinned distributions")
    assert load_corpus("package-docs").documents == corpus.documents
    assert load_corpus("package-docs", max_documents=3).documents == EXPECTED_PACKAGE_DOCS[:3]
    assert "gamma" not in " ".join(corpus.documents)


def test_package_docs_cache_key_follows_versions_and_read_files(fake_site):
    key = _package_docs_key()
    assert _package_docs_key() == key and _package_docs_key(max_documents=3) != key
    (fake_site / "alpha_lib/data.txt").write_text("a data file that package-docs does not read")
    (fake_site / "unrelated/__init__.py").write_text('"""Changed, but not pinned."""\n')
    assert _package_docs_key() == key
    (fake_site / "beta/__init__.py").write_text(BETA_INIT + "\n\ndef stop():\n    pass\n")
    changed_file = _package_docs_key()
    assert changed_file != key
    _fake_distribution(fake_site, "beta", "2.1", [], {"beta/__init__.py": BETA_INIT + "\n\ndef stop():\n    pass\n"})
    (fake_site / "beta-2.0.dist-info" / "METADATA").unlink()
    (fake_site / "beta-2.0.dist-info" / "RECORD").unlink()
    (fake_site / "beta-2.0.dist-info").rmdir()
    assert [d.version for d in corpus_mod._doc_distributions()[0]] == ["1.0", "2.1"]
    assert _package_docs_key() not in (key, changed_file)


@pytest.mark.parametrize(
    "text,expected",
    [
        (ALPHA_INIT.split('"""')[1], [EXPECTED_PACKAGE_DOCS[1].replace("\n\n", "\n")]),
        (ALPHA_GUIDE, [EXPECTED_PACKAGE_DOCS[3]]),
        (
            "So G.edges[u, v]['color'] gives the color of the edge, see [the docs](https://x.org/a) or [a guide][g].",
            ["So G.edges[u, v]['color'] gives the color of the edge, see the docs or a guide."],
        ),
        (
            "Returns:\n"
            "  A dictionary mapping proto names to the message classes. This will include\n"
            "  any dependent messages as well as the messages defined in the same file.\n"
            "Raises:\n"
            "  KeyError: if a proto names a message type that none of the files defines.\n",
            [
                "A dictionary mapping proto names to the message classes. This will include any dependent messages "
                "as well as the messages defined in the same file.",
                "if a proto names a message type that none of the files defines.",
            ],
        ),
        (
            "n_group (`int`, *optional*, defaults to 1):\n"
            "    Number of groups that the routed experts are divided into before the top groups are chosen.\n"
            "top_k (`int`):\n"
            "    How many experts every token is sent to, chosen among the groups that were kept.\n",
            [
                "Number of groups that the routed experts are divided into before the top groups are chosen.",
                "How many experts every token is sent to, chosen among the groups that were kept.",
            ],
        ),
        (
            ":param path: the location of the file that is read, relative to the working directory.\n"
            ":type path: str\n\n"
            ".. note:: Relative paths are resolved once, when the settings object is created.\n\n"
            "Example::\n\n    load('x')\n\n"
            "| a | b |\n|---|---|\n\n.. [1] A cited paper, pages one to ten, in some proceedings.\n",
            [
                "the location of the file that is read, relative to the working directory.",
                "Relative paths are resolved once, when the settings object is created.",
            ],
        ),
    ],
)
def test_prose_paragraphs_drop_code_tables_and_markup(text, expected):
    assert prose_paragraphs(text) == [p for e in expected for p in e.split("\n")]


def test_package_docs_of_the_real_installation_are_prose_and_deterministic():
    docs = load_corpus("package-docs", max_documents=150).documents
    assert docs == load_corpus("package-docs", max_documents=150).documents
    assert len(docs) == 150 and len(set(docs)) == len(docs)
    assert all(len(d.split()) >= 30 for d in docs)
    lines = [ln for d in docs for ln in d.splitlines()]
    assert not any(ln.startswith((">>>", "```", ".. ", ":param")) for ln in lines)


def test_package_docs_split_is_disjoint():
    data = DataSpec(source="package-docs", max_documents=400)
    prepared = prepare_data(data, ModelSpec(seq_len=64), use_cache=False)
    docs = load_corpus("package-docs", max_documents=400).documents
    held = {d for d in docs if _in_heldout(d, data.heldout_fraction)}
    train = set(docs) - held
    assert held and train and len(held) + len(train) == len(docs) == 400
    assert (prepared.stats["heldout_documents"], prepared.stats["train_documents"]) == (len(held), len(train))
    train_rows = {tuple(r) for r in prepared.train.tolist()}
    assert not any(tuple(r) in train_rows for r in prepared.heldout.tolist())
