"""The fraction of the CE gap closed by the adapter (SPEC §3.3): (L_SAE − L_LoRA) / (L_SAE − L_base).

It is a fraction of something only when splicing the SAE raises the CE (L_SAE − L_base > 0). On text the
model has never seen (the built-in world's model on a hub corpus, say) the spliced SAE can leave the CE
unchanged or even lower it; the ratio is then noise or of the wrong sign ("−300 % closed"), so such a run
is flagged `non_positive_gap` instead of given a percentage. The rule is defined here once: the LoRA
result, its JSON and results.csv row, the report and sweep tables, the README block, the SAEBench
comparison and the scaling figures all use it, and every table prints `format_gap_closed`.

A positive gap can still be smaller than its own measurement noise: on text the SAE barely disturbs, a
0.011-nat gap measured on a few thousand validation tokens is noise, and a fraction of it ("−31 % closed")
means nothing. The noise is estimated from the validation chunks themselves: L_SAE and L_base are scored
on the same chunks, so the gap's standard error is that of a paired mean, `paired_gap_se` (the ratio
estimator's: Σ over chunks of (D_i − gap · n_i)² · N/(N−1), square root, over Σ n_i, with D_i the chunk's
summed CE difference and n_i its scored tokens; with equal n_i it is the standard error of the mean of the
per-chunk mean differences). A gap below GAP_NOISE_MULTIPLE (2) standard errors is flagged
`gap_within_noise` instead of given a percentage; where no standard error was measured (results.csv rows
from before the `gap_se` column, SAEBench core results) only the non-positive rule applies.
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
"""What tables print instead of a percentage for a run flagged NON_POSITIVE_GAP."""
GAP_WITHIN_NOISE = "gap_within_noise"
"""The flag of a run whose gap is positive but below GAP_NOISE_MULTIPLE standard errors (`gap_se`)."""
NOISY_GAP_TEXT = "n/a (gap within noise)"
"""What tables print instead of a percentage for a run flagged GAP_WITHIN_NOISE."""
GAP_NOISE_MULTIPLE = 2.0
"""A gap below this many standard errors is flagged GAP_WITHIN_NOISE (about a 95 % two-sided interval)."""
_FLAG_TEXT = {NON_POSITIVE_GAP: NO_GAP_TEXT, GAP_WITHIN_NOISE: NOISY_GAP_TEXT}
MISSING_TEXT = "—"


def _value(x: Any) -> float:
    return float("nan") if x is None else float(x)


def paired_gap_se(base_sums: Any, base_counts: Any, sae_sums: Any, sae_counts: Any) -> float:
    """Standard error of the token-weighted gap Σ(sae_i − base_i) / Σ n_i over N validation chunks, from
    each chunk's summed CE with and without the SAE and its number of scored tokens (the same chunks and
    tokens on both sides: a paired difference). NaN with fewer than 2 chunks."""
    base, sae = np.asarray(base_sums, dtype=float), np.asarray(sae_sums, dtype=float)
    counts = np.asarray(base_counts, dtype=float)
    if base.shape != sae.shape or not np.array_equal(counts, np.asarray(sae_counts, dtype=float)):
        raise ValueError("paired_gap_se: both CEs must be scored on the same chunks and tokens")
    n = len(counts)
    if n < 2 or counts.sum() <= 0:
        return float("nan")
    diff = sae - base
    gap = diff.sum() / counts.sum()
    return float(np.sqrt(((diff - gap * counts) ** 2).sum() * n / (n - 1)) / counts.sum())


def non_positive_gap(l_base: Any, l_sae: Any) -> Any:
    """True where L_SAE − L_base ≤ GAP_EPSILON (scalars or arrays); False where either value is missing
    (NaN): a missing CE is not a measured absence of a gap."""
    gap = np.asarray(l_sae, dtype=float) - np.asarray(l_base, dtype=float)
    with np.errstate(invalid="ignore"):
        return gap <= GAP_EPSILON


def gap_within_noise(l_base: Any, l_sae: Any, gap_se: Any = None) -> Any:
    """True where the gap is positive but below GAP_NOISE_MULTIPLE · gap_se; False where gap_se is
    missing (None/NaN: no noise estimate, e.g. an older results.csv row)."""
    gap = np.asarray(l_sae, dtype=float) - np.asarray(l_base, dtype=float)
    se = np.asarray(np.nan if gap_se is None else gap_se, dtype=float)
    with np.errstate(invalid="ignore"):
        return (gap > GAP_EPSILON) & (gap < GAP_NOISE_MULTIPLE * se)


def gap_flags(l_base: Any, l_sae: Any, gap_se: Any = None) -> np.ndarray:
    """The `gap_flag` column: NON_POSITIVE_GAP, GAP_WITHIN_NOISE or "" (element-wise)."""
    return np.where(
        non_positive_gap(l_base, l_sae),
        NON_POSITIVE_GAP,
        np.where(gap_within_noise(l_base, l_sae, gap_se), GAP_WITHIN_NOISE, ""),
    )


@dataclass(frozen=True)
class GapClosed:
    """One run's fraction of the CE gap closed, or the flag saying there is no gap to close."""

    fraction: float | None  # None when flagged or when a CE is missing
    flag: str | None  # NON_POSITIVE_GAP, GAP_WITHIN_NOISE or None
    gap: float  # L_SAE − L_base (NaN when a CE is missing)
    gap_se: float = float("nan")  # its standard error (NaN when not measured)

    @property
    def text(self) -> str:
        """The table cell: the percentage to one decimal, the flag's text, or MISSING_TEXT."""
        return format_gap_closed(self.fraction, self.flag)

    @property
    def percent_text(self) -> str:
        """The same with a % sign after a percentage (for one-line summaries)."""
        return format_gap_closed(self.fraction, self.flag, percent_sign=True)


