"""docs/FLAGS.md against every script's parser: every flag listed with its type and default, one row (one
meaning, one type) per name, every other spelling an alias that parses to the same config as the flag it
stands for, the original spellings read by value, the paper's README commands parsing, and every `--help`
ending with the pointer to the glossary. The parsers are built, never run."""

from __future__ import annotations

import re
import shlex
from collections import Counter

import pytest
from flag_glossary_helpers import REPO, SCRIPTS, parse_script, read_glossary, script_config, script_flags

from lorasae.core.cli import FLAGS_DOC, HELP_EPILOG, parse
from lorasae.core.errors import UsageError

SCRIPTS_DOC, ENTRIES, ALIASES = read_glossary()
ALIAS_OF = {
    (a.script, a.spelling): a.flag for a in ALIASES if a.spelling.startswith("-") and " " not in a.spelling
}


def canonical(short: str, options: tuple[str, ...]) -> str:
    """The one spelling of a flag that the glossary lists as a flag of this script."""
    names = [o for o in options if o in ENTRIES and short in ENTRIES[o].defaults]
    assert len(names) == 1, (
        f"{short}: {options} should have exactly one glossary row naming {short}, got {names}"
    )
    return names[0]


def negation(option: str, options: tuple[str, ...]) -> bool:
    """`--nowandb` of a bool flag `--wandb` (the glossary's `bool` type covers it)."""
    return option.startswith("--no") and f"--{option[4:]}" in options


def test_the_glossary_lists_every_script_by_its_path():
    assert SCRIPTS_DOC == {short: path for short, (path, _) in SCRIPTS.items()}


@pytest.mark.parametrize("short", sorted(SCRIPTS))
def test_every_flag_of_the_script_is_in_the_glossary_with_its_type_and_default(short: str):
    for flag in script_flags(short):
        name = canonical(short, flag.options)
        entry = ENTRIES[name]
        assert flag.type == entry.type, f"{short} {name}: type {flag.type}, the glossary says {entry.type}"
        assert flag.default == entry.defaults[short], (
            f"{short} {name}: default {flag.default!r}, the glossary says {entry.defaults[short]!r}"
        )
        assert flag.many == (short in entry.many), f"{short} {name}: takes a list: {flag.many}"
        for option in flag.options:
            if option != name and not negation(option, flag.options):
                assert ALIAS_OF.get((short, option)) == name, (
                    f"{short}: alias {option} of {name} is not listed"
                )


def test_every_glossary_row_names_flags_the_scripts_have():
    found = {short: {o for f in script_flags(short) for o in f.options} for short in SCRIPTS}
    for entry in ENTRIES.values():
        assert entry.defaults, f"{entry.flag} lists no script"
        for short in entry.defaults:
            assert entry.flag in found[short], f"docs/FLAGS.md: {short} has no {entry.flag}"
    for alias in ALIASES:
        if (alias.script, alias.spelling) in ALIAS_OF:
            assert alias.spelling in found[alias.script], (
                f"docs/FLAGS.md: {alias.script} has no {alias.spelling}"
            )
            assert alias.flag in ENTRIES and alias.script in ENTRIES[alias.flag].defaults


def test_one_name_has_one_meaning_and_one_type():
    # one row per name is read_glossary's own check; here every row is complete and an alias that is a
    # flag elsewhere with another meaning says which command it keeps working
    for entry in ENTRIES.values():
        assert entry.key and entry.type and entry.meaning, entry.flag
    for alias in ALIASES:
        other = ENTRIES.get(alias.spelling)
        if other is not None and other.key != ENTRIES[alias.flag].key:
            assert alias.origin, f"{alias.spelling} in {alias.script} means {alias.flag}: say why it is kept"
    keys = Counter(e.key for e in ENTRIES.values())
    shared = {k for k, n in keys.items() if n > 1}
    assert shared == {"sae-layer", "sae-k"}, shared  # --layer/--sae_layer, --k/--topk: documented pairs


