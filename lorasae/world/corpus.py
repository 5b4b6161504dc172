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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from . import _lexicon as L
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
PROFESSIONS = L.PROFESSIONS
GENDERS = ("male", "female")
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


@dataclass(frozen=True)
class Document:
    text: str
    domain: str
    attrs: dict = field(default_factory=dict)


class QuizFact(NamedTuple):
    """A multiple-choice question: `prefix + " " + answer` appears verbatim in the corpus."""

    prefix: str
    answer: str
    distractors: tuple[str, ...]


# ----------------------------------------------------------------------------------------------------
# The world: entities and their attributes, fixed by the seed
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    cities: tuple[str, ...]  # the capital first
    language: str
    currency: str
    export: str
    animal: str
    continent: str
    direction: str
    climate: str
    river: str
    population: int  # millions
    founded: int


@dataclass(frozen=True)
class Invention:
    name: str
    inventor: str
    gender: str
    country: str
    year: int
    purpose: str


@dataclass(frozen=True)
class World:
    seed: int
    countries: tuple[Country, ...]
    inventions: tuple[Invention, ...]
    medicines: tuple[tuple[str, str], ...]  # (condition, invented medicine)


def _coin(rng: random.Random, taken: set[str], suffixes: tuple[str, ...], syllables: tuple[int, int]) -> str:
    """A new pronounceable name (e.g. 'Velmora', 'Ostholm') not yet in `taken`."""
    while True:
        stem = "".join(rng.choice(L.ONSETS) + rng.choice(L.VOWELS) for _ in range(rng.randint(*syllables)))
        if rng.random() < 0.4:
            stem += rng.choice(L.CODAS)
        word = (stem + rng.choice(suffixes)).capitalize()
        if word not in taken and 4 <= len(word) <= 11 and not re.search(r"(.)\1\1|[aeiou]{3}", word):
            taken.add(word)
            return word


@lru_cache(maxsize=8)
def build_world(seed: int = 0, n_countries: int = 12) -> World:
    """The entities of world `seed` (independent of the corpus size)."""
    rng = random.Random(f"lorasae-world-{seed}")
    taken: set[str] = set()
    countries = []
    for _ in range(n_countries):
        stem = _coin(rng, taken, ("",), (1, 2))
        name = stem + rng.choice(L.COUNTRY_SUFFIX)
        language = stem + rng.choice(L.LANG_SUFFIX)
        taken |= {name, language}
        cities = tuple(_coin(rng, taken, L.CITY_SUFFIX, (1, 2)) for _ in range(4))
        countries.append(
            Country(
                name=name,
                capital=cities[0],
                cities=cities,
                language=language,
                currency=rng.choice(L.CURRENCIES),
                export=rng.choice(L.EXPORTS),
                animal=rng.choice(L.ANIMALS),
                continent=rng.choice(L.CONTINENTS),
                direction=rng.choice(L.DIRECTIONS),
                climate=rng.choice(L.CLIMATES),
                river=_coin(rng, taken, ("", "a", "e", "in"), (1, 2)),
                population=rng.randint(1, 90),
                founded=rng.randint(900, 1950),
            )
        )
    inventions = []
    for kind, purpose in L.INVENTIONS:
        gender = rng.choice(GENDERS)
        surname = _coin(rng, taken, ("", "er", "in", "ov", "son"), (1, 2))
        inventions.append(
            Invention(
                name=f"{surname} {kind}",
                inventor=f"{rng.choice(L.GIVEN[gender])} {surname}",
                gender=gender,
                country=rng.choice(countries).name,
                year=rng.randint(1600, 1950),
                purpose=purpose,
            )
        )
    medicines = tuple(
        (c, _coin(rng, taken, ("ol", "ine", "amab", "ex", "azole"), (2, 2))) for c in L.CONDITIONS
    )
    return World(seed=seed, countries=tuple(countries), inventions=tuple(inventions), medicines=medicines)


# ----------------------------------------------------------------------------------------------------
# Template helpers
# ----------------------------------------------------------------------------------------------------
_ALT = re.compile(r"\[([^\[\]]*)\]")


def _fill(rng: random.Random, template: str, **slots: object) -> str:
    """Expand `[a|b|c]` alternatives (left to right), then `str.format` the slots."""
    return _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template).format(**slots)


def _fill_some(
    rng: random.Random, templates: tuple[str, ...], k: tuple[int, int], **slots: object
) -> list[str]:
    return [_fill(rng, t, **slots) for t in rng.sample(templates, rng.randint(*k))]


