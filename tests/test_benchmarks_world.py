"""Built-in lm-eval tasks on the built-in world: deterministic generation, the model learns its facts, the
SAE-spliced model does not beat the clean one, and the four combinations run end to end from the CLI."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from lorasae.core.cli import parse
from lorasae.lmeval.comparison import load_results
from lorasae.lmeval.config import BenchmarkConfig
from lorasae.lmeval.layout import ALL_FOUR, results_path
from lorasae.lmeval.plan import world_of
from lorasae.lmeval.run import evaluate, run_benchmarks, task_manager_for
from lorasae.lmeval.tasks import (
    BUILTIN_TASKS,
    QUESTIONS,
    domains_docs,
    facts_docs,
    process_results_mc2,
    task_files,
    truthful_docs,
    write_builtin_tasks,
)
from lorasae.lmeval.wrapper import benchmark_lm
from lorasae.model.hooks import residual_at
from lorasae.model.load import d_model, load_model

SAE_LAYER = 1


@contextmanager
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread is as fast as two on an idle machine and far faster on a busy one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


CHANCE = 0.25
FACTS_LIMIT = 120


@pytest.fixture(scope="session")
def world_lm(world_model):
    model, tokenizer = load_model(str(world_model), device="cpu")
    return model.requires_grad_(False), tokenizer


def fit_sae(model, tokenizer, seed: int = 0, layer: int = SAE_LAYER, expansion: int = 4, steps: int = 150):
    """A TopK SAE fitted for a few seconds on the model's residual stream (k ≈ 3 % of d_model, as the
    project's default)."""
    from lorasae.sae import SaeConfig, TopKSAE
    from lorasae.world.corpus import iter_texts

    d = d_model(model)
    texts = [t for _, t in zip(range(200), iter_texts(seed))]
    ids = tokenizer(texts, truncation=True, max_length=48, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        acts = residual_at(model, ids.input_ids, layer)[ids.attention_mask.bool()]
    torch.manual_seed(0)
    cfg = SaeConfig(d_in=d, d_sae=expansion * d, k=max(2, round(0.03 * d)), hook_layer=layer)
    sae = TopKSAE(cfg, fast=False)  # the dense reference path: plain autograd, nothing else under test
    with torch.no_grad():
        sae.b_dec.copy_(acts.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-3)
    for step in range(steps):
        batch = acts[torch.randint(0, len(acts), (512,), generator=torch.Generator().manual_seed(step))]
        loss = sae(batch).fvu
        loss.backward()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()
    return sae.eval().requires_grad_(False)


# --- generation -----------------------------------------------------------------------------------


def test_tasks_deterministic_and_from_the_corpus(tmp_path):
    from lorasae.world.corpus import generate_corpus

    seed, n_docs = 0, 800
    first = write_builtin_tasks(tmp_path / "a", seed, n_docs)
    again = task_files(tmp_path / "a", seed, n_docs)
    assert {name: (first / name).read_text() for name in again} == again
    assert json.loads((first / "manifest.json").read_text())["seed"] == seed
    mtime = (first / "tiny_facts.yaml").stat().st_mtime_ns
    write_builtin_tasks(first, seed, n_docs)  # unchanged content: not rewritten
    assert (first / "tiny_facts.yaml").stat().st_mtime_ns == mtime

    text = "\n".join(d.text for d in generate_corpus(seed, n_docs, prose=False))
    facts = facts_docs(seed, n_docs)
    assert len(facts) > 50
    for doc in facts:
        assert len(doc["choices"]) == 4 and len(set(doc["choices"])) == 4
        assert f"{doc['question']} {doc['choices'][doc['answer']]}" in text
    assert len({doc["answer"] for doc in facts}) == 4  # answer positions are shuffled

    truthful = truthful_docs(seed, n_docs)
    assert truthful and all(d["mc1_targets"]["labels"] == [1, 0, 0, 0] for d in truthful)
    # the questions are phrased as the corpus's own Q/A documents phrase them
    asked = {d["question"] for d in truthful}
    for template in QUESTIONS.values():
        stem = template.split("{")[0]
        assert any(q.startswith(stem) and f"Question: {q}" in text for q in asked), template

    domains = domains_docs(seed, per_domain=5)
    assert len(domains) == 35 and {d["domain"] for d in domains} >= {"verse", "recipes", "law"}
    for doc in domains:
        assert len(doc["endings"]) == 4 and len(set(doc["endings"])) == 4
        assert all(e[:1].isspace() for e in doc["endings"])  # the separator leads every ending

    mc2 = process_results_mc2(
        {"mc2_targets": {"labels": [1, 1, 0]}}, [(-1000.0, False), (-1000.0, False), (-1000.0, False)]
    )
    assert mc2["acc"] == pytest.approx(2 / 3)


# --- the model on its tasks -----------------------------------------------------------------------
# The test-sized world (`small_world`: d=32, 2 layers, 0.4M tokens) does not learn its facts (tiny_facts
# 0.28, chance 0.25); the default built-in model (d=128, 4 layers, 1.6M tokens, val CE 2.05; minutes to
# build) does: tiny_facts 0.843 ± 0.040 (n=83), tiny_truthful_mc1 0.681, tiny_domains 0.411. Within the
# test budget, the small model continues pretraining for a few seconds on its own corpus's fact sentences
# (those `quiz_facts` guarantees are in the corpus) and must then know them: the tasks, their world and
# the scoring line up.

FACT_STEPS = 300
FACT_LR = 5e-3


@pytest.fixture(scope="session")
def fact_model(world_model):
    from lorasae.world.corpus import quiz_facts

    model, tokenizer = load_model(str(world_model), device="cpu")
    seed, n_docs = world_of(str(world_model))
    texts = [f"{fact.prefix} {fact.answer}." for fact in quiz_facts(seed, n_docs)]
    with one_thread():
        _train_on(model, tokenizer, texts)
    return model.eval().requires_grad_(False), tokenizer, seed, n_docs


def _train_on(model, tokenizer, texts: list[str]) -> None:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=FACT_LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(FACT_STEPS):
        idx = torch.randint(0, len(texts), (32,), generator=generator)
        model(
            input_ids=enc.input_ids[idx], attention_mask=enc.attention_mask[idx], labels=labels[idx]
        ).loss.backward()
        opt.step()
        opt.zero_grad()


def _facts_correct(model, tokenizer, task_manager, saes=None) -> list[int]:
    """Per-document correctness on the first FACTS_LIMIT documents of tiny_facts."""
    with benchmark_lm(model, tokenizer, saes=saes, batch_size=32) as lm:
        out = evaluate(
            lm, ["tiny_facts"], task_manager, limit=FACTS_LIMIT, bootstrap_iters=0, log_samples=True
        )
    return [int(s["acc"]) for s in sorted(out["samples"]["tiny_facts"], key=lambda s: s["doc_id"])]


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((x - mean) ** 2 for x in values) / max(n - 1, 1)
    return mean, math.sqrt(var / n)


@pytest.fixture(scope="session")
def facts_runs(fact_model, tmp_path_factory):
    """tiny_facts correctness of the fact-trained model, clean and with a fitted SAE spliced in."""
    model, tokenizer, seed, n_docs = fact_model
    task_manager = task_manager_for(["tiny_facts"], seed, n_docs, base=tmp_path_factory.mktemp("bench"))
    with one_thread():
        clean = _facts_correct(model, tokenizer, task_manager)
        sae = fit_sae(model, tokenizer, seed)
        spliced = _facts_correct(model, tokenizer, task_manager, saes={SAE_LAYER: sae})
    return clean, spliced


def test_model_scores_above_chance_on_its_facts(facts_runs):
    acc, se = _mean_se(facts_runs[0])
    print(
        f"tiny_facts accuracy after {FACT_STEPS} steps on the fact sentences: {acc:.3f} ± {se:.3f} (chance {CHANCE})"
    )
    assert acc > CHANCE + 3 * se


def test_sae_spliced_not_above_clean(facts_runs):
    """Paired over the same documents: the SAE may cost accuracy, it must not add more than noise."""
    clean, spliced = facts_runs
    diff, se = _mean_se([s - c for s, c in zip(spliced, clean)])
    print(f"tiny_facts: clean {sum(clean) / len(clean):.3f}, SAE spliced {sum(spliced) / len(spliced):.3f}")
    assert diff <= 2 * se + 1 / len(clean)


# --- end to end -----------------------------------------------------------------------------------


def test_four_combinations_end_to_end(world_lm, world_model, out_root, capsys):
    """Save an SAE and an adapter in the project's layout, then `run_benchmarks.py --all_four`."""
    from lorasae.core.paths import adapter_dir, sae_dir, sae_tag
    from lorasae.lora.adapters import attach_lora

    model, tokenizer = world_lm
    key = world_model.name  # the model's short name in output paths
    sae = fit_sae(model, tokenizer, world_of(str(world_model))[0], steps=30)
    saved = sae_dir(key, "normal", 4, sae.cfg.k, SAE_LAYER)
    sae.save(saved)
    fresh, _ = load_model(str(world_model), device="cpu")
    peft_model = attach_lora(fresh, layers=[0, 1], rank=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    adapter = adapter_dir(key, sae_tag(4, sae.cfg.k), [0, 1], 2)
    peft_model.save_pretrained(str(adapter))

    argv = ["--device", "cpu", "--model", str(world_model), "--all_four", "--limit", "6", "--batch_size", "8"]
    written = run_benchmarks(parse(BenchmarkConfig, argv))
    assert written == [results_path(key, c, variant="limit-6") for c in ALL_FOUR]  # a --limit run: own names
    for path, combo in zip(written, ALL_FOUR):
        data = json.loads(path.read_text())
        assert data["config"]["model_type"] == combo.model_type and data["config"]["sae"] == combo.sae
        assert data["config"]["sae_source"] == ([str(saved)] if combo.sae else None)
        assert data["config"]["adapter"] == (str(adapter) if combo.peft else None)
        results = load_results(path)
        assert set(BUILTIN_TASKS) <= set(results)
        assert all(0.0 <= results[t]["acc,none"] <= 1.0 for t in BUILTIN_TASKS)
        assert data["n-samples"]["tiny_facts"]["effective"] == 6
    table = capsys.readouterr().out
    assert "base_no_sae" in table and "peft_sae" in table and "tiny_truthful_mc2" in table
