"""Negative example sets (SPEC §4.2) and the tuning/test split.

On a GPU box with hub access: the original's five categories, loaded from the hub (streamed, shuffled
with the seed, cut to short snippets): Arabic tweets (`pain/Arabic-Tweets`), medical facts (Med Alpaca
flashcards), recipes (`corbt/all-recipes`), Shakespeare (`Roudranil/shakespearean-and-modern-english-
conversational-dataset`), and law texts, which the original had gpt-4o-mini write (so they need an LLM
key; without one the law set is skipped with a warning). Offline: the built-in world's domains stand in
for them: medical → medical, recipes → recipes, Shakespeare → verse, law → law, Arabic tweets →
biography (the built-in world has no second language).

The original tuned alpha on the medical ("biology") set and tested on the other four; here the tuning
split is the medical set plus a seeded fraction of the positives, and the test split is everything else.
Sets are cached as `{"examples": [...]}` JSON under `eval/steering/datasets/` (hub) and
`eval/steering/datasets/builtin/` (offline).
"""

from __future__ import annotations

import random
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lorasae.atomic import atomic_write_json, read_json
from lorasae.llm import LLMClient, LLMError
from lorasae.paths import eval_dir, name_variant, with_variant
from lorasae.steering.examples import dedup, generate_llm_examples, split_snippets

CATEGORIES: tuple[str, ...] = ("medical", "arabic", "recipes", "shakespeare", "law")
"""The original's five negative categories (its 'biology' set is the medical facts)."""
TUNING_SET = "medical"
CONCEPT_DOMAIN = "science"
"""The built-in world's steering concept."""

BUILTIN_STANDINS: dict[str, str] = {
    "medical": "medical",
    "arabic": "biography",
    "recipes": "recipes",
    "shakespeare": "verse",
    "law": "law",
}


@dataclass(frozen=True)
class HubSource:
    """Where a negative category lives on the hub, and which column holds its text."""

    path: str
    column: str
    split: str = "train"
    data_files: str | None = None


HUB_SOURCES: dict[str, HubSource] = {
    "medical": HubSource("medalpaca/medical_meadow_medical_flashcards", "output"),
    "arabic": HubSource("text", "text", data_files="hf://datasets/pain/Arabic-Tweets/lm_twitter.txt"),
    "recipes": HubSource("corbt/all-recipes", "input"),
    "shakespeare": HubSource(
        "Roudranil/shakespearean-and-modern-english-conversational-dataset", "og_response"
    ),
}
LAW_DESCRIPTION = (
    "it is legal text: statutes, contract clauses, court opinions, regulations or legal definitions, "
    "written in formal legal English"
)


def shorten(text: str, max_words: int = 32) -> str:
    """Whitespace-normalised text cut to its first `max_words` words."""
    return " ".join(re.sub(r"\s+", " ", text).split()[:max_words])


def hub_texts(source: HubSource, seed: int) -> Iterator[str]:
    """Stream the category's texts from the hub, shuffled with `seed`."""
    from datasets import load_dataset

    if source.data_files is not None:
        dataset = load_dataset(source.path, data_files=source.data_files, split=source.split, streaming=True)
    else:
        dataset = load_dataset(source.path, split=source.split, streaming=True)
    dataset = dataset.shuffle(seed=seed, buffer_size=10_000)
    for row in dataset:
        value = row.get(source.column)
        if isinstance(value, str) and value.strip():
            yield value


def take_examples(texts: Iterable[str], count: int, min_words: int = 5, max_words: int = 32) -> list[str]:
    """Up to `count` distinct snippets of at least `min_words` words (each text shortened)."""
    out: list[str] = []
    for text in texts:
        snippet = shorten(text, max_words)
        if len(snippet.split()) >= min_words and dedup([snippet], out):
            out.append(snippet)
            if len(out) >= count:
                break
    return out


# Disjoint windows of `lorasae.world.corpus.domain_documents` (fresh documents of the model's world, not
# verbatim training text): the concept-latent choice, corpus mining and the negative sets never share one.
CONCEPT_WINDOW = (0, 60)
MINING_WINDOW = (100, 250)
NEGATIVE_WINDOW_START = 400


def builtin_documents(domain: str, start: int, stop: int, seed: int) -> list[str]:
    """Texts of documents `start … stop-1` of the built-in world's fresh `domain` documents."""
    from lorasae.world.corpus import domain_texts

    return domain_texts(domain, stop, seed)[start:stop]


def builtin_sets(
    count: int, seed: int, categories: Sequence[str] = CATEGORIES, docs_per_set: int | None = None
) -> dict[str, list[str]]:
    """Offline negatives: `count` sentence snippets of each category's stand-in domain, from fresh
    documents of world `seed` (after `NEGATIVE_WINDOW_START`)."""
    start = NEGATIVE_WINDOW_START
    stop = start + (docs_per_set or max(count, 20))
    out: dict[str, list[str]] = {}
    for category in categories:
        domain = BUILTIN_STANDINS[category]
        snippets: list[str] = []
        for text in builtin_documents(domain, start, stop, seed):
            for snippet in split_snippets(text):
                if dedup([snippet], snippets):
                    snippets.append(snippet)
        # spread the picks over the documents rather than taking the first document's sentences
        random.Random(f"{seed}-{domain}").shuffle(snippets)
        out[domain] = snippets[:count]
    return out


