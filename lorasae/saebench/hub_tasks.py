"""Hub data for the unlearning eval on a GPU box (network, and access to WMDP's forget corpus):
SAEBench's question sets — WMDP-bio (`cais/wmdp`, forget) and four MMLU subjects (`cais/mmlu`, retain) —
and its corpora for feature sparsity: the bio forget corpus (gated by CAIS: pass a local copy, e.g.
`bio-forget-corpus.jsonl`, as SAEBench also asks) and WikiText (retain).

RAVEL's hub prompts (the RAVEL dataset's entity/attribute/template files that SAEBench downloads and filters)
are not loaded here yet: `run_eval.py` reports RAVEL as skipped with hub data.
"""

from __future__ import annotations

import itertools
from typing import Any

from lorasae.data import load_texts
from lorasae.saebench.world_tasks import ClozeQuestion

WMDP_BIO = "wmdp-bio"
MMLU_RETAIN_SUBJECTS: tuple[str, ...] = (
    "high_school_us_history",
    "college_computer_science",
    "high_school_geography",
    "human_aging",
)
RETAIN_CORPUS = ("wikitext", "wikitext-103-raw-v1")


def _questions(rows: Any, subject: str) -> list[ClozeQuestion]:
    return [ClozeQuestion(subject, r["question"], tuple(r["choices"]), int(r["answer"])) for r in rows]


def hub_unlearning_questions() -> dict[str, list[ClozeQuestion]]:
    """{subject: questions}: WMDP-bio first (the forget set), then SAEBench's MMLU retain subjects."""
    from datasets import load_dataset

    out = {WMDP_BIO: _questions(load_dataset("cais/wmdp", WMDP_BIO, split="test"), WMDP_BIO)}
    for subject in MMLU_RETAIN_SUBJECTS:
        out[subject] = _questions(load_dataset("cais/mmlu", subject, split="test"), subject)
    return out


def hub_unlearning_corpora(forget_corpus: str, n_docs: int, seed: int) -> tuple[list[str], list[str]]:
    """(forget texts from the local `forget_corpus` file, retain texts from WikiText), `n_docs` each."""
    from datasets import load_dataset

    forget = list(itertools.islice((t for t in load_texts(forget_corpus, seed=seed) if t.strip()), n_docs))
    wiki = load_dataset(*RETAIN_CORPUS, split="test")
    retain = list(itertools.islice((r["text"] for r in wiki if len(r["text"].strip()) > 100), n_docs))
    return forget, retain
