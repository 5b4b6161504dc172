"""Packing and the validation/train split: deterministic, EOS-separated, BOS-first."""

from __future__ import annotations

import json

import pytest
import torch

from lorasae.model import data


def _docs(n=50):
    return [f"document {i}: " + "abc " * (i % 7 + 1) for i in range(n)]


def test_pack_chunks_layout(char_tokenizer):
    chunks = list(data.pack_chunks(_docs(), char_tokenizer, ctx_len=16))
    assert all(c.shape == (16,) for c in chunks)
    assert all(c[0].item() == char_tokenizer.bos_token_id for c in chunks)
    stream = torch.cat([c[1:] for c in chunks]).tolist()
    expected = []
    for doc in _docs():
        expected += char_tokenizer(doc, add_special_tokens=False)["input_ids"] + [char_tokenizer.eos_token_id]
    assert stream == expected[: len(stream)]
    assert len(expected) - len(stream) < 15  # only the incomplete tail is dropped


def test_pack_without_bos(char_tokenizer):
    chunks = list(data.pack_chunks(_docs(), char_tokenizer, ctx_len=16, prepend_bos=False))
    assert char_tokenizer.bos_token_id not in torch.stack(chunks).tolist()[0]


def _write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))


def test_split_is_deterministic_and_disjoint(tmp_path, char_tokenizer):
    src = tmp_path / "corpus.jsonl"
    _write_jsonl(src, _docs(400))
    a = data.load_token_split(str(src), char_tokenizer, ctx_len=32, num_val_tokens=200)
    b = data.load_token_split(str(src), char_tokenizer, ctx_len=32, num_val_tokens=200)
    assert a.val.shape == (7, 32)
    assert torch.equal(a.val, b.val)
    train_a = torch.stack([next(iter_) for iter_ in [a.train_chunks()] for _ in range(5)])
    train_b = next(b.train_batches(5))
    assert torch.equal(train_a, train_b)
    all_chunks = list(data.pack_chunks(data.load_texts(str(src)), char_tokenizer, 32))
    assert torch.equal(train_a[0], all_chunks[7])  # train starts right after validation


class CountingTokenizer:
    """`char_tokenizer` counting its calls (one per batch of documents `pack_chunks` tokenizes)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)


def test_training_continues_the_stream_the_validation_chunks_were_packed_from(tmp_path, char_tokenizer):
    """The first `train_chunks` does not pack the validation chunks again (issue 30: the error SAEs'
    ~2,600 validation chunks were packed twice per run); a second call streams the same chunks anew."""
    src = tmp_path / "corpus.jsonl"
    _write_jsonl(src, _docs(400))
    counting = CountingTokenizer(char_tokenizer)
    split = data.load_token_split(str(src), counting, ctx_len=32, num_val_tokens=200)
    first = split.train_chunks()
    continued = torch.stack([next(first) for _ in range(5)])
    assert counting.calls == 1  # one batch of 64 documents holds the 7 validation and 5 training chunks
    again = split.train_chunks()
    assert torch.equal(torch.stack([next(again) for _ in range(5)]), continued) and counting.calls == 2
    all_chunks = list(data.pack_chunks(data.load_texts(str(src)), char_tokenizer, 32))
    assert torch.equal(continued, torch.stack(all_chunks[7:12]))


def test_resume_position(tmp_path, char_tokenizer):
    src = tmp_path / "corpus.jsonl"
    _write_jsonl(src, _docs(400))
    split = data.load_token_split(str(src), char_tokenizer, ctx_len=32, num_val_tokens=64)
    it = split.train_chunks()
    first = [next(it) for _ in range(6)]
    resumed = split.train_chunks(skip=4)
    assert torch.equal(next(resumed), first[4])


def test_cycles_with_warning(tmp_path, char_tokenizer):
    src = tmp_path / "corpus.txt"
    src.write_text("\n\n".join(_docs(20)))
    split = data.load_token_split(str(src), char_tokenizer, ctx_len=16, num_val_tokens=16)
    n = sum(1 for _ in data.pack_chunks(data.load_texts(str(src)), char_tokenizer, 16)) - 1
    it = split.train_chunks()
    first = [next(it) for _ in range(n)]
    with pytest.warns(UserWarning, match="exhausted"):
        again = next(it)
    assert torch.equal(again, first[0])


def test_local_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "a.txt").write_text("one\nline\n\ntwo\n")
    _write_jsonl(folder / "b.jsonl", ["three"])
    pq.write_table(pa.table({"text": ["four", "five"]}), folder / "c.parquet")
    assert list(data.load_texts(str(folder))) == ["one\nline", "two", "three", "four", "five"]


def test_bad_sources(tmp_path, char_tokenizer):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(data.load_texts(str(tmp_path / "missing.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2 is not valid JSON"):
        list(data.load_texts(str(bad)))
    small = tmp_path / "small.txt"
    small.write_text("tiny")
    with pytest.raises(ValueError, match="needs at least 128 tokens"):  # the real minimum, not "lower ..."
        data.load_token_split(str(small), char_tokenizer, ctx_len=64, num_val_tokens=1000)