def hub_sets(
    count: int, seed: int, llm: LLMClient | None = None, categories: Sequence[str] = CATEGORIES
) -> dict[str, list[str]]:
    """The original's negative categories from the hub (law from the LLM)."""
    out: dict[str, list[str]] = {}
    for category in categories:
        if category == "law":
            if llm is None:
                warnings.warn(
                    "No LLM key: skipping the law negative set (the original generated it with gpt-4o-mini). "
                    "Set OPENAI_API_KEY to include it.",
                    stacklevel=2,
                )
                continue
            try:
                out[category] = generate_llm_examples(llm, LAW_DESCRIPTION, count, words=20).examples
            except LLMError as err:
                warnings.warn(f"Skipping the law negative set: {err}", stacklevel=2)
            continue
        out[category] = take_examples(hub_texts(HUB_SOURCES[category], seed), count)
    return out


def negatives_dir(kind: str, base: Path | None = None) -> Path:
    folder = eval_dir("steering", base) / "datasets"
    return folder / "builtin" if kind == "builtin" else folder


DEFAULT_COUNT = 100  # the scripts' --num_negatives
DEFAULT_SEED = {"builtin": 0, "hub": 42}  # the built-in world's default seed; the scripts' --seed


def negatives_file(kind: str, name: str, count: int, seed: int, base: Path | None = None) -> Path:
    """`datasets[/builtin]/<set>[__<variant>].json`: one cached set per size and seed (`variant`: `n-<count>`
    and `seed-<seed>` where they differ from the defaults), so a demo-size set never replaces another."""
    off = {"n": count} if count != DEFAULT_COUNT else {}
    off |= {"seed": seed} if seed != DEFAULT_SEED[kind] else {}
    return negatives_dir(kind, base) / f"{with_variant(name, name_variant(off))}.json"


def load_negative_sets(
    kind: str,
    count: int = 100,
    seed: int = 42,
    llm: LLMClient | None = None,
    refresh: bool = False,
) -> dict[str, list[str]]:
    """Negative sets by name (the tuning set first), built on first use and cached as JSON, one file per
    count and seed (`negatives_file`). `kind`: `builtin` (offline stand-ins; `seed` is the
    world's) or `hub` (the original's datasets; `seed` shuffles them)."""
    if kind not in ("builtin", "hub"):
        raise ValueError(f"negative sets must be 'builtin' or 'hub', got {kind!r}")
    names = [BUILTIN_STANDINS[c] if kind == "builtin" else c for c in CATEGORIES]
    cached: dict[str, list[str]] = {}
    if not refresh:
        for name in names:
            path = negatives_file(kind, name, count, seed)
            if path.exists():
                data = read_json(path)
                enough = len(data.get("examples", [])) >= count or data.get("requested", 0) >= count
                if enough and data.get("seed", seed) == seed:
                    cached[name] = list(data["examples"])[:count]
    todo = [c for c, name in zip(CATEGORIES, names) if name not in cached]
    if todo:
        built = builtin_sets(count, seed, todo) if kind == "builtin" else hub_sets(count, seed, llm, todo)
        for name, examples in built.items():
            source = f"built-in domain '{name}'" if kind == "builtin" else _describe_hub(name)
            atomic_write_json(
                negatives_file(kind, name, count, seed),
                {"examples": examples, "source": source, "requested": count, "seed": seed},
            )
            cached[name] = examples
    tuning_name = BUILTIN_STANDINS[TUNING_SET] if kind == "builtin" else TUNING_SET
    ordered = [tuning_name] + [n for n in names if n != tuning_name]
    return {name: cached[name] for name in ordered if name in cached}


def _describe_hub(name: str) -> str:
    if name == "law":
        return "LLM-generated legal texts"
    source = HUB_SOURCES[name]
    return f"{source.data_files or source.path} [{source.column}]"


def tuning_set_name(kind: str) -> str:
    return BUILTIN_STANDINS[TUNING_SET] if kind == "builtin" else TUNING_SET


@dataclass
class EvalSets:
    """One split: positives and named negative sets."""

    positive: list[str]
    negatives: dict[str, list[str]]

    def sizes(self) -> dict[str, int]:
        return {"positive": len(self.positive)} | {k: len(v) for k, v in self.negatives.items()}


def split_sets(
    positives: Sequence[str],
    negatives: dict[str, list[str]],
    tuning_negative: str,
    tuning_fraction: float = 0.3,
    seed: int = 42,
) -> tuple[EvalSets, EvalSets]:
    """(tuning, test): the tuning negative set plus a seeded `tuning_fraction` of the positives, and the
    other negative sets plus the remaining positives. Negatives identical to a positive are dropped."""
    if tuning_negative not in negatives:
        raise ValueError(f"tuning set {tuning_negative!r} is not among the negative sets {sorted(negatives)}")
    if not 0 < tuning_fraction < 1:
        raise ValueError(f"tuning_fraction must be in (0, 1), got {tuning_fraction}")
    positives = dedup(positives)
    if len(positives) < 4:
        raise ValueError(f"only {len(positives)} distinct positive examples: at least 4 are needed")
    order = list(range(len(positives)))
    random.Random(seed).shuffle(order)
    cut = min(len(positives) - 2, max(2, round(tuning_fraction * len(positives))))
    tune_pos = [positives[i] for i in sorted(order[:cut])]
    test_pos = [positives[i] for i in sorted(order[cut:])]
    clean = {name: dedup(examples, positives) for name, examples in negatives.items()}
    tuning = EvalSets(tune_pos, {tuning_negative: clean[tuning_negative]})
    test = EvalSets(test_pos, {k: v for k, v in clean.items() if k != tuning_negative})
    if not test.negatives:
        raise ValueError("no negative sets are left for the test split")
    return tuning, test
