"""Choosing the steering strength alpha automatically (SPEC §4.2: the original tuned it by hand).

For each alpha of a grid, the tuning split is steered through both models and scored by its
*selectivity*: mean Δ on the positives minus mean Δ on the negatives (normalised units, each negative
set normalised on its own, then pooled), averaged over the base and LoRA models so that neither model
is favoured. The rule is `RULE` below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

RULE = (
    "alpha* = the grid value with the largest selectivity S(alpha) = mean Δ(positives) − mean Δ(negatives) "
    "on the tuning split, averaged over the base and LoRA models, among the values whose averaged mean "
    "Δ(positives) is > 0 (steering must make the positives likelier); ties go to the smaller |alpha|. "
    "If no value raises the positives, the one with the largest mean Δ(positives) is taken, with a warning."
)

MULTIPLICATIVE_GRID: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
ADDITIVE_GRID_SCALES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Additive alphas are these multiples of the RMS residual norm at the steered layer."""


def parse_grid(text: str) -> list[float]:
    """`"0.5,1,2"` or `"0.5 1 2"` → [0.5, 1.0, 2.0]."""
    values = [float(part) for part in text.replace(",", " ").split()]
    if not values:
        raise ValueError(f"empty alpha grid {text!r}")
    return values


def default_grid(mode: str, residual_rms: float | None = None) -> list[float]:
    if mode == "multiplicative":
        return list(MULTIPLICATIVE_GRID)
    if residual_rms is None:
        raise ValueError("the additive grid needs the residual RMS norm")
    return [round(s * residual_rms, 6) for s in ADDITIVE_GRID_SCALES]


@dataclass
class AlphaScore:
    """One alpha on one split: mean Δ per model on positives and (pooled) negatives."""

    alpha: float
    positive: dict[str, float]
    negative: dict[str, float]

    @property
    def mean_positive(self) -> float:
        return float(np.mean(list(self.positive.values())))

    @property
    def selectivity(self) -> float:
        return float(np.mean([self.positive[k] - self.negative[k] for k in self.positive]))

    def as_dict(self) -> dict:
        return asdict(self) | {"mean_positive": self.mean_positive, "selectivity": self.selectivity}

    @classmethod
    def from_dict(cls, data: Mapping) -> AlphaScore:
        return cls(float(data["alpha"]), dict(data["positive"]), dict(data["negative"]))


def score_alpha(
    alpha: float, deltas: Mapping[str, Mapping[str, np.ndarray]], positive_key: str = "positive"
) -> AlphaScore:
    """Summarise `deltas[model][set]` (per-example Δ) at one alpha: mean positive Δ and mean Δ over all
    negative examples pooled, per model."""
    positive, negative = {}, {}
    for kind, sets in deltas.items():
        positive[kind] = float(np.mean(sets[positive_key]))
        pooled = [np.asarray(v) for k, v in sets.items() if k != positive_key]
        negative[kind] = float(np.mean(np.concatenate(pooled))) if pooled else math.nan
    return AlphaScore(float(alpha), positive, negative)


@dataclass
class Choice:
    alpha: float
    score: AlphaScore
    warning: str | None


def choose_alpha(scores: Sequence[AlphaScore]) -> Choice:
    """Apply `RULE` to the evaluated alphas."""
    if not scores:
        raise ValueError("no alpha was evaluated")
    finite = [s for s in scores if math.isfinite(s.selectivity) and math.isfinite(s.mean_positive)]
    if not finite:
        raise ValueError("every evaluated alpha gave non-finite scores")
    raising = [s for s in finite if s.mean_positive > 0]
    if raising:
        best = max(raising, key=lambda s: (round(s.selectivity, 9), -abs(s.alpha)))
        return Choice(best.alpha, best, None)
    best = max(finite, key=lambda s: (round(s.mean_positive, 9), -abs(s.alpha)))
    return Choice(
        best.alpha,
        best,
        f"no alpha raised the positives' likelihood on average; took alpha={best.alpha:g}, the least harmful. "
        "The latent may not steer towards its concept: check the positive examples and the latent.",
    )
