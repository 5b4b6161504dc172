"""Statistics of the steering evaluation (SPEC §4.2).

Per (model, dataset), log-likelihoods are min-max normalised on the *unsteered* values (the unsteered
range maps to 0 … `scale`; steered values use the same shift and scale, so they can leave that range).
Δ = steered − unsteered, per example. The LoRA-minus-base effect is the paired per-example difference
Δ_LoRA − Δ_base (same examples through both models), summarised by its mean and a Student-t interval.
`scale=100` follows the original (Δ in percent of the unsteered range).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _stats


def minmax_normalise(values: ArrayLike, reference: ArrayLike, scale: float = 100.0) -> np.ndarray:
    """``scale * (values - min(reference)) / (max(reference) - min(reference))``. A reference with zero
    range (e.g. a single example) is only shifted."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size == 0:
        raise ValueError("cannot normalise against an empty reference")
    low, high = float(ref.min()), float(ref.max())
    span = high - low if high > low else 1.0
    return scale * (np.asarray(values, dtype=np.float64) - low) / span


def normalised_delta(unsteered: ArrayLike, steered: ArrayLike, scale: float = 100.0) -> np.ndarray:
    """Per-example Δ = normalised steered − normalised unsteered, both normalised on the unsteered values."""
    u = np.asarray(unsteered, dtype=np.float64)
    s = np.asarray(steered, dtype=np.float64)
    if u.shape != s.shape:
        raise ValueError(f"unsteered and steered shapes differ: {u.shape} vs {s.shape}")
    return minmax_normalise(s, u, scale) - minmax_normalise(u, u, scale)


@dataclass(frozen=True)
class Interval:
    """Mean of a sample with a two-sided Student-t confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def t_interval(sample: ArrayLike, confidence: float = 0.90) -> Interval:
    """``mean ± t_{(1+c)/2, n-1} · s/√n`` (s: sample standard deviation, ddof=1). With fewer than two
    values, or zero variance, the interval collapses to the mean (NaN bounds when n < 2)."""
    x = np.asarray(sample, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, confidence)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(_stats.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * sem
    return Interval(mean, mean - half, mean + half, n, confidence)


def lora_minus_base(delta_lora: ArrayLike, delta_base: ArrayLike, confidence: float = 0.90) -> Interval:
    """Paired LoRA-minus-base difference of per-example Δs, with a t-interval."""
    lora = np.asarray(delta_lora, dtype=np.float64)
    base = np.asarray(delta_base, dtype=np.float64)
    if lora.shape != base.shape:
        raise ValueError(f"LoRA and base Δ arrays differ in shape: {lora.shape} vs {base.shape}")
    return t_interval(lora - base, confidence)
