"""train_sae.py's command line is a contract: the composed `TrainSaeConfig` (lorasae/train/options.py)
must offer exactly the flags main's flat config offered — same names, aliases, types, defaults, help.
The table in tests/data/train_sae_flags.json was written from main's parser before the refactor."""

from __future__ import annotations

import json
from pathlib import Path

import simple_parsing
from simple_parsing import ArgumentGenerationMode

from lorasae.core.cli import CONFIG_FLAG, _Parser
from lorasae.train.config import TrainSaeConfig

PINNED = Path(__file__).parent / "data" / "train_sae_flags.json"


def flag_table() -> dict[str, dict[str, object]]:
    """{first long option: its aliases, type, default, nargs and help} of train_sae.py's parser."""
    parser = _Parser(
        nested_mode=simple_parsing.NestedMode.WITHOUT_ROOT,
        formatter_class=simple_parsing.SimpleHelpFormatter,
        add_config_path_arg=CONFIG_FLAG,
        argument_generation_mode=ArgumentGenerationMode.BOTH,
    )
    parser.add_arguments(TrainSaeConfig, dest="config")
    parser._preprocessing()  # simple-parsing adds the dataclass's arguments here
    table = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        table[sorted(action.option_strings)[-1]] = {
            "options": sorted(action.option_strings),
            "dest": action.dest,
            "type": getattr(action.type, "__name__", repr(action.type)),
            "default": repr(action.default),
            "nargs": action.nargs,
            "help": action.help,
        }
    return table


def test_flags_are_exactly_mains():
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    now = flag_table()
    assert sorted(now) == sorted(pinned)
    for flag, spec in pinned.items():
        assert now[flag] == spec, flag


def test_config_files_of_the_repository_still_parse():
    from lorasae.core.config_files import parse_with_config_file

    configs = sorted((Path(__file__).parent.parent / "configs").glob("train-*"))
    assert configs
    for path in configs:
        cfg = parse_with_config_file(TrainSaeConfig, ["--config_file", str(path)])
        assert isinstance(cfg, TrainSaeConfig), path
