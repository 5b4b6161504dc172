"""The built-in world: corpus, tokenizer and the tiny model (small `for_tests` sizes, tmp roots)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorasae.world import (
    DOMAIN_KEYWORDS,
    DOMAINS,
    HELDOUT_FRACTION,
    PROFESSIONS,
    TinyWorldConfig,
    default_root,
    domain_documents,
    domain_texts,
    ensure_tiny_model,
    generate_corpus,
    iter_texts,
    quiz_facts,
    split_corpus,
    train_tokenizer,
)
from lorasae.world import corpus as corpus_mod
from lorasae.world import tiny_model as tiny_mod

N_DOCS = 800


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("world_root")
    return root, ensure_tiny_model(root, TinyWorldConfig.for_tests(), progress=False)


# --- corpus ---------------------------------------------------------------------------------------------
def test_corpus_is_deterministic_per_seed() -> None:
    first = generate_corpus(seed=0, n_docs=300)
    corpus_mod._corpus.cache_clear()
    corpus_mod.build_world.cache_clear()
    again = generate_corpus(seed=0, n_docs=300)
    assert first is not again and first == again
    other = generate_corpus(seed=1, n_docs=300)
    assert [d.text for d in other] != [d.text for d in first]
    assert list(iter_texts(0, 300)) == list(iter_texts(0, 300))


def test_every_domain_present_with_reasonable_counts() -> None:
    docs = generate_corpus(seed=0, n_docs=N_DOCS)
    counts = Counter(d.domain for d in docs)
    assert set(counts) == set(DOMAINS)
    labelled = sum(v for k, v in counts.items() if k != "prose")
    assert labelled == N_DOCS
    for domain in DOMAINS:
        assert counts[domain] >= 0.03 * N_DOCS, (domain, counts)
    chars = Counter()
    for d in docs:
        chars[d.domain] += len(d.text)
    assert chars["spelling"] < 0.05 * sum(chars.values())  # spelling is a small fraction
    assert "c-a-t" in " ".join(domain_texts("spelling", 200)) or "spelled" in domain_texts("spelling", 1)[0]


def test_iter_texts_puts_heldout_first_and_seed_only_shuffles() -> None:
    heldout, train = split_corpus(0, N_DOCS)
    assert len(heldout) == round(HELDOUT_FRACTION * (len(heldout) + len(train)))
    texts = list(iter_texts(seed=42, n_docs=N_DOCS))
    docs = generate_corpus(0, N_DOCS)
    assert sorted(texts) == sorted(d.text for d in docs)
    assert set(texts[: len(heldout)]) == {d.text for d in heldout}  # validation is never trained on
    assert texts != list(iter_texts(seed=0, n_docs=N_DOCS))  # another order, same world
    assert sorted(texts) == sorted(iter_texts(seed=0, n_docs=N_DOCS))
    assert len({d.domain for d in corpus_mod.shuffled_corpus(42, N_DOCS)[len(heldout) :][:100]}) >= 6
    other_world = {d.text for d in corpus_mod.shuffled_corpus(0, 300, world_seed=1) if d.domain != "prose"}
    assert other_world.isdisjoint(iter_texts(0, 300))


def test_domain_texts_use_domain_vocabulary() -> None:
    for domain in DOMAINS:
        texts = domain_texts(domain, 30, seed=0)
        assert len(texts) == 30 and all(texts)
        joined = " ".join(texts).lower()
        assert sum(w in joined for w in DOMAIN_KEYWORDS[domain]) >= 2, domain
    with pytest.raises(ValueError, match="unknown domain"):
        domain_texts("poetry", 1)


def test_biography_profession_and_gender_are_independent_and_visible() -> None:
    bios = domain_documents("biography", 800, seed=0)
    assert {d.attrs["profession"] for d in bios} == set(PROFESSIONS)
    assert {d.attrs["gender"] for d in bios} == {"male", "female"}
    for prof in PROFESSIONS:
        genders = [d.attrs["gender"] for d in bios if d.attrs["profession"] == prof]
        assert 0.3 <= genders.count("female") / len(genders) <= 0.7, prof
    for d in bios:
        words = set(d.text.replace(".", " ").replace(",", " ").split())
        female, male = (
            bool(words & {"She", "she", "Her", "her", "Ms."}),
            bool(words & {"He", "he", "His", "his", "Mr."}),
        )
        assert female != male and female == (d.attrs["gender"] == "female"), d.text


def test_quiz_facts_appear_in_the_corpus() -> None:
    facts = quiz_facts(seed=0, n_docs=N_DOCS)
    assert len(facts) >= 80  # 12 countries x 6 attributes + 16 inventors, nearly all stated in 800 docs
    text = "\n".join(d.text for d in generate_corpus(0, N_DOCS))
    for prefix, answer, distractors in facts:
        assert f"{prefix} {answer}" in text
        assert len(distractors) == 3 and answer not in distractors and len(set(distractors)) == 3
    assert any(p.startswith("The capital of") for p, _, _ in facts)
    assert any("was invented by" in p for p, _, _ in facts)


# --- tokenizer ------------------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_bos(tmp_path: Path) -> None:
    texts = [d.text for d in generate_corpus(0, 200)]
    tok = train_tokenizer(texts, vocab_size=400)
    sample = "The capital of Veloria is Marstad.\n  Thou art   fair!"
    ids = tok(sample).input_ids
    assert ids[0] == tok.bos_token_id and tok.bos_token_id not in ids[1:]
    assert tok.decode(ids, skip_special_tokens=True) == sample
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(sample).input_ids == ids
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == ("<bos>", "<eos>", "<pad>")
    batch = loaded(["a b c", "a"], padding=True)
    assert batch.input_ids[1][-1] == loaded.pad_token_id and batch.attention_mask[1][-1] == 0


# --- tiny model -----------------------------------------------------------------------------------------
def test_tiny_model_loads_through_auto_classes(tiny_world: tuple[Path, Path]) -> None:
    root, path = tiny_world
    assert path == root / "tiny"
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and model.config.bos_token_id == tok.bos_token_id
    info = json.loads((path / "world.json").read_text())
    assert info["val_ce"] < info["unigram_entropy"] - 0.5, info
    text = domain_texts("facts", 1)[0]
    ids = tok(text, return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < info["unigram_entropy"]


def test_existing_world_is_not_rebuilt(tiny_world: tuple[Path, Path]) -> None:
    root, path = tiny_world
    weights = path / "model.safetensors"
    before = (weights.stat().st_mtime_ns, weights.read_bytes())
    start = time.perf_counter()
    assert ensure_tiny_model(root, TinyWorldConfig.for_tests(seed=5), progress=False) == path
    assert time.perf_counter() - start < 2.0
    assert (weights.stat().st_mtime_ns, weights.read_bytes()) == before


def test_interrupted_build_leaves_no_partial_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = tiny_mod._save_world

    def save_then_crash(folder: Path, *args: object) -> None:
        real_save(folder, *args)  # files are on disk (in the temp folder) when the "crash" comes
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_mod, "_save_world", save_then_crash)
    micro = dataclasses.replace(TinyWorldConfig.for_tests(), n_docs=200, train_tokens=2_000)
    (tmp_path / ".tiny.tmp-killed").mkdir()  # what a SIGKILLed build leaves: swept by the next build
    with pytest.raises(KeyboardInterrupt):
        ensure_tiny_model(tmp_path, micro, progress=False)
    assert not (tmp_path / "tiny").exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == []


def test_default_root_follows_lorasae_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORASAE_ROOT", str(tmp_path))
    assert default_root() == tmp_path / "saved_models"
    monkeypatch.delenv("LORASAE_ROOT")
    assert default_root() == Path(tiny_mod.__file__).resolve().parents[2] / "saved_models"  # the repo


def test_prose_cache_is_reused_and_a_damaged_one_is_rebuilt(tmp_path, monkeypatch):
    from lorasae.world import prose

    monkeypatch.setenv("LORASAE_CACHE", str(tmp_path))
    fresh = prose._extract_chunks(1200)
    prose.prose_chunks.cache_clear()
    try:
        assert prose.prose_chunks() == fresh  # extracted, then written
        (cache,) = tmp_path.glob("prose-*.json")
        assert prose._read_cache(cache) == fresh
        calls = []
        monkeypatch.setattr(prose, "_extract_chunks", lambda n: calls.append(n) or fresh)
        prose.prose_chunks.cache_clear()
        assert prose.prose_chunks() == fresh and calls == []  # read from disk
        cache.write_text('[["pydoc:x", "trunc')  # a write cut short by hand
        prose.prose_chunks.cache_clear()
        assert prose.prose_chunks() == fresh and calls == [1200]  # recomputed and rewritten
        assert prose._read_cache(cache) == fresh
    finally:
        prose.prose_chunks.cache_clear()
