"""Percentile-bootstrap intervals over sequences, for the per-layer LoRA-minus-base differences.

The unit resampled is the validation sequence (the original analysis's per-example rows): tokens of one
sequence share context, so resampling tokens would understate the spread. Each column of `sample`
[N, ...] (one column per layer) gets its own interval from the same resampled rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class BootstrapInterval:
    """Column means of a sample and their two-sided percentile-bootstrap interval."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int
    confidence: float
    resamples: int

    def as_dict(self) -> dict[str, object]:
        return {
            "mean": self.mean.tolist(),
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "n": self.n,
            "confidence": self.confidence,
            "resamples": self.resamples,
        }


def bootstrap_interval(
    sample: ArrayLike, confidence: float = 0.90, resamples: int = 2000, seed: int = 0
) -> BootstrapInterval:
    """Mean over rows of `sample` [N, ...] and the (1−c)/2 … (1+c)/2 quantiles of the means of
    `resamples` row resamples drawn with replacement. With one row the interval collapses to the mean."""
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap_interval needs at least one row")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = x.mean(axis=0)
    if len(x) == 1:
        return BootstrapInterval(mean, mean.copy(), mean.copy(), 1, confidence, 0)
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, *x.shape[1:]))
    for i in range(resamples):  # a loop, not one [resamples, N, ...] index: memory stays at one resample
        means[i] = x[rng.integers(0, len(x), len(x))].mean(axis=0)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    return BootstrapInterval(mean, low, high, len(x), confidence, resamples)


__all__ = ["BootstrapInterval", "bootstrap_interval"]
