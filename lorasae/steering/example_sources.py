"""Positive examples for a latent (SPEC §4.2).

Two sources:
- an OpenAI-compatible chat LLM asked for short texts that have the latent's feature (the original used
  gpt-4o-mini, 25 examples of about twelve words per request): requests go out in concurrent batches,
  each retried on transient errors (the client's policy); replies are parsed (numbered or bulleted lists,
  JSON lists) and deduplicated up to case, punctuation and spacing;
- with no LLM, the corpus snippets (sentences) on which the latent fires most.

The requests go through `lorasae.core.llm.LLMClient` (settings from `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
`OPENAI_MODEL`; its retry policy), the client the autointerp judge uses too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from lorasae.core.llm import LLMClient, LLMError

PROMPT = """Write {num_examples} different short texts that have this feature: {description}
{examples_block}
Each text should be about {words} words long. Make them varied in topic, wording and structure, and \
do not repeat yourself.
Reply with a numbered list, one text per line, and nothing else."""

SYSTEM_PROMPT = "You write short example texts for testing language models."


# --- parsing and deduplication ------------------------------------------------------------------

_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,4}[.):]|[-*•])\s+")


def _clean(item: str) -> str:
    text = item.strip().strip("\"'“”‘’`").strip()
    text = re.sub(r"\s+", " ", text)
    return text


def parse_examples(reply: str, min_words: int = 3) -> list[str]:
    """Examples from an LLM reply: a JSON list (or {"examples": [...]}) if the reply is JSON, else the
    numbered/bulleted lines (all non-empty lines when there are none). Quotes and markers are stripped;
    items with fewer than `min_words` words are dropped."""
    text = reply.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    if fenced:
        text = fenced.group(1)
    items: list[str] | None = None
    if text[:1] in "[{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            data = data.get("examples")
        if isinstance(data, list):
            items = [str(x) for x in data if isinstance(x, str | int | float)]
    if items is None:
        lines = [line for line in text.splitlines() if line.strip()]
        marked = [line for line in lines if _LIST_MARKER.match(line)]
        items = [_LIST_MARKER.sub("", line) for line in marked] if marked else lines
    cleaned = (_clean(item) for item in items)
    return [item for item in cleaned if len(item.split()) >= min_words]


def dedup_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive identity of an example."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def dedup(texts: Iterable[str], seen: Iterable[str] = ()) -> list[str]:
    """`texts` without duplicates (first occurrence kept) and without anything already in `seen`."""
    keys = {dedup_key(t) for t in seen}
    out = []
    for text in texts:
        key = dedup_key(text)
        if key and key not in keys:
            keys.add(key)
            out.append(text)
    return out


# --- generation -----------------------------------------------------------------------------------


@dataclass
class GenerationReport:
    examples: list[str]
    calls: int
    requests: int
    retries: int
    parsed: int
    duplicates: int
    failed_calls: list[str] = field(default_factory=list)


def build_prompt(description: str, seed_examples: Sequence[str], num_examples: int, words: int) -> str:
    block = ""
    if seed_examples:
        listed = "\n".join(f'{i}. "{ex}"' for i, ex in enumerate(seed_examples, 1))
        block = f"\nHere are texts that have the feature:\n{listed}\n"
    return PROMPT.format(
        num_examples=num_examples, description=description.strip(), examples_block=block, words=words
    )


def generate_llm_examples(
    client: LLMClient,
    description: str,
    num_examples: int,
    seed_examples: Sequence[str] = (),
    per_call: int = 25,
    words: int = 12,
    concurrency: int = 4,
    max_calls: int | None = None,
    existing: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """Ask the LLM for batches of `per_call` examples, `concurrency` requests at a time, until
    `num_examples` unique new examples (not in `existing`) are collected or `max_calls` requests
    (default: twice the calls needed, plus two) were made. A request that still fails after its
    retries is recorded and skipped, unless every request fails."""
    if num_examples <= 0:
        return GenerationReport([], 0, 0, 0, 0, 0)
    needed = math.ceil(num_examples / per_call)
    max_calls = max_calls if max_calls is not None else 2 * needed + 2
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_prompt(description, seed_examples, per_call, words)},
    ]
    collected: list[str] = []
    seen = list(existing)
    calls = parsed = duplicates = 0
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        while len(collected) < num_examples and calls < max_calls:
            still = math.ceil((num_examples - len(collected)) / per_call)
            batch = min(max(1, concurrency), still, max_calls - calls)
            futures = [pool.submit(client.complete, messages) for _ in range(batch)]
            calls += batch
            for future in futures:  # submission order keeps the result deterministic
                try:
                    reply = future.result()
                except LLMError as err:
                    failures.append(str(err))
                    continue
                items = parse_examples(reply)
                parsed += len(items)
                fresh = dedup(items, seen)
                duplicates += len(items) - len(fresh)
                seen += fresh
                collected += fresh
            if progress is not None:
                progress(min(len(collected), num_examples), num_examples)
            if failures and len(failures) == calls:
                raise LLMError(f"every LLM request failed; last error: {failures[-1]}")
    return GenerationReport(
        collected[:num_examples], calls, client.requests, client.retries, parsed, duplicates, failures
    )


# --- corpus mining --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def split_snippets(text: str, min_words: int = 5, max_words: int = 32) -> list[str]:
    """Sentence-sized pieces of a document: sentences shorter than `min_words` are joined with the next,
    longer ones are cut to `max_words` words."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        if not words:
            continue
        current += words
        if len(current) >= min_words:
            pieces.append(" ".join(current[:max_words]))
            current = []
    if len(current) >= min_words:
        pieces.append(" ".join(current[:max_words]))
    return pieces


@dataclass
class MinedExample:
    text: str
    max_activation: float
    mean_activation: float


def mine_corpus_examples(
    model: nn.Module,
    tokenizer,
    sae,
    layer: int,
    latent: int,
    texts: Iterable[str],
    num_examples: int,
    max_snippets: int = 20_000,
    batch_size: int = 32,
    max_length: int = 64,
    min_words: int = 5,
    max_words: int = 32,
) -> list[MinedExample]:
    """The corpus snippets on which `latent` fires most (by peak activation over the snippet's tokens,
    then mean), deduplicated, at most `num_examples`; snippets where it never fires are left out."""
    from lorasae.steering.concept import latent_activations

    snippets: list[str] = []
    for text in texts:
        snippets += split_snippets(text, min_words, max_words)
        if len(snippets) >= max_snippets:
            break
    snippets = dedup(snippets[:max_snippets])
    if not snippets:
        raise ValueError("the corpus yielded no snippets to mine")
    acts = latent_activations(model, tokenizer, sae, layer, snippets, [latent], batch_size, max_length)
    peak = np.array([float(a[:, 0].max()) if len(a) else 0.0 for a in acts])
    mean = np.array([float(a[:, 0].mean()) if len(a) else 0.0 for a in acts])
    order = np.lexsort((-mean, -peak))
    chosen = [int(i) for i in order if peak[i] > 0][:num_examples]
    return [MinedExample(snippets[i], float(peak[i]), float(mean[i])) for i in chosen]
