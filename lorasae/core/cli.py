"""Command-line plumbing shared by every script: the common flags and one `parse` call.

Configs are `@dataclass`es parsed by simple-parsing; each field's docstring is its `--help` text.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import simple_parsing
from simple_parsing import field

from lorasae.core.atomic import read_config_file
from lorasae.core.errors import LorasaeError, UsageError, note_config_origins
from lorasae.core.runtime import parse_count  # noqa: F401  (re-exported for `field(type=parse_count)`)

T = TypeVar("T")

CONFIG_FLAG = "config_file"
"""`--config_file`: every script takes one (the seed's flag name)."""

FLAGS_DOC = "docs/FLAGS.md"
"""The flag glossary: every flag of every script, one name, one meaning, one type."""

HELP_EPILOG = (
    f"Every flag of every script (one name, one meaning, one type; the original repositories' spellings "
    f"that are aliases): {FLAGS_DOC}."
)
"""The last lines of every script's `--help`."""

MODEL_VARIANTS: tuple[str, ...] = ("base", "peft")
"""`--model_variant`: the model as it is (base) or with its LoRA adapter (peft)."""


@dataclass
class CommonArgs:
    """Flags every script takes."""

    device: str | None = None
    """'cpu', a GPU index (0) or 'cuda:N'. Default: the first GPU if any, else the CPU."""

    model_type: str = "gemma"
    """Registered model: gemma (google/gemma-2-2b), llama (meta-llama/Llama-3.2-1B) or tiny (built-in)."""

    model: str | None = None
    """Any Hugging Face causal LM id or local folder; overrides --model_type."""

    dataset: str | None = None
    """Text source: 'builtin', a hub dataset ('redpajama', 'pile', or an id) or a local txt/jsonl/parquet
    file or folder. Default: builtin for the tiny model, RedPajama otherwise."""

    dtype: str = "auto"
    """Model dtype: auto (bfloat16 on CUDA with the SAE in float32 under bf16 autocast, TF32 matmuls;
    float32 on the CPU), float32 (the original's numerics) or bfloat16."""

    seed: int = 42
    """Random seed (data order and initialisation)."""

    wandb: bool = False
    """Log to Weights & Biases (off by default)."""

    @property
    def model_name(self) -> str:
        return self.model or self.model_type


@dataclass
class SaeArchitectureArgs:
    """`--architecture` of every script that picks one of our saved SAEs (the evals' `SaeChoiceArgs`,
    train_lora.py, run_benchmarks.py): train_sae.py's flag, read back by the store (`lorasae.store.find_sae`)."""

    architecture: str = "topk"
    """Dictionary architecture of our saved SAE to use when no --sae is given (train_sae.py's
    --architecture; read from each SAE's run record or cfg.json, never its folder name): topk (the
    default, the paper's) | relu | batchtopk | matryoshka | jumprelu | transcoder | skip_transcoder."""


@dataclass
class SaeChoiceArgs(SaeArchitectureArgs):
    """Which SAE an eval uses, resolved by the store (`lorasae.store.chosen_sae`)."""

    sae: str | None = field(default=None, alias=["--sae_source"])
    """SAE: a folder (ours, SAELens or sparsify format) or a sae-lens release `release/sae_id`. Default: the
    SAE train_sae.py writes with default flags (the final TopK SAE of the default layer, expansion 8 and k;
    Gemma: Gemma Scope layer 12 if none is saved)."""

    layer: int | None = field(default=None, alias=["--sae_layer"])
    """Layer whose output the SAE reads (also --sae_layer, as train_lora.py). Default: the SAE's own layer;
    with no --sae, train_sae.py's default layer."""


@dataclass(frozen=True)
class SwitchAlias:
    """The original's switch spelling `spelling` of the bool flag `switch`, where `spelling` is now a flag
    that takes a value: given bare (no value follows) or with true/yes/false/no, it is `switch`."""

    spelling: str
    switch: str


SWITCH_WORDS = ("true", "yes", "false", "no")


def translate_switch_aliases(argv: Sequence[str], aliases: Sequence[SwitchAlias]) -> list[str]:
    """`argv` with each switch alias rewritten to its switch (`--sae` -> `--splice_sae`, `--sae false` ->
    `--splice_sae false`); the spelling followed by any other value is left alone (that flag's own value)."""
    switches = {a.spelling: a.switch for a in aliases}
    out, words = [], list(argv)
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if name not in switches:
            out.append(word)
        elif eq:
            out.append(f"{switches[name]}={value}" if value.lower() in SWITCH_WORDS else word)
        else:
            following = words[i + 1] if i + 1 < len(words) else None
            bare = following is None or following.startswith("-") or following.lower() in SWITCH_WORDS
            out.append(switches[name] if bare else word)
    return out


def split_model_type(
    model_type: str | None, model_variant: str, default_type: str | None, default_variant: str
) -> tuple[str | None, str]:
    """`(model_type, model_variant)` with the original's `--model_type base|peft` (and `--MODEL_TYPE`)
    read by value: base or peft is `--model_variant` (the model type falls back to `default_type`); any
    other value is the model. A base/peft `model_type` contradicting a `model_variant` that is not the
    default (`--model_variant base --model_type peft` where peft is the default) is an error."""
    if model_type not in MODEL_VARIANTS:
        return model_type, model_variant
    if model_variant not in (default_variant, model_type):
        raise UsageError(
            f"--model_type {model_type} (the original's spelling of --model_variant) contradicts "
            f"--model_variant {model_variant}: give one of them ({FLAGS_DOC})"
        )
    return default_type, model_type


class _Parser(simple_parsing.ArgumentParser):
    """A bad flag raises `UsageError`: one line naming the flag, or the config file and line it came from,
    not the whole usage block (`--help` still prints it)."""

    argv: tuple[str, ...] = ()
    config_files: tuple[Path, ...] = ()

    def error(self, message: str):  # noqa: D102  (argparse's hook)
        raise UsageError(usage_message(self.prog, message, self.argv, self.config_files))


def usage_message(prog: str, message: str, argv: Sequence[str], config_files: Sequence[Path]) -> str:
    """argparse's `message` as one line: `--flag: reason`, or, when the value came from a config file
    (the flag is not on the command line), `file, line N: field: reason; fix it by hand at line N`."""
    match = re.match(r"argument (\S+): (.*)", message, re.DOTALL)
    if not match:
        return f"{message} (`{prog} --help` lists every flag)"
    options, reason = match.group(1).split("/"), " ".join(match.group(2).split())
    given = [o for o in options if any(a == o or a.startswith(f"{o}=") for a in argv)]
    if given:
        return f"{given[0]}: {reason} (`{prog} --help` lists every flag)"
    if config_files:
        key = options[-1].lstrip("-").rsplit(".", 1)[-1]
        for path in config_files:
            line = key_line(path, key)
            if line is not None:
                return f"{path}, line {line}: {key}: {reason}; fix it by hand at line {line}"
        files = ", ".join(str(p) for p in config_files)
        return f"{options[-1]}: {reason} (from {files}); fix it there by hand"
    return f"{options[-1]}: {reason} (`{prog} --help` lists every flag)"  # e.g. a required flag


def key_line(path: Path, key: str) -> int | None:
    """The first line of a JSON/YAML config file that sets `key` (None when none does)."""
    pattern = re.compile(rf"""^\s*(?:-\s*)?["']?{re.escape(key)}["']?\s*:""")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for number, line in enumerate(lines, 1):
        if pattern.search(line) or re.search(rf"""["']{re.escape(key)}["']\s*:""", line):
            return number
    return None


def config_file_paths(argv: Sequence[str]) -> list[Path]:
    """The files given to `--config_file` (`--config_file a.yaml b.yaml`, `--config_file=a.yaml`)."""
    flag, out, taking = f"--{CONFIG_FLAG}", [], False
    for arg in argv:
        if arg.startswith(f"{flag}="):
            out.append(Path(arg.split("=", 1)[1]))
            taking = False
        elif arg == flag:
            taking = True
        elif taking and not arg.startswith("-"):
            out.append(Path(arg))
        else:
            taking = False
    return out


def check_config_file(path: Path) -> list[str]:
    """Read `path` before simple-parsing does: a missing, non-UTF-8 or malformed file, or one that is not
    a mapping, raises an error naming the file (and the line to fix). Returns the settings it sets
    (nested ones by their own name)."""
    data = read_config_file(path)
    if data is None:
        raise UsageError(
            f"{path} is empty: write one `setting: value` per line, or leave out --{CONFIG_FLAG}."
        )
    if not isinstance(data, dict):
        raise UsageError(
            f"{path} should hold a mapping of setting: value (as `--help` lists them), not "
            f"{type(data).__name__}; fix it by hand."
        )
    return [str(k) for k, v in data.items() for k in ([k] if not isinstance(v, dict) else [k, *v])]


def build_parser(config_class: type, **parser_kwargs: Any) -> _Parser:
    """The parser of `config_class` as every script builds it (`--config_file`, `--debug` and the epilogue
    linking the flag glossary included); its flags are added on the first parse (`flag_actions` adds them
    without parsing)."""
    parser_kwargs.setdefault("epilog", HELP_EPILOG)
    parser = _Parser(
        nested_mode=simple_parsing.NestedMode.WITHOUT_ROOT,
        formatter_class=simple_parsing.SimpleHelpFormatter,
        add_config_path_arg=CONFIG_FLAG,
        **parser_kwargs,
    )
    parser.add_arguments(config_class, dest="config")
    # read by the error boundary (`lorasae.core.errors`), listed here so that --help shows it
    parser.add_argument(
        "--debug", action="store_true", help="On an error, show the full traceback (also LORASAE_DEBUG=1)."
    )
    return parser


def flag_actions(config_class: type, **parser_kwargs: Any) -> list[Any]:
    """The argparse actions of `config_class`'s parser (one per flag, with every spelling in
    `option_strings`), built without parsing anything; `--config_file` included."""
    parser = build_parser(config_class, **parser_kwargs)
    parser._preprocessing([])  # simple-parsing adds the dataclass fields' flags here
    config = argparse.Action([f"--{CONFIG_FLAG}"], CONFIG_FLAG, nargs="*", type=Path)
    return [config, *(a for a in parser._actions if a.option_strings)]


def parse(config_class: type[T], argv: Sequence[str] | None = None, **parser_kwargs: Any) -> T:
    """Parse `argv` (default: sys.argv) into `config_class` (the flags of `simple_parsing.parse`);
    `--config_file PATH` (JSON or YAML, e.g. `dataclasses.asdict` of the config) sets the defaults first
    and every flag on the command line overrides it. A bad flag or config file raises `UsageError` (or
    `CorruptFileError`) naming it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = translate_switch_aliases(argv, getattr(config_class, "SWITCH_ALIASES", ()))
    files = config_file_paths(argv)
    origins = {}
    for path in files:
        for key in check_config_file(path):
            flag = f"--{key}"
            if not any(a == flag or a.startswith(f"{flag}=") for a in argv):  # the command line wins
                line = key_line(path, key)
                origins[key] = f"{path}, line {line}" if line else str(path)
    note_config_origins(origins)
    parser = build_parser(config_class, **parser_kwargs)
    parser.argv, parser.config_files = tuple(argv), tuple(files)
    try:
        return parser.parse_args(argv).config
    except RuntimeError as err:  # simple-parsing: a config file key that is no field
        unknown = re.match(r"(\[.*?\]) are not fields of", str(err))
        if not (unknown and files):
            raise
        keys = ast.literal_eval(unknown.group(1))
        where = ", ".join(
            f"{path}, line {key_line(path, key)}" for path in files for key in keys if key_line(path, key)
        )
        raise UsageError(
            f"{where or ', '.join(map(str, files))}: unknown setting {', '.join(map(repr, keys))} "
            f"(`--help` lists every setting); fix it by hand."
        ) from err
    except (ValueError, TypeError) as err:  # a config's own check of a value
        if not files or isinstance(err, LorasaeError):
            raise
        raise UsageError(
            f"{' '.join(str(err).split())} (settings read from {', '.join(map(str, files))}: if the value "
            "came from there, fix it by hand)"
        ) from err


__all__ = [
    "FLAGS_DOC",
    "HELP_EPILOG",
    "MODEL_VARIANTS",
    "CommonArgs",
    "SaeArchitectureArgs",
    "SaeChoiceArgs",
    "SwitchAlias",
    "build_parser",
    "field",
    "flag_actions",
    "parse",
    "parse_count",
    "split_model_type",
    "translate_switch_aliases",
]