def gap_closed(
    l_base: float | None, l_sae: float | None, l_lora: float | None, gap_se: float | None = None
) -> GapClosed:
    """SPEC §3.3's fraction (L_SAE − L_LoRA) / (L_SAE − L_base), flagged when the gap is not positive or
    (given its standard error `gap_se`) within noise."""
    base, sae, lora, se = _value(l_base), _value(l_sae), _value(l_lora), _value(gap_se)
    gap = sae - base
    flag = str(gap_flags(base, sae, se)) or None
    if flag is not None:
        return GapClosed(None, flag, gap, se)
    fraction = (sae - lora) / gap
    return GapClosed(None if math.isnan(fraction) else fraction, None, gap, se)


def gap_fractions(l_base: Any, l_sae: Any, l_lora: Any, gap_se: Any = None) -> np.ndarray:
    """`gap_closed(...).fraction` element-wise over arrays or DataFrame columns: NaN where flagged or missing."""
    base, sae, lora = (np.asarray(v, dtype=float) for v in (l_base, l_sae, l_lora))
    gap = sae - base
    flagged = gap_flags(base, sae, gap_se) != ""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flagged, np.nan, (sae - lora) / np.where(flagged, 1.0, gap))


def format_gap_closed(fraction: float | None, flag: str | None = None, percent_sign: bool = False) -> str:
    """A table cell for the fraction closed: `23.4` (`23.4%` with `percent_sign`), the flag's text
    (NO_GAP_TEXT, NOISY_GAP_TEXT) for a flagged run, MISSING_TEXT when there is no value. `flag` may be a
    results.csv cell ("" or NaN: none)."""
    if isinstance(flag, str) and flag:
        return _FLAG_TEXT.get(flag, f"n/a ({flag})")
    if fraction is None or math.isnan(float(fraction)):
        return MISSING_TEXT
    return f"{100 * float(fraction):.1f}" + ("%" if percent_sign else "")
