"""Offline data for RAVEL and unlearning, built from facts the built-in corpus already states (the corpus
itself is not changed).

- RAVEL: the entity class `country` of world `world_seed` (`corpus.build_world`), with the attributes the
  corpus quizzes (capital, language, currency, export, animal, continent; each drawn independently per
  country except that capital and language are coined per country). Prompts come from the corpus's own
  fact templates (`_lexicon.FACTS`: the canonical sentence and its paraphrases, every bracketed alternative
  expanded) cut just before the attribute value, e.g. "The capital of Veloria is" → "Marstad". Which of them
  the model answers correctly is decided by `ravel.filter_known` (SAEBench filters its hub prompts the same
  way).
- Unlearning: the forget domain is medicine (the WMDP-bio analogue): cloze questions about the world's
  conditions and its invented medicines, each a sentence the medical documents state verbatim; the retain
  "subjects" (the MMLU analogue) are the quiz facts about countries and inventions (`corpus.quiz_facts`),
  one subject per attribute. Forget corpus: medical documents; retain corpus: the other domains.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasae.core.atomic import read_output_json
from lorasae.world import _lexicon as L
from lorasae.world import _lexicon_domains as D
from lorasae.world.corpus import LABELLED_DOMAINS, build_world, domain_texts, generate_corpus, quiz_facts
from lorasae.world.sizes import is_builtin_size

RAVEL_ENTITY_CLASS = "country"
RAVEL_ATTRIBUTES: tuple[str, ...] = tuple(L.FACTS)
FORGET_DOMAIN = "medical"
FORGET_SUBJECT = "medicine"
_ALT = re.compile(r"\[([^\[\]]*)\]")


@dataclass(frozen=True)
class RavelPrompt:
    """One RAVEL prompt: `ids` (BOS first when the tokenizer has one) end just before the attribute value
    `label`; `entity_pos` indexes the entity's last token in `ids` (where RAVEL intervenes)."""

    text: str
    entity: str
    attribute: str
    label: str
    template: str
    ids: tuple[int, ...]
    entity_pos: int


def model_world_docs(model_name: str) -> int | None:
    """The corpus size (`n_docs`) the built-in model was pretrained on, from its world.json (None: the
    default corpus, also for models that are not built-in)."""
    from lorasae.model.load import resolve_model_name

    if not is_builtin_size(model_name) and not Path(model_name).exists():
        return None
    info = Path(resolve_model_name(model_name)) / "world.json"
    return read_output_json(info).get("config", {}).get("n_docs") if info.is_file() else None


def _expansions(template: str) -> list[str]:
    """Every way of choosing one alternative in each `[a|b|...]` group of a corpus template."""
    parts = _ALT.split(template)  # literal, group, literal, group, ...
    options = [[p] if i % 2 == 0 else p.split("|") for i, p in enumerate(parts)]
    return [re.sub(r"\s+", " ", "".join(choice)).strip() for choice in itertools.product(*options)]


def ravel_templates(attribute: str) -> list[str]:
    """Prompt templates of `attribute`: the corpus's sentences about it, cut before the value, where the
    country's name comes before the value."""
    canonical, paraphrases = L.FACTS[attribute]
    slot = "{" + attribute + "}"
    out: list[str] = []
    for template in (canonical, *paraphrases):
        for text in _expansions(template):
            if "{name}" in text and slot in text and text.index("{name}") < text.index(slot):
                prefix = text[: text.index(slot)].rstrip()
                if prefix not in out:
                    out.append(prefix)
    return out


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt: BOS first when the tokenizer has one, no other special tokens."""
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def builtin_ravel_prompts(
    tokenizer: Any, world_seed: int = 0, attributes: tuple[str, ...] | list[str] = RAVEL_ATTRIBUTES
) -> list[RavelPrompt]:
    """All (country, attribute, template) prompts of world `world_seed`; prompts whose tokenization splits
    the country's name differently from the name alone are left out (no clean entity position)."""
    prompts = []
    for country in build_world(world_seed).countries:
        slots = dict(country.__dict__)
        for attribute in attributes:
            for template in ravel_templates(attribute):
                try:
                    text = template.format(**slots)
                except (KeyError, IndexError):
                    continue
                ids = prompt_ids(tokenizer, text)
                upto = prompt_ids(tokenizer, text[: text.index(country.name) + len(country.name)])
                if ids[: len(upto)] != upto:
                    continue
                label = str(slots[attribute])
                prompts.append(
                    RavelPrompt(text, country.name, attribute, label, template, tuple(ids), len(upto) - 1)
                )
    return prompts


