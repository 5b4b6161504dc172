"""Every script's flags read from its parser (built, not run), and docs/FLAGS.md read back, for
tests/test_flag_glossary.py."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simple_parsing import ArgumentGenerationMode

from lorasae.core.cli import flag_actions, parse
from lorasae.core.runtime import parse_count

REPO = Path(__file__).resolve().parent.parent
GLOSSARY = REPO / "docs" / "FLAGS.md"

# short name (the glossary's) -> (script path, its config class)
SCRIPTS: dict[str, tuple[str, str]] = {
    "train_sae": ("train_sae.py", "TrainSaeConfig"),
    "train_lora": ("train_lora.py", "TrainLoraConfig"),
    "sweep": ("sweep.py", "SweepConfig"),
    "demo": ("lorasae/demo/main.py", "DemoConfig"),
    "saebench": ("eval/SAE-Bench/run_eval.py", "SaeBenchArgs"),
    "peft_dict": ("eval/SAE-Bench/get_peft_dict.py", "Config"),
    "positives": ("eval/steering/make_positive_examples.py", "Config"),
    "tune_alpha": ("eval/steering/tune_alpha.py", "Config"),
    "steering": ("eval/steering/run_eval.py", "Config"),
    "benchmarks": ("eval/benchmarks/run_benchmarks.py", "BenchmarkConfig"),
    "dark_matter": ("eval/dark_matter/run.py", "DarkMatterArgs"),
    "dictionaries": ("eval/dictionaries/run.py", "DictionariesConfig"),
    "dm_tutorial": ("eval/dark_matter/tutorial.py", "TutorialArgs"),
    "interp": ("eval/interp_analysis/run.py", "InterpArgs"),
    "dashboard": ("eval/dashboard/run.py", "DashboardArgs"),
    "grok": ("eval/grok/run.py", "GrokStudyConfig"),
}
BOTH_MODE = {"train_sae"}  # parsed with flat and dotted flags (`lorasae.core.config_files`)

_loaded: dict[str, type] = {}


def script_config(short: str) -> type:
    """The config class of a script, imported from the script file (its main runs only under __main__)."""
    if short not in _loaded:
        path, name = SCRIPTS[short]
        spec = importlib.util.spec_from_file_location(f"glossary_script_{short}", REPO / path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
        spec.loader.exec_module(module)
        _loaded[short] = getattr(module, name)
    return _loaded[short]


def parser_kwargs(short: str) -> dict[str, Any]:
    return {"argument_generation_mode": ArgumentGenerationMode.BOTH} if short in BOTH_MODE else {}


def parse_script(short: str, argv: list[str]) -> Any:
    """`argv` parsed as the script parses it (nothing runs)."""
    return parse(script_config(short), argv, **parser_kwargs(short))


@dataclass(frozen=True)
class Flag:
    """One flag of one script as its parser defines it."""

    options: tuple[str, ...]
    type: str  # str, int, float, count, bool, path, switch
    many: bool  # takes a list
    default: str


def type_name(action: argparse.Action) -> str:
    if action.nargs == 0:  # --help, --debug
        return "switch"
    kind = action.type
    if kind is None:
        return "str"
    if kind is parse_count:
        return "count"
    if kind is Path:
        return "path"
    name = getattr(kind, "__name__", "")
    return "bool" if name == "str2bool" else name


def default_text(value: Any) -> str:
    """A default as the glossary writes it: `—` for none, lists as `a b c`."""
    if value is None or value == argparse.SUPPRESS:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return " ".join(default_text(v) for v in value) if value else "[]"
    return str(value)


def script_flags(short: str) -> list[Flag]:
    """Every flag of the script's parser (`--config_file`, `--debug`, `--help` included)."""
    flags = []
    for action in flag_actions(script_config(short), **parser_kwargs(short)):
        many = action.nargs in ("*", "+") or isinstance(action, argparse._AppendAction)
        flags.append(
            Flag(tuple(action.option_strings), type_name(action), many, default_text(action.default))
        )
    return flags


# --- docs/FLAGS.md ----------------------------------------------------------------------------------


@dataclass
class Entry:
    """A row of the glossary's flag table."""

    flag: str
    key: str
    type: str
    defaults: dict[str, str] = field(default_factory=dict)  # script -> default
    many: set[str] = field(default_factory=set)  # scripts where it takes a list
    meaning: str = ""


@dataclass(frozen=True)
class Alias:
    """A row of the glossary's alias table: `spelling` in `script` stands for `flag`."""

    spelling: str
    script: str
    flag: str
    origin: str


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under `## heading`, cells stripped."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    cells = (re.split(r"(?<!\\)\|", line.strip()[1:-1]) for line in rows[2:])  # `\|` is a pipe in a cell
    return [[c.strip().replace("\\|", "|") for c in row] for row in cells]


def code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"docs/FLAGS.md: expected one `code` cell, got {cell!r}"
    return match.group(1)


def script_defaults(cell: str) -> tuple[dict[str, str], set[str]]:
    """`train_sae: 12 · sweep (list): 1 2` -> ({script: default}, {scripts taking a list})."""
    defaults, many = {}, set()
    for item in cell.split(" · "):
        match = re.fullmatch(r"(\w+)( \(list\))?: `(.*)`", item.strip())
        assert match, f"docs/FLAGS.md: bad script entry {item!r} (write `script: `default``)"
        defaults[match.group(1)] = match.group(3)
        if match.group(2):
            many.add(match.group(1))
    return defaults, many


def read_glossary(text: str | None = None) -> tuple[dict[str, str], dict[str, Entry], list[Alias]]:
    """(scripts {short: path}, flags {flag: entry}, aliases) of docs/FLAGS.md."""
    text = GLOSSARY.read_text(encoding="utf-8") if text is None else text
    scripts = {code(short): code(path) for short, path, *_ in table_rows(text, "Scripts")}
    entries: dict[str, Entry] = {}
    for flag, key, kind, where, meaning in table_rows(text, "Flags"):
        name = code(flag)
        assert name not in entries, f"docs/FLAGS.md: {name} has two rows"
        defaults, many = script_defaults(where)
        entries[name] = Entry(name, code(key), code(kind), defaults, many, meaning)
    aliases = []
    for spelling, where, flag, origin in table_rows(text, "Aliases"):
        for script in where.split(", "):
            aliases.append(Alias(code(spelling), script.strip(), code(flag), origin))
    return scripts, entries, aliases
