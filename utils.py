"""The small shared module the original layout names: path conventions and device parsing.
All logic lives in `lorasae`; this re-exports the pieces scripts and notebooks reach for."""

from lorasae.paths import (  # noqa: F401
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
from lorasae.runtime import parse_count, parse_device, parse_dtype, seed_everything  # noqa: F401
