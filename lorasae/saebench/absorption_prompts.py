"""Absorption eval, step 1: the alphabetic vocabulary of a tokenizer and SAEBench's in-context spelling
prompts ("{word} has the first letter: W"), with the position of each word's last token."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

LETTERS = "abcdefghijklmnopqrstuvwxyz"
ALPHA = set(LETTERS + LETTERS.upper())


# --- vocabulary and prompts ----------------------------------------------------------------------


def alpha_tokens(tokenizer: Any) -> list[str]:
    """Decoded vocabulary tokens that are alphabetic after an optional leading space (SAEBench's
    `get_alpha_tokens`), sorted for determinism."""
    words = set()
    for token in tokenizer.get_vocab():
        word = tokenizer.convert_tokens_to_string([token])
        body = word[1:] if word.startswith(" ") else word
        if body and all(c in ALPHA for c in body):
            words.add(word)
    return sorted(words)


def first_letter(word: str) -> str:
    """SAEBench's first_letter_formatter: " " + the first alphabetic character, upper-cased."""
    return " " + next(c for c in word.strip() if c.isalpha()).upper()


def letter_index(word: str) -> int:
    return LETTERS.index(first_letter(word).strip().lower())


def icl_prompt(
    word: str,
    examples: list[str],
    rng: random.Random,
    template: str,
    max_icl_examples: int,
    separator: str = "\n",
    prepend_separator: bool = False,
) -> tuple[str, str]:
    """(text before the word, the whole prompt): `max_icl_examples` shuffled solved examples (never the word
    itself), then the template for `word` (SAEBench's `create_icl_prompt`)."""
    pool = [w for w in examples if w != word]
    chosen = rng.sample(pool, min(max_icl_examples, len(pool)))
    lines = [template.format(word=w) + first_letter(w) for w in chosen]
    prefix = separator.join(lines) + separator
    if prepend_separator:
        prefix = separator + prefix
    head, _, tail = template.partition("{word}")
    return prefix + head, prefix + head + word + tail


@dataclass
class PromptBatch:
    words: list[str]
    labels: Tensor  # [N] letter index
    tokens: Tensor  # [N, T] right-padded
    positions: Tensor  # [N] index of the word's last token


def build_prompts(
    words: list[str],
    examples: list[str],
    tokenizer: Any,
    rng: random.Random,
    template: str,
    max_icl_examples: int,
    max_len: int,
    prepend_separator: bool = False,
) -> PromptBatch:
    """Tokenised prompts with BOS first (as TransformerLens adds) and the word's last-token position.
    A prompt longer than `max_len` tokens is rebuilt with half as many examples until it fits; words whose
    tokens merge with the text after them are dropped."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kept_words, rows, positions = [], [], []
    for word in words:
        n_icl = max_icl_examples
        while True:
            before, full = icl_prompt(
                word, examples, rng, template, n_icl, prepend_separator=prepend_separator
            )
            ids = bos + tokenizer(full, add_special_tokens=False)["input_ids"]
            if len(ids) <= max_len or n_icl == 0:
                break
            n_icl //= 2
        upto = bos + tokenizer(before + word, add_special_tokens=False)["input_ids"]
        if len(ids) > max_len or ids[: len(upto)] != upto:
            continue
        kept_words.append(word)
        rows.append(ids)
        positions.append(len(upto) - 1)
    width = max((len(r) for r in rows), default=1)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    return PromptBatch(
        kept_words,
        torch.tensor([letter_index(w) for w in kept_words], dtype=torch.long),
        tokens,
        torch.tensor(positions, dtype=torch.long),
    )