# --- unlearning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClozeQuestion:
    """A multiple-choice question scored as continuations of `prompt` (MMLU's cloze form)."""

    subject: str
    prompt: str
    choices: tuple[str, ...]
    answer: int


def _medical_facts(world_seed: int) -> list[tuple[str, str, list[str]]]:
    """(prefix, answer, other values) for each condition/medicine fact of the world."""
    world = build_world(world_seed)
    conditions = sorted(D.CONDITIONS)
    field_values = {
        f: sorted({info[f] for info in D.CONDITIONS.values()}) for f in ("organ", "cause", "treatment")
    }
    facts = []
    for cond, med in world.medicines:
        info, cap = D.CONDITIONS[cond], cond.capitalize()
        facts.append((f"{med} is a medicine used to treat", cond, conditions))
        facts.append((f"{cap} is usually caused by", info["cause"], field_values["cause"]))
        facts.append(
            (f"Patients with {cond} are often treated with", info["treatment"], field_values["treatment"])
        )
        facts.append((f"{cap} is a common condition that affects the", info["organ"], field_values["organ"]))
    return facts


def _questions(
    subject: str, facts: list[tuple[str, str, list[str]]], corpus: str, rng: random.Random, n_choices: int
) -> list[ClozeQuestion]:
    out = []
    for prefix, answer, values in facts:
        pool = [v for v in values if v != answer]
        if f"{prefix} {answer}" not in corpus or len(pool) < n_choices - 1:
            continue
        choices = [answer, *rng.sample(pool, n_choices - 1)]
        rng.shuffle(choices)
        out.append(ClozeQuestion(subject, prefix, tuple(choices), choices.index(answer)))
    return out


def builtin_unlearning_questions(
    world_seed: int = 0, n_docs: int | None = None, n_choices: int = 4
) -> dict[str, list[ClozeQuestion]]:
    """{subject: questions}: `FORGET_SUBJECT` (medicine) and one retain subject per quizzed attribute of
    countries (capital, language, ...) plus `invention`. Only facts `generate_corpus(world_seed, n_docs)`
    states verbatim."""
    corpus = "\n".join(d.text for d in generate_corpus(world_seed, n_docs, prose=False))
    rng = random.Random(f"lorasae-unlearning-{world_seed}")
    out = {FORGET_SUBJECT: _questions(FORGET_SUBJECT, _medical_facts(world_seed), corpus, rng, n_choices)}
    by_subject: dict[str, list[tuple[str, str, list[str]]]] = {}
    prefixes = {  # the quiz prefix of each (country, attribute): `quiz_facts` cuts the canonical sentence
        canonical[: canonical.index("{" + a + "}")].rstrip().format(**c.__dict__): a
        for a, (canonical, _) in L.FACTS.items()
        for c in build_world(world_seed).countries
    }
    for fact in quiz_facts(world_seed, n_docs, n_distractors=n_choices - 1):
        subject = prefixes.get(fact.prefix, "invention")
        by_subject.setdefault(subject, []).append(
            (fact.prefix, fact.answer, [fact.answer, *fact.distractors])
        )
    for subject, facts in by_subject.items():
        out[subject] = _questions(subject, facts, corpus, rng, n_choices)
    return out


def builtin_unlearning_corpora(n_docs: int, world_seed: int = 0) -> tuple[list[str], list[str]]:
    """(forget texts, retain texts): fresh medical documents, and as many from the other labelled domains
    (the forget corpus / WikiText analogue of SAEBench's feature-sparsity step)."""
    forget = domain_texts(FORGET_DOMAIN, n_docs, world_seed)
    others = [d for d in LABELLED_DOMAINS if d != FORGET_DOMAIN]
    per = -(-n_docs // len(others))
    retain = [t for d in others for t in domain_texts(d, per, world_seed)][:n_docs]
    return forget, retain
