"""The documents of the built-in corpus: template helpers and one generator per labelled domain,
`(rng, world, index within the domain) -> Document` (`GENERATORS`); `corpus.py` schedules them."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _lexicon as L
from . import _lexicon_domains as D
from .entities import GENDERS, Country, World

__all__ = ["GENERATORS", "Document"]


@dataclass(frozen=True)
class Document:
    text: str
    domain: str
    attrs: dict = field(default_factory=dict)


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
    prof = rng.choice(D.PROFESSIONS)
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
        "field": rng.choice(D.PROF_FIELDS[prof]),
        "year": year,
        "year1": year + rng.randint(20, 28),
        "year2": min(2023, year + rng.randint(30, 45)),
        "years": rng.randint(3, 30),
        "kids": rng.choice(["two", "three", "no", "four"]),
        "spouse": f"{rng.choice(L.GIVEN[rng.choice(GENDERS)])} {surname}",
        "prize": rng.choice(L.SURNAMES),
    }
    body = rng.sample(D.PROF_ACTS[prof], rng.randint(2, 4)) + rng.sample(D.BIO_LIFE, rng.randint(2, 4))
    rng.shuffle(body)
    sents = [_fill(rng, rng.choice(D.BIO_OPENINGS), **slots)]
    for template in body:
        sent = _fill(rng, template, **slots)
        if rng.random() < 0.25:  # refer by name instead of pronoun
            sent = re.sub(rf"^{pro['He']}\b", rng.choice([given, surname, f"{pro['title']} {surname}"]), sent)
        sents.append(sent)
    attrs = {"profession": prof, "gender": gender, "name": slots["full"]}
    return Document(_sentences(sents), "biography", attrs)


def _recipes_doc(rng: random.Random, world: World, index: int) -> Document:
    dish, main, veg = rng.choice(D.DISHES), rng.choice(D.MAINS), rng.choice(D.VEG)
    spice, liquid = rng.choice(D.SPICES), rng.choice(D.LIQUIDS)
    country = rng.choice(world.countries)
    title = _fill(rng, D.RECIPE_TITLE, dem=country.language, main=main.capitalize(), dish=dish, veg=veg)
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
    steps = sorted(rng.sample(range(len(D.STEPS)), rng.randint(4, 7)))  # kept in cooking order
    lines += [f"{i}. {_fill(rng, D.STEPS[s], **slots)}" for i, s in enumerate(steps, 1)]
    if rng.random() < 0.3:
        lines.append(_fill(rng, D.RECIPE_NOTE, c=country.name, e=country.export))
    return Document("\n".join(lines), "recipes", {"dish": dish, "main": main})


def _medical_doc(rng: random.Random, world: World, index: int) -> Document:
    cond, med = rng.choice(world.medicines)
    info = D.CONDITIONS[cond]
    s0, s1, s2 = rng.sample(info["symptoms"], 3)
    slots = {**info, "c": cond, "C": cond.capitalize(), "s0": s0, "s1": s1, "s2": s2, "med": med}
    slots["dose"] = rng.choice([5, 10, 20, 50, 100, 250])
    style = rng.random()
    if style < 0.3:
        key = rng.choice(list(D.MED_QA))
        question, answer = D.MED_QA[key]
        extra = _fill(rng, rng.choice(D.MED_FACTS[4:]), **slots)
        text = f"Q: {_fill(rng, question, **slots)}\nA: {_fill(rng, answer, **slots)} {extra}"
    elif style < 0.55:
        gender = rng.choice(GENDERS)
        who = {"male": "man", "female": "woman"}[gender]
        sents = [
            _fill(
                rng, t, age=rng.randint(18, 85), who=who, n=rng.randint(2, 9), **L.PRONOUNS[gender], **slots
            )
            for t in D.MED_CASE
        ]
        text = _sentences(sents)
    else:
        text = _sentences(_fill_some(rng, D.MED_FACTS, (3, 6), **slots))
    return Document(text, "medical", {"condition": cond})


def _law_doc(rng: random.Random, world: World, index: int) -> Document:
    c = rng.choice(world.countries)
    person = " ".join(_person(rng)[:2])
    company = f"{rng.choice(L.SURNAMES)} & {rng.choice(L.SURNAMES)} Ltd"
    p, d = (person, company) if rng.random() < 0.5 else (company, person)
    slots = {"p": p, "d": d, "country": c.name, "capital": c.capital, "year": rng.randint(1950, 2023)}
    slots |= {"act": f"{c.language} {rng.choice(D.ACT_TOPICS)} Act {rng.randint(1850, 2020)}"}
    slots |= {"sec": rng.randint(1, 120), "sec2": rng.randint(1, 120), "n": rng.choice([7, 14, 30, 60, 90])}
    slots["duty"] = _fill(rng, rng.choice(D.DUTIES), e=c.export, r=c.river)
    if rng.random() < 0.4:  # a case report: the parties, then what happened, in order
        head = _fill(rng, D.CASE_HEAD, **slots)
        text = head + "\n" + _sentences([_fill(rng, t, **slots) for t in D.CASE_STEPS if rng.random() < 0.8])
    else:
        text = _sentences(_fill_some(rng, D.LAW_CLAUSES, (3, 6), **slots))
    return Document(text, "law", {"country": c.name})


def _verse_line(rng: random.Random, rhyme: str, name: str) -> str:
    slots = {"adj": rng.choice(D.V_ADJ), "noun": rng.choice(D.V_NOUN), "verb": rng.choice(D.V_VERB)}
    line = _fill(rng, rng.choice(D.V_LINES), R=rhyme, name=name.capitalize(), **slots)
    return line[0].upper() + line[1:]


def _verse_doc(rng: random.Random, world: World, index: int) -> Document:
    name, other = rng.sample(D.V_NAMES, 2)
    if rng.random() < 0.35:  # a scene: speakers and stage directions
        lines = [_fill(rng, "Enter {a} and {b}[, with attendants|].", a=name, b=other)]
        for speaker in rng.choices([name, other], k=rng.randint(2, 4)):
            a, b = rng.sample(rng.choice(D.RHYMES), 2)
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
        (a1, a2), (b1, b2) = (rng.sample(g, 2) for g in rng.sample(D.RHYMES, 2))
        lines += [_verse_line(rng, w, name) + p for w, p in zip((a1, b1, a2, b2), ",;,.")]
    c1, c2 = rng.sample(rng.choice(D.RHYMES), 2)
    lines += ["  " + _verse_line(rng, c1, name) + ",", "  " + _verse_line(rng, c2, name) + "."]
    return Document("\n".join(lines), "verse", {"form": "sonnet"})


def _science_doc(rng: random.Random, world: World, index: int) -> Document:
    if rng.random() < 0.3:  # an invention (quizzable: who invented it)
        inv = world.inventions[index % len(world.inventions)]
        slots = {**inv.__dict__, **L.PRONOUNS[inv.gender], "surname": inv.inventor.split()[-1]}
        rest = [_fill(rng, t, **slots) for t in L.INVENTION_MORE] + [rng.choice(D.SCI_FACTS)]
        rng.shuffle(rest)
        return Document(
            _sentences([_fill(rng, L.INVENTION_FIRST, **slots), *rest]), "science", {"invention": inv.name}
        )
    qty = rng.choice(sorted(D.QTY_UNIT))
    slots = {"qty": qty, "unit": D.QTY_UNIT[qty], "mat": rng.choice(D.MATERIALS), "var": rng.choice(D.VARS)}
    slots |= {"city": rng.choice(rng.choice(world.countries).cities), "a_inst": _a(rng.choice(D.INSTRUMENTS))}
    slots |= {"num": rng.choice([2, 5, 12, 40, 100, 300]), "temp": rng.choice([4, 20, 77, 150])}
    slots["n"] = rng.choice(["three", "five", "ten", "twenty"])
    sents = [_fill(rng, D.SCI_REPORT[0], **slots), *_fill_some(rng, D.SCI_REPORT[1:], (2, 5), **slots)]
    if rng.random() < 0.6:
        sents.insert(rng.randint(1, len(sents)), rng.choice(D.SCI_FACTS))
    return Document(_sentences(sents), "science", {"topic": slots["mat"]})


def _spelling_doc(rng: random.Random, world: World, index: int) -> Document:
    lines = []
    for w in rng.sample(D.SPELL_WORDS, rng.randint(3, 6)):
        lines.append(_fill(rng, D.SPELL_LINE, w=w, W=w.capitalize(), l="-".join(w), f=w[0].upper()))
    return Document(" ".join(lines), "spelling", {"words": len(lines)})


GENERATORS: dict[str, Callable[[random.Random, World, int], Document]] = {
    "facts": _facts_doc,
    "biography": _biography_doc,
    "recipes": _recipes_doc,
    "medical": _medical_doc,
    "law": _law_doc,
    "verse": _verse_doc,
    "science": _science_doc,
    "spelling": _spelling_doc,
}
