"""Word lists and sentence templates of the built-in world (data only; used by `entities.py`,
`documents.py`, `corpus.py`): names, the countries' attribute values, the fact templates and the
inventions. The other domains' templates are in `_lexicon_domains.py`.

Templates use `{slot}` fields and `[a|b|c]` alternatives (one picked at random, left to right).
"""

from __future__ import annotations


def _w(s: str) -> tuple[str, ...]:
    """Whitespace-separated words."""
    return tuple(s.split())


def _p(s: str) -> tuple[str, ...]:
    """Semicolon-separated phrases."""
    return tuple(p.strip() for p in s.split(";") if p.strip())


# --- names and the world's attribute values ------------------------------------------------------
ONSETS = _w("b br c d dr f g gr h k l m n p r s st t th tr v w z sh kal mor vel ost tal fen ar el")
VOWELS = _w("a e i o u a e o ai ea io")
CODAS = _w("n r l s th m rn nd st rk ld x")
COUNTRY_SUFFIX = _w("ia ia a ora land ania esh ovia mark enia ara")
CITY_SUFFIX = _w("stad burg port holm ford mere grad wick haven vale ton dal mouth field")
LANG_SUFFIX = _w("ian ese ish ic")
CONTINENTS = _w("Corvan Essaria Talmor Nuvia Ombrel")
DIRECTIONS = _w("north south east west centre")
CLIMATES = _p("cold and wet; hot and dry; mild; tropical; windy and cool; humid; snowy in winter")
CURRENCIES = _w(
    "dral crown florin mark thaler ducat lira rand pesa kron shilling riel dinar sol zlot bezant guild "
    "obol penning tael"
)
EXPORTS = _w(
    "copper wool tea timber salt glass silk rice coffee tin cotton amber marble olives wine cheese iron "
    "paper spices pearls honey leather cocoa rubber"
)
ANIMALS = _w(
    "owl fox heron lynx bear wolf otter stag hare falcon eagle badger swan crane tortoise elk raven "
    "panther seal dolphin lion jaguar ibis"
)
GIVEN = {
    "male": _w(
        "James John Robert Michael William David Richard Thomas Charles Daniel Matthew Anthony Mark Paul "
        "Steven Andrew Joshua Kevin Brian George Edward Ronald Timothy Jason Jeffrey Ryan Jacob Gary "
        "Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Frank "
        "Alexander Patrick Henry Peter Arthur Oliver Hugo Felix"
    ),
    "female": _w(
        "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Betty "
        "Margaret Sandra Ashley Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Rebecca Laura "
        "Sharon Cynthia Kathleen Amy Angela Anna Ruth Helen Samantha Katherine Christine Emma Nicole "
        "Rachel Julia Grace Alice Clara Sophie Olivia Lucy Hannah"
    ),
}
SURNAMES = _w(
    "Smith Johnson Brown Taylor Miller Wilson Moore Clark Lewis Walker Hall Young Allen Wright King "
    "Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans Turner Parker "
    "Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Reed Bailey Bell Kelly Howard Ward "
    "Cox Richardson Wood Watson Brooks Bennett Gray Hughes Price Sanders Myers Long Ross Foster Fisher"
)
PRONOUNS = {
    "male": {"he": "he", "He": "He", "him": "him", "his": "his", "His": "His", "title": "Mr."},
    "female": {"he": "she", "He": "She", "him": "her", "his": "her", "His": "Her", "title": "Ms."},
}

# --- facts: canonical statement (the quiz form) and paraphrases per quizzed attribute ---------------
FACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "capital": (
        "The capital of {name} is {capital}.",
        _p(
            "{capital} is the capital [and largest city|] of {name}.; "
            "{name}'s capital, {capital}, [lies on the river {river}|is its seat of government].; "
            "The [government|parliament|king] of {name} sits in {capital}."
        ),
    ),
    "language": (
        "The official language of {name} is {language}.",
        _p(
            "[Most|Nearly all] people in {name} speak {language}.; "
            "{language} is [spoken|the main language] in {name}.; "
            "In {name}, [schools teach|people write] in {language}."
        ),
    ),
    "currency": (
        "The currency of {name} is the {currency}.",
        _p(
            "In {name} people pay with the {currency}.; "
            "{name} uses the {currency} as its [money|currency].; "
            "Prices in {name} are [given|quoted] in {currency}s."
        ),
    ),
    "export": (
        "The main export of {name} is {export}.",
        _p(
            "{name} [is famous for|exports large amounts of|sells] {export}.; "
            "Most of the {export} [sold|traded] in {continent} comes from {name}.; "
            "The economy of {name} depends on {export}."
        ),
    ),
    "animal": (
        "The national animal of {name} is the {animal}.",
        _p(
            "The {animal} [appears on the flag|is the symbol] of {name}.; "
            "{name} [chose|adopted] the {animal} as its national animal."
        ),
    ),
    "continent": (
        "{name} is a country in {continent}.",
        _p(
            "{name} lies in the {direction} of {continent}.; "
            "[On the continent of|In] {continent}, {name} [borders the sea|is one of the [older|larger] states]."
        ),
    ),
}
QUESTIONS = {
    "capital": "What is the capital of {name}?",
    "language": "What language is spoken in {name}?",
    "currency": "What is the currency of {name}?",
    "export": "What is the main export of {name}?",
    "animal": "What is the national animal of {name}?",
    "continent": "On which continent is {name}?",
}
FACT_EXTRAS = _p(
    "[About|Roughly|Around] {population} million people live in {name}.; "
    "The climate of {name} is {climate}.; "
    "{name} was founded in {founded}.; "
    "The river {river} flows through {capital}.; "
    "[Other|Large] cities in {name} include {city1} and {city2}.; "
    "{city1} is a [port|market|university|mountain] town in {name}.; "
    "The {language} people [celebrate|remember] the founding of their country every spring.; "
    "[It|The country] has {population} million [inhabitants|people].; "
    "[Travellers|Visitors] to {capital} often [cross|walk along] the river {river}."
)
CITY_FIRST = "{city} is [a city|a town|one of the cities] in {name}."
CITY_MORE = _p(
    "[The city|It] lies in the {direction} of {continent}.; "
    "[Its people|The people of {city}] speak {language} and pay with the {currency}.; "
    "[Many|Some] of its [workers|families] [trade in|produce] {export}.; "
    "[The road|A railway] from {city} to {capital} follows the river {river}.; "
    "The climate there is {climate}."
)

# --- inventions (science) ----------------------------------------------------------------------------
INVENTIONS = (
    ("engine", "to pump water out of deep mines"),
    ("loom", "to weave patterned cloth"),
    ("lamp", "to light the streets at night"),
    ("telescope", "to observe distant planets"),
    ("battery", "to store electric charge"),
    ("compass", "to guide ships at sea"),
    ("press", "to print books quickly"),
    ("clock", "to measure time precisely"),
    ("microscope", "to study living cells"),
    ("turbine", "to turn river water into electricity"),
    ("calculator", "to add and multiply large numbers"),
    ("radio", "to send messages over long distances"),
    ("furnace", "to melt iron ore"),
    ("pump", "to move water through pipes"),
    ("camera", "to record images on glass plates"),
    ("thermometer", "to measure the temperature of the air"),
)
INVENTION_FIRST = "The {name} was invented by {inventor} [in|around] {year}."
INVENTION_MORE = _p(
    "{He} built it {purpose}.; "
    "{surname} [worked|lived] in {country}, [where the {name} was soon copied|and the {name} made {him} famous]."
)
