"""The adapter-choice flags (which saved LoRA adapter an eval looks up when no folder is given): every eval
that has them takes the same flags with the same defaults as before they were one dataclass
(`lorasae.store.adapter_flags.AdapterChoiceArgs`), and its loader asks the store for the same
`AdapterFilter`. The parsers are built and the loaders called with the store's lookup replaced: nothing
is loaded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from flag_glossary_helpers import parse_script, script_flags

from lorasae.store import AdapterFilter

ADAPTER_CHOICE_OPTIONS = {"--rank", "--lora_rank", "--lora_span"}

# Pinned before the one dataclass: each eval's adapter-choice flags, {options: default as the glossary
# writes it}.
BEFORE = {
    "interp": {("--rank", "--lora_rank"): "—", ("--lora_span",): "—"},
    "dashboard": {("--rank", "--lora_rank"): "—", ("--lora_span",): "—"},
    "benchmarks": {("--rank", "--lora_rank"): "—"},
    "dark_matter": {("--lora_rank",): "16", ("--lora_span",): "—"},
}
# What the one dataclass adds: the spellings an eval lacked, with the meaning they have everywhere else
# (docs/FLAGS.md): benchmarks can ask for a layer span, dark_matter takes --rank as interp and dashboard do.
ADDED = {
    "interp": {},
    "dashboard": {},
    "benchmarks": {("--lora_span",): "—"},
    "dark_matter": {("--rank", "--lora_rank"): "16"},
}


def adapter_choice_flags(short: str) -> dict[tuple[str, ...], str]:
    return {f.options: f.default for f in script_flags(short) if ADAPTER_CHOICE_OPTIONS & set(f.options)}


@pytest.mark.parametrize("short", sorted(BEFORE))
def test_each_eval_takes_its_adapter_choice_flags_with_the_same_defaults(short: str):
    flags = adapter_choice_flags(short)
    before = {option: default for options, default in BEFORE[short].items() for option in options}
    now = {option: default for options, default in flags.items() for option in options}
    assert {o: now[o] for o in before} == before  # every flag it took, with the default it had
    added = {option: default for options, default in ADDED[short].items() for option in options}
    assert now == before | added


def _interp(argv: list[str], monkeypatch) -> AdapterFilter:
    from lorasae.interp import run

    asked = []
    monkeypatch.setattr(run, "resolve_adapter", lambda model, ref, adapter, want: asked.append(want))
    run.interp_adapter(parse_script("interp", argv), None)
    return asked[0]


def _dashboard(argv: list[str], monkeypatch) -> AdapterFilter:
    from lorasae.dashboard import run

    asked = []
    monkeypatch.setattr(run, "resolve_adapter", lambda model, ref, adapter, want: asked.append(want))
    run.dashboard_adapter(parse_script("dashboard", argv), None)
    return asked[0]


def _dark_matter(argv: list[str], monkeypatch) -> AdapterFilter:
    import lorasae.store
    from lorasae.darkmatter import cli

    asked = []

    def lookup(model, ref, want):
        asked.append(want)
        return Path("adapter")

    monkeypatch.setattr(lorasae.store, "external_ref", lambda source, layer: None)
    monkeypatch.setattr(lorasae.store, "default_adapter", lookup)
    monkeypatch.setattr(cli, "_paired", lambda adapter, sae: adapter)
    cli.resolve_adapter(parse_script("dark_matter", argv), "some/sae")
    return asked[0]


def _benchmarks(argv: list[str], monkeypatch) -> AdapterFilter:
    from lorasae.lmeval import pairing
    from lorasae.lmeval.plan import plan_run

    asked = []

    def lookup(model, ref, want, n_layers=None):
        asked.append(want)

    def find(model, tags, rank=None, lora_span=None, *rest, **kwargs):  # the original's adapters' lookup
        asked.append(AdapterFilter(rank, lora_span))

    monkeypatch.setattr(pairing, "find_sae", lambda model, layer, **family: None)
    monkeypatch.setattr(
        pairing, "external_ref", lambda source, layer: SimpleNamespace(source=source, layer=layer)
    )
    monkeypatch.setattr(pairing, "adapter_tags", lambda ref, layer: ["tag"])
    monkeypatch.setattr(pairing, "default_adapter", lookup)
    monkeypatch.setattr(pairing, "find_adapter", find)
    config = parse_script("benchmarks", ["--model_variant", "peft", *argv])
    pairing.resolve_pairing(config, plan_run(config), 26)
    return asked[0]


LOADERS = {"interp": _interp, "dashboard": _dashboard, "dark_matter": _dark_matter, "benchmarks": _benchmarks}
PICKS = [
    ("interp", [], AdapterFilter()),
    ("interp", ["--lora_rank", "4"], AdapterFilter(rank=4)),
    ("interp", ["--rank", "4", "--lora_span", "0-3"], AdapterFilter(rank=4, lora_span="0-3")),
    ("dashboard", [], AdapterFilter()),
    ("dashboard", ["--rank", "8"], AdapterFilter(rank=8)),
    ("dashboard", ["--lora_rank", "4", "--lora_span", "2-3"], AdapterFilter(rank=4, lora_span="2-3")),
    ("dark_matter", [], AdapterFilter(rank=16)),
    ("dark_matter", ["--lora_rank", "4", "--lora_span", "0-3"], AdapterFilter(rank=4, lora_span="0-3")),
    ("dark_matter", ["--lora_span", "1-2"], AdapterFilter(rank=16, lora_span="1-2")),
    ("benchmarks", ["--model", "tiny"], AdapterFilter()),
    ("benchmarks", ["--model", "tiny", "--lora_rank", "4"], AdapterFilter(rank=4)),
    ("benchmarks", ["--model", "tiny", "--rank", "2"], AdapterFilter(rank=2)),
    # the Gemma Scope settings: the original's rank-64 adapters on layers L+1…n-1 (n = 26 here)
    ("benchmarks", ["--model_size", "2"], AdapterFilter(rank=64, lora_span="13-25")),
    ("benchmarks", ["--model_size", "2", "--lora_rank", "16"], AdapterFilter(rank=16, lora_span="13-25")),
]


@pytest.mark.parametrize(("short", "argv", "want"), PICKS, ids=[f"{s} {' '.join(a)}" for s, a, _ in PICKS])
def test_each_eval_asks_the_store_for_the_same_adapter_filter(short, argv, want, monkeypatch):
    assert LOADERS[short](argv, monkeypatch) == want


# Dark Matter's result names carry the adapter's rank as `lorarank` (and in the digest of every differing
# setting, by the flag's name `lora_rank`); pinned with the script's code before the one dataclass.
DARK_MATTER_NAMES = [
    ([], ""),
    (["--lora_rank", "4"], "lorarank-4"),
    (["--lora_rank", "4", "--lora_span", "0-3"], "lorarank-4_lora_span-0-3"),
    (["--lora_rank", "4", "--ks", "2", "4"], "lorarank-4_ks-2--4_h-81e43ac3"),
    (["--lora_rank", "8", "--lora_span", "1-3", "--ks", "2"], "lorarank-8_ks-2_lora_span-1-3_h-ce85035b"),
    (["--lora_span", "0-3", "--ks", "2", "4"], "ks-2--4_lora_span-0-3_h-450a2997"),
]


@pytest.mark.parametrize(
    ("argv", "variant"), DARK_MATTER_NAMES, ids=[" ".join(a) for a, _ in DARK_MATTER_NAMES]
)
def test_dark_matter_results_keep_their_names(argv, variant, monkeypatch):
    import lorasae.model.load
    from lorasae.darkmatter.cli import result_variant

    monkeypatch.setattr(
        lorasae.model.load, "model_shape", lambda name: SimpleNamespace(n_layers=4, d_model=32)
    )
    assert result_variant(parse_script("dark_matter", ["--model", "m", *argv])) == variant
