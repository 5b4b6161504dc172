"""Command-line plumbing shared by every script: the common flags and one `parse` call.

Configs are `@dataclass`es parsed by simple-parsing; each field's docstring is its `--help` text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import simple_parsing
from simple_parsing import field

from lorasae.runtime import parse_count  # noqa: F401  (re-exported for `field(type=parse_count)`)

T = TypeVar("T")

CONFIG_FLAG = "config_file"
"""`--config_file`: every script takes one (the seed's flag name)."""


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
class SaeChoiceArgs:
    """Which SAE an eval uses, resolved by the store (`lorasae.store.resolve_sae`)."""

    sae: str | None = field(default=None, alias=["--sae_source"])
    """SAE: a folder (ours, SAELens or sparsify format) or a sae-lens release `release/sae_id`. Default: the
    SAE train_sae.py writes with default flags (the final TopK SAE of the default layer, expansion 8 and k;
    Gemma: Gemma Scope layer 12 if none is saved)."""

    layer: int | None = field(default=None, alias=["--sae_layer"])
    """Layer whose output the SAE reads (also --sae_layer, as train_lora.py). Default: the SAE's own layer;
    with no --sae, train_sae.py's default layer."""


class _Parser(simple_parsing.ArgumentParser):
    """A bad flag prints one line naming it (and where `--help` is), not the whole usage block."""

    def error(self, message: str):  # noqa: D102  (argparse's hook)
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help for every flag)\n")


def parse(config_class: type[T], argv: list[str] | None = None) -> T:
    """Parse `argv` (default: sys.argv) into `config_class` (the flags of `simple_parsing.parse`);
    `--config_file PATH` (JSON or YAML, e.g. `dataclasses.asdict` of the config) sets the defaults first
    and every flag on the command line overrides it."""
    parser = _Parser(
        nested_mode=simple_parsing.NestedMode.WITHOUT_ROOT,
        formatter_class=simple_parsing.SimpleHelpFormatter,
        add_config_path_arg=CONFIG_FLAG,
    )
    parser.add_arguments(config_class, dest="config")
    # read by the error boundary (`lorasae.errors`), listed here so that --help shows it
    parser.add_argument(
        "--debug", action="store_true", help="On an error, show the full traceback (also LORASAE_DEBUG=1)."
    )
    return parser.parse_args(argv).config


__all__ = ["CommonArgs", "SaeChoiceArgs", "field", "parse", "parse_count"]
