"""The built-in world's entities, fixed by its seed: invented countries (capital, cities, language,
currency, export, animal, continent, ...), inventions and their inventors, medicines. `build_world(seed)`
is what every document of the corpus (`documents.py`) and every task built on it (quizzes, RAVEL, the
benchmarks) refer to."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from . import _lexicon as L
from . import _lexicon_domains as D

__all__ = ["GENDERS", "Country", "Invention", "World", "build_world"]

GENDERS = ("male", "female")


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
        (c, _coin(rng, taken, ("ol", "ine", "amab", "ex", "azole"), (2, 2))) for c in D.CONDITIONS
    )
    return World(seed=seed, countries=tuple(countries), inventions=tuple(inventions), medicines=medicines)