# A value each flag type accepts that is no flag's default, so that the alias is seen to set the field.
SAMPLE = {"int": ["3"], "count": ["3k"], "float": ["0.25"], "str": ["x9"], "bool": ["false"]}


def samples(short: str, flag: str) -> list[str]:
    entry = ENTRIES[flag]
    if flag == "--architecture":
        return ["relu"]  # a value its check accepts
    if entry.type == "bool":
        return ["true" if entry.defaults[short] == "false" else "false"]
    values = SAMPLE[entry.type]
    return values * 2 if short in entry.many else values


@pytest.mark.parametrize("alias", sorted(ALIAS_OF, key=str), ids=lambda a: f"{a[0]}{a[1]}")
def test_an_alias_parses_to_the_same_config_as_the_flag_it_stands_for(alias: tuple[str, str]):
    short, spelling = alias
    flag = ALIAS_OF[alias]
    if ENTRIES[flag].type == "switch":
        return  # -h: argparse's own
    values = samples(short, flag)
    by_alias, by_flag = parse_script(short, [spelling, *values]), parse_script(short, [flag, *values])
    assert by_alias == by_flag
    assert by_flag != parse_script(short, []), f"{short} {flag} {values} changed nothing"


@pytest.mark.parametrize("short", ["saebench", "benchmarks"])
@pytest.mark.parametrize("spelling", ["--model_type", "--MODEL_TYPE"])
@pytest.mark.parametrize("variant", ["base", "peft"])
def test_model_type_base_or_peft_is_the_model_variant(short: str, spelling: str, variant: str):
    by_alias = parse_script(short, [spelling, variant])
    assert by_alias == parse_script(short, ["--model_variant", variant])
    assert by_alias.model_variant == variant and by_alias.model_type == parse_script(short, []).model_type


@pytest.mark.parametrize("short", ["saebench", "benchmarks"])
def test_model_type_with_any_other_value_is_the_model_as_in_every_script(short: str):
    config, by_model = parse_script(short, ["--model_type", "tiny"]), parse_script(short, ["--model", "tiny"])
    assert config.model_name == by_model.model_name == "tiny"
    assert config.model_variant == by_model.model_variant == parse_script(short, []).model_variant


def test_model_type_contradicting_model_variant_is_an_error_naming_both():
    with pytest.raises(UsageError, match="--model_type peft.*--model_variant base"):
        parse_script("saebench", ["--model_variant", "base", "--model_type", "peft"])


@pytest.mark.parametrize(
    ("argv", "splice", "source"),
    [
        (["--sae"], True, None),
        (["--sae", "--model_size", "9"], True, None),
        (["--sae", "true"], True, None),
        (["--sae", "no"], False, None),
        (["--sae", "release/id"], False, "release/id"),
        (["--sae", "release/id", "--splice_sae"], True, "release/id"),
        (["--sae", "--sae_source", "release/id"], True, "release/id"),
        (["--sae_source", "release/id", "--sae"], True, "release/id"),
        (["--sae=false", "--sae_source", "release/id"], False, "release/id"),
        (["--sae=release/id"], False, "release/id"),
    ],
)
def test_benchmarks_sae_is_the_source_and_a_bare_sae_the_splice_switch(argv, splice, source):
    config = parse_script("benchmarks", argv)
    assert (config.splice_sae, config.sae_source) == (splice, source)


