"""Data: masking statistics and determinism, disjoint held-out split, cache, local sources."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from sparsesearch.data.batches import Batches, mask_tokens, prepare_data
from sparsesearch.data.corpus import CorpusError, load_corpus


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
