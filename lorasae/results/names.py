"""What the output file and folder names say: SAE tags (`parse_sae_tag`: checkpoint percentage, expansion,
L0, width, layer), LoRA output file names (`parse_lora_filename`: quantity, layers, rank, example count),
results.csv's layer specs (`parse_layers`), and Gemma Scope's `16k`-style widths (`expand_width`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lorasae.core.layer_spec import parse_layer_spec
from lorasae.store.tags import SaeTag, expand_width, parse_sae_tag

__all__ = ["LoraFileName", "SaeTag", "expand_width", "parse_layers", "parse_lora_filename", "parse_sae_tag"]


_LORA_FILE = re.compile(
    r"^peft_(?P<a>\d+)(?:-(?P<b>\d+))?_rank_(?P<rank>\d+)_(?P<q>val_losses|time|CE_increase)"
    r"_(?P<n>\d*\.?\d+)k(?:__(?P<variant>[^/]+?))?\.json$"
)
_QUANTITY = {"val_losses": "val_loss", "time": "time", "CE_increase": "CE_increase"}


@dataclass(frozen=True)
class LoraFileName:
    quantity: str  # val_loss | time | CE_increase
    first_layer: int
    last_layer: int
    rank: int
    num_examples: int
    variant: str = ""
    """The settings off their defaults (`paths.lora_variant`; empty for the paper's default runs)."""


def parse_lora_filename(name: str) -> LoraFileName | None:
    """`peft_13-25_rank_64_val_losses_15k.json` → fields (`..._15k__lr-0.001.json`: variant `lr-0.001`);
    `peft_13_...` means one layer; None if no match (a run record `*.json.run.json` never matches)."""
    m = _LORA_FILE.match(name)
    if not m:
        return None
    a = int(m.group("a"))
    b = int(m.group("b")) if m.group("b") is not None else a
    return LoraFileName(
        _QUANTITY[m.group("q")],
        a,
        b,
        int(m.group("rank")),
        round(float(m.group("n")) * 1000),
        m.group("variant") or "",
    )


def parse_layers(spec: Any) -> list[int] | None:
    """Layer spec of results.csv: `"1"`, `"2-3"` (inclusive range), `"1,3"`, `"1,4-6"`; None if empty."""
    if spec is None or (isinstance(spec, float) and math.isnan(spec)):
        return None
    text = str(spec).strip().strip("[]")
    return parse_layer_spec(text) if text else None
