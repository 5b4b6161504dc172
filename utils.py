"""The small shared module the original layout names: what the root scripts (`train_sae.py`,
`train_lora.py`) and notebooks reach for, re-exported from `lorasae` (all logic lives there): the command
line (`parse`, `parse_with_config_file`, `main_guard`: one-line errors), path conventions and device
parsing."""

from lorasae.core.cli import parse
from lorasae.core.config_files import parse_with_config_file
from lorasae.core.errors import main_guard
from lorasae.core.paths import (
    adapter_dir,
    examples_label,
    lora_json_path,
    plots_dir,
    results_csv,
    root,
    sae_curve_path,
    sae_dir,
    sae_tag,
)
from lorasae.core.runtime import parse_count, parse_device, parse_dtype, seed_everything

__all__ = [
    "adapter_dir",
    "examples_label",
    "lora_json_path",
    "main_guard",
    "parse",
    "parse_count",
    "parse_device",
    "parse_dtype",
    "parse_with_config_file",
    "plots_dir",
    "results_csv",
    "root",
    "sae_curve_path",
    "sae_dir",
    "sae_tag",
    "seed_everything",
]
