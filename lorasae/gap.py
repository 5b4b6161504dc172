"""The fraction of the CE gap closed by the adapter (SPEC §3.3): (L_SAE − L_LoRA) / (L_SAE − L_base).

It is a fraction of something only when splicing the SAE raises the CE (L_SAE − L_base > 0). On text the
model has never seen (the built-in world's model on a hub corpus, say) the spliced SAE can leave the CE
unchanged or even lower it; the ratio is then noise or of the wrong sign ("−300 % closed"), so such a run
is flagged `non_positive_gap` instead of given a percentage. The rule is defined here once: the LoRA
result, its JSON and results.csv row, the report and sweep tables, the README block, the SAEBench
comparison and the scaling figures all use it, and every table prints `format_gap_closed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GAP_EPSILON = 1e-6
"""Gaps up to this many nats count as none: results.csv keeps six decimals, so a smaller gap is not even
resolved there, and a fraction of it would be rounding noise."""
NON_POSITIVE_GAP = "non_positive_gap"
"""The flag (`gap_flag` in JSON and results.csv) of a run whose L_SAE − L_base ≤ GAP_EPSILON."""
NO_GAP_TEXT = "n/a (no gap)"
"""What tables print instead of a percentage for a flagged run."""
MISSING_TEXT = "—"


def _value(x: Any) -> float:
    return float("nan") if x is None else float(x)


def non_positive_gap(l_base: Any, l_sae: Any) -> Any:
    """True where L_SAE − L_base ≤ GAP_EPSILON (scalars or arrays); False where either value is missing
    (NaN): a missing CE is not a measured absence of a gap."""
    gap = np.asarray(l_sae, dtype=float) - np.asarray(l_base, dtype=float)
    with np.errstate(invalid="ignore"):
        return gap <= GAP_EPSILON


@dataclass(frozen=True)
class GapClosed:
    """One run's fraction of the CE gap closed, or the flag saying there is no gap to close."""

    fraction: float | None  # None when flagged or when a CE is missing
    flag: str | None  # NON_POSITIVE_GAP or None
    gap: float  # L_SAE − L_base (NaN when a CE is missing)

    @property
    def text(self) -> str:
        """The table cell: the percentage to one decimal, NO_GAP_TEXT, or MISSING_TEXT."""
        return format_gap_closed(self.fraction, self.flag)

    @property
    def percent_text(self) -> str:
        """The same with a % sign after a percentage (for one-line summaries)."""
        return format_gap_closed(self.fraction, self.flag, percent_sign=True)


def gap_closed(l_base: float | None, l_sae: float | None, l_lora: float | None) -> GapClosed:
    """SPEC §3.3's fraction (L_SAE − L_LoRA) / (L_SAE − L_base), flagged when the gap is not positive."""
    base, sae, lora = _value(l_base), _value(l_sae), _value(l_lora)
    gap = sae - base
    if bool(non_positive_gap(base, sae)):
        return GapClosed(None, NON_POSITIVE_GAP, gap)
    fraction = (sae - lora) / gap
    return GapClosed(None if math.isnan(fraction) else fraction, None, gap)


def gap_fractions(l_base: Any, l_sae: Any, l_lora: Any) -> np.ndarray:
    """`gap_closed(...).fraction` element-wise over arrays or DataFrame columns: NaN where flagged or missing."""
    base, sae, lora = (np.asarray(v, dtype=float) for v in (l_base, l_sae, l_lora))
    gap = sae - base
    flagged = non_positive_gap(base, sae)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flagged, np.nan, (sae - lora) / np.where(flagged, 1.0, gap))


def gap_flags(l_base: Any, l_sae: Any) -> np.ndarray:
    """The `gap_flag` column: NON_POSITIVE_GAP where flagged, "" elsewhere."""
    return np.where(non_positive_gap(l_base, l_sae), NON_POSITIVE_GAP, "")


def format_gap_closed(fraction: float | None, flag: str | None = None, percent_sign: bool = False) -> str:
    """A table cell for the fraction closed: `23.4` (`23.4%` with `percent_sign`), NO_GAP_TEXT for a
    flagged run, MISSING_TEXT when there is no value. `flag` may be a results.csv cell ("" or NaN: none)."""
    if isinstance(flag, str) and flag:
        return NO_GAP_TEXT
    if fraction is None or math.isnan(float(fraction)):
        return MISSING_TEXT
    return f"{100 * float(fraction):.1f}" + ("%" if percent_sign else "")
