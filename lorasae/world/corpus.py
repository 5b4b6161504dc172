"""The built-in world's corpus: deterministic, labelled, generated documents plus stdlib prose.

A seed fixes a *world* (invented countries with capitals, languages, currencies, exports, animals,
continents and cities; inventions and their inventors; medicines) and the documents written about it.
Documents are multi-sentence, mix many phrasings, refer back to earlier sentences (pronouns, "the
country", surnames) and cross domains (people are born in the world's cities, courts sit in its
capitals), so a small model has real structure to learn and an SAE many features to keep (SPEC §5).

Domains: `facts` (encyclopedic entries and Q/A about the world; quizzable, see `quiz_facts`),
`biography` (attrs `profession` and `gender`, drawn independently), `recipes`, `medical`, `law`,
`verse` (Shakespeare-like), `science` (science/technology: the steering concept), `spelling` (a small
fraction: "cat is spelled c-a-t.") and the unlabelled natural-English `prose` (see `prose.py`).
Same seed and size → identical corpus (for one Python install: the prose comes from its stdlib).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

from . import _lexicon as L
from . import _lexicon_domains as D
from .documents import GENERATORS, Document
from .entities import GENDERS, World, build_world
from .prose import prose_chunks

__all__ = [
    "DOMAINS",
    "LABELLED_DOMAINS",
    "DOMAIN_KEYWORDS",
    "PROFESSIONS",
    "GENDERS",
    "DEFAULT_N_DOCS",
    "Document",
    "QuizFact",
    "World",
    "build_world",
    "generate_corpus",
    "HELDOUT_FRACTION",
    "split_corpus",
    "shuffled_corpus",
    "iter_texts",
    "domain_texts",
    "domain_documents",
    "quiz_facts",
]

LABELLED_DOMAINS = ("facts", "biography", "recipes", "medical", "law", "verse", "science", "spelling")
DOMAINS = (*LABELLED_DOMAINS, "prose")
PROFESSIONS = D.PROFESSIONS
DEFAULT_N_DOCS = 16_000
"""Generated (labelled) documents in the default corpus; the prose chunks come on top of them."""

# Share of the generated documents per labelled domain (prose is added whole, see `generate_corpus`).
_WEIGHTS = {
    "facts": 0.50,
    "biography": 0.13,
    "recipes": 0.06,
    "medical": 0.07,
    "law": 0.07,
    "verse": 0.05,
    "science": 0.09,
    "spelling": 0.03,
}

DOMAIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "facts": ("capital", "currency", "continent", "population", "export"),
    "biography": ("born", "career", "studied", "married", "graduated"),
    "recipes": ("tablespoons", "simmer", "oven", "whisk", "flour"),
    "medical": ("symptoms", "patients", "diagnosis", "chronic", "dosage"),
    "law": ("plaintiff", "defendant", "statute", "court", "pursuant"),
    "verse": ("thee", "thou", "doth", "thy", "hath"),
    "science": ("experiment", "laboratory", "electron", "molecule", "algorithm"),
    "spelling": ("spelled", "letter", "spell"),
    "prose": ("function", "module", "argument", "object", "returns"),
}
"""A few words that are clearly specific to each domain (steering, probing and sanity checks)."""


class QuizFact(NamedTuple):
    """A multiple-choice question: `prefix + " " + answer` appears verbatim in the corpus."""

    prefix: str
    answer: str
    distractors: tuple[str, ...]


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------
def _domain_schedule(n_docs: int) -> list[str]:
    """`weight * n_docs` documents per domain, rounded (largest remainders get the leftovers)."""
    raw = {d: w * n_docs for d, w in _WEIGHTS.items()}
    counts = {d: int(v) for d, v in raw.items()}
    for d in sorted(raw, key=lambda d: counts[d] - raw[d])[: n_docs - sum(counts.values())]:
        counts[d] += 1
    return [d for d in _WEIGHTS for _ in range(counts[d])]


@lru_cache(maxsize=4)
def _corpus(seed: int, n_docs: int, prose: bool) -> tuple[Document, ...]:
    world = build_world(seed)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    for i, domain in enumerate(_domain_schedule(n_docs)):
        index = seen[domain] = seen.get(domain, -1) + 1
        docs.append(GENERATORS[domain](random.Random(f"lorasae-doc-{seed}-{i}"), world, index))
    if prose:
        chunks = prose_chunks()
        n_prose = round(len(chunks) * min(1.0, n_docs / DEFAULT_N_DOCS))
        picked = sorted(random.Random(f"lorasae-prose-{seed}").sample(range(len(chunks)), n_prose))
        docs += [Document(chunks[j][1], "prose", {"source": chunks[j][0]}) for j in picked]
    return tuple(docs)


def generate_corpus(seed: int = 0, n_docs: int | None = None, prose: bool = True) -> list[Document]:
    """All documents of world `seed`: `n_docs` generated ones (default `DEFAULT_N_DOCS`) grouped by
    domain, then the stdlib prose chunks (all of them at the default size, proportionally fewer for
    smaller corpora). Deterministic: same arguments → identical documents."""
    n = DEFAULT_N_DOCS if n_docs is None else int(n_docs)
    if n < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    return list(_corpus(int(seed), n, bool(prose)))


HELDOUT_FRACTION = 0.06
"""Share of the documents held out from the tiny model's tokenizer and pretraining (its validation set)."""


