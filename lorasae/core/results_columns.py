"""The columns of `data/results.csv` (one row per LoRA run, SPEC §3.4), in order, and which hold text.

The writer (`lorasae.lora.outputs.results_row`) and the reader (`lorasae.results.load_results_csv`) both
take them from here, so the two cannot drift apart. A leaf module: the writer does not import pandas and
the reader does not import torch to learn the column names.
"""

from __future__ import annotations

RESULTS_COLUMNS: tuple[str, ...] = (
    "model",
    "sae_tag",
    "sae_source",
    "sae_layers",
    "lora_layers",
    "rank",
    "num_examples",
    "sae_width",
    "sae_l0",
    "checkpoint_pct",
    "L_base",
    "L_SAE",
    "L_LoRA",
    "ce_gap",
    "gap_se",
    "ce_improvement",
    "frac_gap_closed",
    "gap_flag",
    "minutes",
    "timestamp",
    "fingerprint",
)

# names, SAE sources, layer specs (`3-5`, `1,4`) and the ISO timestamp; every other column is a number
# (empty when unknown)
TEXT_COLUMNS: frozenset[str] = frozenset(
    {"model", "sae_tag", "sae_source", "sae_layers", "lora_layers", "gap_flag", "timestamp", "fingerprint"}
)
# recomputed on reading (`lorasae.core.gap`), or new (the fingerprint, the gap's standard error): an older file
# need not have them
DERIVED_COLUMNS: frozenset[str] = frozenset({"gap_flag", "fingerprint", "gap_se"})
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c in RESULTS_COLUMNS if c not in TEXT_COLUMNS)