# The paper's README (the seed), as written; [neuron_id] and [alpha_value] filled in.
SEED_COMMANDS = [
    'python train_sae.py --device 0 --model_type "gemma" --layer 12 --num_train_tokens 2_000_000_000',
    'python train_sae.py --device 0 --model_type "llama" --layer 12 --num_train_tokens 4_000_000_000',
    'python train_sae.py --device 0 --model_type "gemma" --layer 12 --num_train_tokens 2_000_000_000 --e2e',
    'python train_lora.py --device 0 --model_type "gemma" --sae_layer 12 --rank 64 --num_train_examples 15000 '
    "--save_model",
    'python train_lora.py --device 0 --model_type "gemma" --sae_layer 12 --rank 64 --num_train_examples 15000 '
    '--LoRA_layers "after" --save_model',
    "python eval/SAE-Bench/get_peft_dict.py",
    'python eval/SAE-Bench/run_eval.py --device 0 --model_type "peft"',
    'python eval/SAE-Bench/run_eval.py --device 0 --model_type "base"',
    "python eval/steering/make_positive_examples.py --device 0 --neuron 1234",
    "python eval/steering/tune_alpha.py --device 0 --neuron 1234 --tuning --alpha 2.5",
    "python eval/steering/run_eval.py --device 0 --neuron 1234 --alpha 2.5",
    'python eval/benchmarks/run_benchmarks.py --device 0 --model_type "base" --model_size 2',
    'python eval/benchmarks/run_benchmarks.py --device 0 --model_type "peft" --model_size 9 --sae',
]
BY_PATH = {path: short for short, (path, _) in SCRIPTS.items()}


def parse_command(command: str):
    words = shlex.split(command)
    assert words[0] == "python"
    return parse_script(BY_PATH[words[1]], words[2:])


@pytest.mark.parametrize("command", SEED_COMMANDS)
def test_the_seed_readme_commands_parse(command: str):
    parse_command(command)


def test_the_seed_readme_commands_mean_what_the_paper_meant():
    lora = parse_command(SEED_COMMANDS[3])
    assert (lora.model_name, lora.sae_layer, lora.rank, lora.num_train_examples, lora.save_model) == (
        "gemma", "12", 64, 15000, True,
    )  # fmt: skip
    assert parse_command(SEED_COMMANDS[4]).LoRA_layers == "after"
    peft, base = parse_command(SEED_COMMANDS[6]), parse_command(SEED_COMMANDS[7])
    assert (peft.model_variant, base.model_variant, peft.model_name) == ("peft", "base", "gemma")
    bench_base, bench_sae = parse_command(SEED_COMMANDS[11]), parse_command(SEED_COMMANDS[12])
    assert (bench_base.model_variant, bench_base.splice_sae, bench_base.model_name) == (
        "base", False, "google/gemma-2-2b",
    )  # fmt: skip
    assert (bench_sae.model_variant, bench_sae.splice_sae, bench_sae.model_name) == (
        "peft", True, "google/gemma-2-9b",
    )  # fmt: skip
    tune = parse_command(SEED_COMMANDS[9])
    assert (tune.neuron, tune.tuning, tune.alpha) == (1234, True, 2.5)


@pytest.mark.parametrize("short", sorted(SCRIPTS))
def test_every_help_ends_with_the_pointer_to_the_glossary(short: str, capsys):
    with pytest.raises(SystemExit):
        parse(script_config(short), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.endswith(" ".join(HELP_EPILOG.split())) and FLAGS_DOC in out


# Our README's commands: `python <script> ...` in a code span or block; a command with a placeholder
# (N, A, <x>, {a,b}, $(...), [...], …) or one that reads a file only the demo writes is not parsed as written.
README_COMMAND = re.compile(r"python (-m lorasae\.demo|[\w/.-]+\.py)((?: +[^`#|;&)\n]*)?)")
PLACEHOLDER = re.compile(r"^[A-Z]$|[<>{}$\[\]…]|\.\.\.")


def readme_commands() -> list[tuple[str, list[str]]]:
    scripts = {**BY_PATH, "-m lorasae.demo": "demo"}
    commands = []
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        for match in README_COMMAND.finditer(line):
            if match.group(1) not in scripts:
                continue
            argv = shlex.split(match.group(2))
            if any(PLACEHOLDER.search(a) for a in argv) or {"--help", "--config_file"} & set(argv):
                continue
            commands.append((scripts[match.group(1)], argv))
    return commands


def test_the_readme_commands_parse_as_written():
    commands = readme_commands()
    assert len(commands) >= 30, commands  # the README's post-demo, scaling and seed-command sections
    for short, argv in commands:
        parse_script(short, argv)