def split_corpus(world_seed: int = 0, n_docs: int | None = None) -> tuple[list[Document], list[Document]]:
    """`(heldout, train)`: a fixed seeded `HELDOUT_FRACTION` of `generate_corpus(world_seed, n_docs)`
    (at least one document) and the rest. The tiny model never sees the held-out documents."""
    docs = generate_corpus(world_seed, n_docs)
    order = list(range(len(docs)))
    random.Random(f"lorasae-heldout-{world_seed}").shuffle(order)
    cut = max(1, round(HELDOUT_FRACTION * len(docs)))
    heldout = set(order[:cut])
    return [docs[i] for i in sorted(heldout)], [d for i, d in enumerate(docs) if i not in heldout]


def shuffled_corpus(seed: int = 0, n_docs: int | None = None, world_seed: int = 0) -> list[Document]:
    """Every document of world `world_seed`: the held-out ones first, then the rest, each part shuffled
    by `seed` (the data-order seed; it does not change the world)."""
    heldout, train = split_corpus(world_seed, n_docs)
    rng = random.Random(f"lorasae-shuffle-{seed}")
    rng.shuffle(heldout)
    rng.shuffle(train)
    return heldout + train


def iter_texts(seed: int = 0, n_docs: int | None = None, world_seed: int = 0) -> Iterator[str]:
    """Texts of every document of world `world_seed` (all domains, prose included), shuffled by `seed`.

    The held-out documents (`split_corpus`) come first, whatever `seed`: a pipeline that validates on the
    start of this stream (e.g. `data.load_token_split`, up to ~100k tokens at the default size) measures
    text the tiny model was not trained on, and trains on the rest. `seed` only orders the documents:
    the world (entities, facts) is `world_seed`'s, the one the tiny model learnt (0 by default)."""
    for doc in shuffled_corpus(seed, n_docs, world_seed):
        yield doc.text


def domain_documents(domain: str, n: int, seed: int = 0) -> list[Document]:
    """`n` fresh labelled documents of one domain (prose: chunks in a seeded order, attrs `source`).

    Same world as `generate_corpus(seed)` (same entities and facts) but drawn from a separate random
    stream, so they are (almost always) not verbatim training documents."""
    if domain == "prose":
        chunks = list(prose_chunks())
        random.Random(f"lorasae-prose-texts-{seed}").shuffle(chunks)
        return [Document(text, "prose", {"source": source}) for source, text in chunks[:n]]
    if domain not in GENERATORS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    world, gen = build_world(seed), GENERATORS[domain]
    return [gen(random.Random(f"lorasae-extra-{seed}-{domain}-{i}"), world, i) for i in range(n)]


def domain_texts(domain: str, n: int, seed: int = 0) -> list[str]:
    """Texts of `domain_documents(domain, n, seed)`."""
    return [d.text for d in domain_documents(domain, n, seed)]


def quiz_facts(seed: int = 0, n_docs: int | None = None, n_distractors: int = 3) -> list[QuizFact]:
    """Multiple-choice facts of world `seed` that appear verbatim in `generate_corpus(seed, n_docs)`.

    Each is `(prefix, answer, distractors)` with `prefix + " " + answer` a sentence of the corpus
    (less its final period), e.g. `("The capital of Veloria is", "Marstad", ("Ostholm", ...))`.
    Distractors are other values of the same attribute. Covers the six quizzed country attributes
    (capital, language, currency, export, animal, continent) and the inventors of the inventions."""
    world = build_world(seed)
    text = "\n".join(d.text for d in generate_corpus(seed, n_docs, prose=False))
    rng = random.Random(f"lorasae-quiz-{seed}")
    candidates: list[tuple[str, str, list[str]]] = []
    for attr, (canonical, _) in L.FACTS.items():
        values = sorted({getattr(c, attr) for c in world.countries})
        for c in world.countries:
            sentence, answer = canonical.format(**c.__dict__), getattr(c, attr)
            candidates.append((sentence[: sentence.rindex(answer)].rstrip(), answer, values))
    inventors = sorted(inv.inventor for inv in world.inventions)
    candidates += [(f"The {inv.name} was invented by", inv.inventor, inventors) for inv in world.inventions]
    out = []
    for prefix, answer, values in candidates:
        if f"{prefix} {answer}" in text:
            pool = [v for v in values if v != answer]
            out.append(QuizFact(prefix, answer, tuple(rng.sample(pool, min(n_distractors, len(pool))))))
    return out
