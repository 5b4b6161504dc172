"""What the output file and folder names say: SAE tags (`parse_sae_tag`: checkpoint percentage, expansion,
L0, width, layer), LoRA output file names (`parse_lora_filename`: quantity, layers, rank, example count),
results.csv's layer specs (`parse_layers`), and Gemma Scope's `16k`-style widths (`expand_width`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SaeTag:
    """A parsed SAE tag: `expansion_8_L0_64-30pct`, or e.g. `layer_12_width_16k_average_l0_82`."""

    tag: str
    base: str
    checkpoint_pct: float | None = None
    expansion: float | None = None
    l0: float | None = None
    width: int | None = None
    layer: int | None = None


def _num(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


def expand_width(value: int, unit: str) -> int:
    """`16k` → 16384, `131k` → 131072, `1m` → 1048576 (Gemma Scope rounds powers of two down to
    thousands); a value that is no such rounding is taken literally (`10k` → 10000)."""
    n = value * {"": 1, "k": 1000, "m": 1000**2}[unit]
    if unit:
        pow2 = 2 ** round(math.log2(n))
        if abs(pow2 - n) <= 0.05 * n:
            return pow2
    return n


def parse_sae_tag(tag: str) -> SaeTag:
    """Parse what can be parsed from an SAE tag; unknown parts stay None."""
    base, pct = tag, None
    m = re.search(r"-(\d+(?:\.\d+)?)pct$", tag)
    if m:
        base, pct = tag[: m.start()], _num(m.group(1))
    expansion = l0 = width = layer = None
    if m := re.search(r"expansion_(\d+(?:\.\d+)?)", base):
        expansion = _num(m.group(1))
    if m := re.search(r"(?:^|_)[Ll]0_(\d+(?:\.\d+)?)", base):
        l0 = _num(m.group(1))
    if m := re.search(r"width_(\d+)([kKmM]?)", base):
        width = expand_width(int(m.group(1)), m.group(2).lower())
    if m := re.search(r"layer_(\d+)", base):
        layer = int(m.group(1))
    return SaeTag(tag, base, pct, expansion, l0, width, layer)


_LORA_FILE = re.compile(
    r"^peft_(?P<a>\d+)(?:-(?P<b>\d+))?_rank_(?P<rank>\d+)_(?P<q>val_losses|time|CE_increase)"
    r"_(?P<n>\d*\.?\d+)k\.json$"
)
_QUANTITY = {"val_losses": "val_loss", "time": "time", "CE_increase": "CE_increase"}


@dataclass(frozen=True)
class LoraFileName:
    quantity: str  # val_loss | time | CE_increase
    first_layer: int
    last_layer: int
    rank: int
    num_examples: int


def parse_lora_filename(name: str) -> LoraFileName | None:
    """`peft_13-25_rank_64_val_losses_15k.json` → fields; `peft_13_...` means one layer; None if no match."""
    m = _LORA_FILE.match(name)
    if not m:
        return None
    a = int(m.group("a"))
    b = int(m.group("b")) if m.group("b") is not None else a
    return LoraFileName(
        _QUANTITY[m.group("q")], a, b, int(m.group("rank")), round(float(m.group("n")) * 1000)
    )


def parse_layers(spec: Any) -> list[int] | None:
    """Layer spec of results.csv: `"1"`, `"2-3"` (inclusive range), `"1,3"`, `"1,4-6"`; None if empty."""
    if spec is None or (isinstance(spec, float) and math.isnan(spec)):
        return None
    text = str(spec).strip().strip("[]")
    if not text:
        return None
    layers: list[int] = []
    for part in re.split(r"[,\s]+", text):
        if not part:
            continue
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            layers.extend(range(int(m.group(1)), int(m.group(2)) + 1))
        elif part.lstrip("-").isdigit():
            layers.append(int(float(part)))
        else:
            raise ValueError(f"cannot parse layer spec {spec!r}")
    return sorted(set(layers))
