"""Config files for the scripts: `--config_file cfg.json|cfg.yaml` with command-line overrides, through
simple-parsing's own support (`add_config_path_arg`), and the resolved config saved next to a checkpoint.

The file gives defaults for any field (nested dataclasses as nested objects); every flag on the command
line overrides it. Nested fields get both their flat flag (`--sparsity`) and their dotted one
(`--sae_kwargs.sparsity`), simple-parsing's `ArgumentGenerationMode.BOTH`, so the flat flags of the
README keep working and the seed's dotted overrides (`--sae_kwargs.topk 50`) work too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from simple_parsing import ArgumentGenerationMode

from lorasae.core.atomic import atomic_write_json
from lorasae.core.cli import CONFIG_FLAG, parse

T = TypeVar("T")

CONFIG_FILENAME = "config.json"
"""The resolved config written into each SAE folder (loadable back with `--config_file`)."""


def parse_with_config_file(config_class: type[T], argv: list[str] | None = None) -> T:
    """Parse `argv` (default: sys.argv) into `config_class`; `--config_file PATH` (JSON or YAML) sets the
    defaults first (`lorasae.core.cli.parse`, with both the flat and the dotted flags of nested fields)."""
    return parse(config_class, argv, argument_generation_mode=ArgumentGenerationMode.BOTH)


def config_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (nested dataclasses as objects), what `--config_file` reads."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, folder: str | Path) -> Path:
    """Write `cfg` as `<folder>/config.json` (atomically) and return the path."""
    path = Path(folder) / CONFIG_FILENAME
    atomic_write_json(path, config_dict(cfg))
    return path


__all__ = ["CONFIG_FILENAME", "CONFIG_FLAG", "config_dict", "parse_with_config_file", "save_config"]