def _sentences(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _person(rng: random.Random) -> tuple[str, str, str]:
    gender = rng.choice(GENDERS)
    return rng.choice(L.GIVEN[gender]), rng.choice(L.SURNAMES), gender


# ----------------------------------------------------------------------------------------------------
# Domain generators: (rng, world, index within the domain) -> Document
# ----------------------------------------------------------------------------------------------------
def _country_slots(rng: random.Random, c: Country) -> dict[str, object]:
    city1, city2 = rng.sample(c.cities[1:], 2)
    return {**c.__dict__, "city1": city1, "city2": city2}


def _facts_doc(rng: random.Random, world: World, index: int) -> Document:
    c = world.countries[index % len(world.countries)]
    slots = _country_slots(rng, c)
    style = rng.random()
    if style < 0.2:  # question and answer
        lines = []
        for attr in rng.sample(list(L.QUESTIONS), rng.randint(2, 4)):
            lines.append("Question: " + L.QUESTIONS[attr].format(**slots))
            full = L.FACTS[attr][0].format(**slots)
            lines.append("Answer: " + (full if rng.random() < 0.5 else f"{getattr(c, attr)}."))
        return Document("\n".join(lines), "facts", {"entity": c.name, "kind": "qa"})
    if style < 0.3:  # a city entry, referring back to its country
        city = rng.choice(c.cities)
        first = "{city} is the capital of {name}." if city == c.capital else L.CITY_FIRST
        sents = [_fill(rng, first, city=city, **slots)]
        sents += _fill_some(rng, L.CITY_MORE, (2, 4), city=city, **slots)
        return Document(_sentences(sents), "facts", {"entity": city, "kind": "city"})
    attrs = list(L.FACTS)  # an encyclopedic entry: every quizzed attribute, often in canonical form
    rng.shuffle(attrs)
    sents = []
    for i, attr in enumerate(attrs):
        canonical, variants = L.FACTS[attr]
        sent = _fill(rng, canonical if rng.random() < 0.65 else rng.choice(variants), **slots)
        if i > 0 and rng.random() < 0.3:  # refer back instead of repeating the name
            sent = re.sub(rf"^(The [\w ]+ of ){c.name}\b", r"\1the country", sent)
            sent = re.sub(rf"^{c.name}\b", rng.choice(["It", "The country"]), sent)
        sents.append(sent)
        if rng.random() < 0.25:
            sents.append(_fill(rng, rng.choice(L.FACT_EXTRAS), **slots))
    return Document(_sentences(sents), "facts", {"entity": c.name, "kind": "country"})


def _biography_doc(rng: random.Random, world: World, index: int) -> Document:
    prof = rng.choice(PROFESSIONS)
    given, surname, gender = _person(rng)
    pro = L.PRONOUNS[gender]
    home = rng.choice(world.countries)
    lives = rng.choice(world.countries) if rng.random() < 0.4 else home
    year = rng.randint(1925, 1985)
    slots = {
        **pro,
        "full": f"{given} {surname}",
        "given": given,
        "surname": surname,
        "a_prof": _a(prof),
        "country": home.name,
        "language": home.language,
        "birth": rng.choice(home.cities),
        "city": rng.choice(lives.cities),
        "city_country": lives.name,
        "uni": rng.choice(rng.choice(world.countries).cities),
        "field": rng.choice(L.PROF_FIELDS[prof]),
        "year": year,
        "year1": year + rng.randint(20, 28),
        "year2": min(2023, year + rng.randint(30, 45)),
        "years": rng.randint(3, 30),
        "kids": rng.choice(["two", "three", "no", "four"]),
        "spouse": f"{rng.choice(L.GIVEN[rng.choice(GENDERS)])} {surname}",
        "prize": rng.choice(L.SURNAMES),
    }
    body = rng.sample(L.PROF_ACTS[prof], rng.randint(2, 4)) + rng.sample(L.BIO_LIFE, rng.randint(2, 4))
    rng.shuffle(body)
    sents = [_fill(rng, rng.choice(L.BIO_OPENINGS), **slots)]
    for template in body:
        sent = _fill(rng, template, **slots)
        if rng.random() < 0.25:  # refer by name instead of pronoun
            sent = re.sub(rf"^{pro['He']}\b", rng.choice([given, surname, f"{pro['title']} {surname}"]), sent)
        sents.append(sent)
    attrs = {"profession": prof, "gender": gender, "name": slots["full"]}
    return Document(_sentences(sents), "biography", attrs)


def _recipes_doc(rng: random.Random, world: World, index: int) -> Document:
    dish, main, veg = rng.choice(L.DISHES), rng.choice(L.MAINS), rng.choice(L.VEG)
    spice, liquid = rng.choice(L.SPICES), rng.choice(L.LIQUIDS)
    country = rng.choice(world.countries)
    title = _fill(rng, L.RECIPE_TITLE, dem=country.language, main=main.capitalize(), dish=dish, veg=veg)
    ingredients = [(main, rng.randint(2, 9) * 100, "grams"), (veg, rng.randint(2, 4), "")]
    ingredients += [(spice, rng.randint(1, 3), "teaspoons"), (liquid, rng.randint(1, 4), "cups")]
    for extra in ("flour", "olive oil", "butter"):
        if rng.random() < 0.4:
            ingredients.append((extra, rng.randint(1, 3), "tablespoons"))
    lines = [
        title,
        f"Serves {rng.randint(2, 8)}. Preparation time: {rng.randint(2, 12) * 5} minutes.",
        "Ingredients:",
    ]
    lines += [
        f"- {n} {(unit[:-1] if n == 1 else unit) + ' ' if unit else ''}{name}"
        for name, n, unit in ingredients
    ]
    lines.append("Method:")
    slots = {
        "veg": veg,
        "main": main,
        "spice": spice,
        "liquid": liquid,
        "temp": rng.choice([160, 180, 200, 220]),
    }
    slots |= {"m": rng.randint(3, 12), "m2": rng.randint(3, 18) * 5}
    steps = sorted(rng.sample(range(len(L.STEPS)), rng.randint(4, 7)))  # kept in cooking order
    lines += [f"{i}. {_fill(rng, L.STEPS[s], **slots)}" for i, s in enumerate(steps, 1)]
    if rng.random() < 0.3:
        lines.append(_fill(rng, L.RECIPE_NOTE, c=country.name, e=country.export))
    return Document("\n".join(lines), "recipes", {"dish": dish, "main": main})


def _medical_doc(rng: random.Random, world: World, index: int) -> Document:
    cond, med = rng.choice(world.medicines)
    info = L.CONDITIONS[cond]
    s0, s1, s2 = rng.sample(info["symptoms"], 3)
    slots = {**info, "c": cond, "C": cond.capitalize(), "s0": s0, "s1": s1, "s2": s2, "med": med}
    slots["dose"] = rng.choice([5, 10, 20, 50, 100, 250])
    style = rng.random()
    if style < 0.3:
        key = rng.choice(list(L.MED_QA))
        question, answer = L.MED_QA[key]
        extra = _fill(rng, rng.choice(L.MED_FACTS[4:]), **slots)
        text = f"Q: {_fill(rng, question, **slots)}\nA: {_fill(rng, answer, **slots)} {extra}"
    elif style < 0.55:
        gender = rng.choice(GENDERS)
        who = {"male": "man", "female": "woman"}[gender]
        sents = [
            _fill(
                rng, t, age=rng.randint(18, 85), who=who, n=rng.randint(2, 9), **L.PRONOUNS[gender], **slots
            )
            for t in L.MED_CASE
        ]
        text = _sentences(sents)
    else:
        text = _sentences(_fill_some(rng, L.MED_FACTS, (3, 6), **slots))
    return Document(text, "medical", {"condition": cond})


def _law_doc(rng: random.Random, world: World, index: int) -> Document:
    c = rng.choice(world.countries)
    person = " ".join(_person(rng)[:2])
    company = f"{rng.choice(L.SURNAMES)} & {rng.choice(L.SURNAMES)} Ltd"
    p, d = (person, company) if rng.random() < 0.5 else (company, person)
    slots = {"p": p, "d": d, "country": c.name, "capital": c.capital, "year": rng.randint(1950, 2023)}
    slots |= {"act": f"{c.language} {rng.choice(L.ACT_TOPICS)} Act {rng.randint(1850, 2020)}"}
    slots |= {"sec": rng.randint(1, 120), "sec2": rng.randint(1, 120), "n": rng.choice([7, 14, 30, 60, 90])}
    slots["duty"] = _fill(rng, rng.choice(L.DUTIES), e=c.export, r=c.river)
    if rng.random() < 0.4:  # a case report: the parties, then what happened, in order
        head = _fill(rng, L.CASE_HEAD, **slots)
        text = head + "\n" + _sentences([_fill(rng, t, **slots) for t in L.CASE_STEPS if rng.random() < 0.8])
    else:
        text = _sentences(_fill_some(rng, L.LAW_CLAUSES, (3, 6), **slots))
    return Document(text, "law", {"country": c.name})


def _verse_line(rng: random.Random, rhyme: str, name: str) -> str:
    slots = {"adj": rng.choice(L.V_ADJ), "noun": rng.choice(L.V_NOUN), "verb": rng.choice(L.V_VERB)}
    line = _fill(rng, rng.choice(L.V_LINES), R=rhyme, name=name.capitalize(), **slots)
    return line[0].upper() + line[1:]


def _verse_doc(rng: random.Random, world: World, index: int) -> Document:
    name, other = rng.sample(L.V_NAMES, 2)
    if rng.random() < 0.35:  # a scene: speakers and stage directions
        lines = [_fill(rng, "Enter {a} and {b}[, with attendants|].", a=name, b=other)]
        for speaker in rng.choices([name, other], k=rng.randint(2, 4)):
            a, b = rng.sample(rng.choice(L.RHYMES), 2)
            addressee = other if speaker == name else name
            lines += [
                f"{speaker}.",
                _verse_line(rng, a, addressee) + ",",
                _verse_line(rng, b, addressee) + ".",
            ]
        lines.append(rng.choice(["Exeunt.", f"Exit {name}.", "Exit."]))
        return Document("\n".join(lines), "verse", {"form": "scene"})
    lines = []
    for _ in range(rng.randint(2, 3)):  # quatrains rhyming ABAB, then a couplet
        (a1, a2), (b1, b2) = (rng.sample(g, 2) for g in rng.sample(L.RHYMES, 2))
        lines += [_verse_line(rng, w, name) + p for w, p in zip((a1, b1, a2, b2), ",;,.")]
    c1, c2 = rng.sample(rng.choice(L.RHYMES), 2)
    lines += ["  " + _verse_line(rng, c1, name) + ",", "  " + _verse_line(rng, c2, name) + "."]
    return Document("\n".join(lines), "verse", {"form": "sonnet"})


def _science_doc(rng: random.Random, world: World, index: int) -> Document:
    if rng.random() < 0.3:  # an invention (quizzable: who invented it)
        inv = world.inventions[index % len(world.inventions)]
        slots = {**inv.__dict__, **L.PRONOUNS[inv.gender], "surname": inv.inventor.split()[-1]}
        rest = [_fill(rng, t, **slots) for t in L.INVENTION_MORE] + [rng.choice(L.SCI_FACTS)]
        rng.shuffle(rest)
        return Document(
            _sentences([_fill(rng, L.INVENTION_FIRST, **slots), *rest]), "science", {"invention": inv.name}
        )
    qty = rng.choice(sorted(L.QTY_UNIT))
    slots = {"qty": qty, "unit": L.QTY_UNIT[qty], "mat": rng.choice(L.MATERIALS), "var": rng.choice(L.VARS)}
    slots |= {"city": rng.choice(rng.choice(world.countries).cities), "a_inst": _a(rng.choice(L.INSTRUMENTS))}
    slots |= {"num": rng.choice([2, 5, 12, 40, 100, 300]), "temp": rng.choice([4, 20, 77, 150])}
    slots["n"] = rng.choice(["three", "five", "ten", "twenty"])
    sents = [_fill(rng, L.SCI_REPORT[0], **slots), *_fill_some(rng, L.SCI_REPORT[1:], (2, 5), **slots)]
    if rng.random() < 0.6:
        sents.insert(rng.randint(1, len(sents)), rng.choice(L.SCI_FACTS))
    return Document(_sentences(sents), "science", {"topic": slots["mat"]})


def _spelling_doc(rng: random.Random, world: World, index: int) -> Document:
    lines = []
    for w in rng.sample(L.SPELL_WORDS, rng.randint(3, 6)):
        lines.append(_fill(rng, L.SPELL_LINE, w=w, W=w.capitalize(), l="-".join(w), f=w[0].upper()))
    return Document(" ".join(lines), "spelling", {"words": len(lines)})


_GENERATORS: dict[str, Callable[[random.Random, World, int], Document]] = {
    "facts": _facts_doc,
    "biography": _biography_doc,
    "recipes": _recipes_doc,
    "medical": _medical_doc,
    "law": _law_doc,
    "verse": _verse_doc,
    "science": _science_doc,
    "spelling": _spelling_doc,
}


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
        docs.append(_GENERATORS[domain](random.Random(f"lorasae-doc-{seed}-{i}"), world, index))
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
    if domain not in _GENERATORS:
        raise ValueError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    world, gen = build_world(seed), _GENERATORS[domain]
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
