"""Choosing the steering strength alpha automatically (SPEC §4.2: the original tuned it by hand).

For each alpha of a grid, the tuning split is steered through both models and scored by its
*selectivity*: mean Δ on the positives minus mean Δ on the negatives (normalised units, each negative
set normalised on its own, then pooled), averaged over the base and LoRA models so that neither model
is favoured, under a budget on the side effect (how much the negatives lose). The rule is `RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_MAX_NEGATIVE_DROP = 5.0
"""Side-effect budget: the negatives may lose at most this much normalised log-likelihood on average
(Δ units: % of the unsteered range)."""

RULE = (
    "alpha* = the grid value with the largest selectivity S(alpha) = mean Δ(positives) − mean Δ(negatives) "
    "on the tuning split (averaged over the base and LoRA models) among the values whose side effect stays "
    "within budget: mean Δ(negatives) ≥ −{budget:g} for each model (Δ in % of the unsteered range); ties go "
    "to the smaller |alpha|. If no value is within budget, the one with the smallest side effect is taken, "
    "with a warning. (A budget is needed: strong steering breaks the model, and then S can grow only "
    "because the negatives collapse faster than the positives.)"
)


def rule_text(max_negative_drop: float = DEFAULT_MAX_NEGATIVE_DROP) -> str:
    return RULE.format(budget=max_negative_drop)


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
    def worst_negative(self) -> float:
        """The lower of the models' mean negative Δ (the side effect of the worse-off model)."""
        return float(min(self.negative.values()))

    @property
    def selectivity(self) -> float:
        return float(np.mean([self.positive[k] - self.negative[k] for k in self.positive]))

    def as_dict(self) -> dict:
        return asdict(self) | {
            "mean_positive": self.mean_positive,
            "worst_negative": self.worst_negative,
            "selectivity": self.selectivity,
        }

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


def choose_alpha(
    scores: Sequence[AlphaScore], max_negative_drop: float = DEFAULT_MAX_NEGATIVE_DROP
) -> Choice:
    """Apply `RULE` (with budget `max_negative_drop`) to the evaluated alphas."""
    if not scores:
        raise ValueError("no alpha was evaluated")
    finite = [s for s in scores if math.isfinite(s.selectivity) and math.isfinite(s.worst_negative)]
    if not finite:
        raise ValueError("every evaluated alpha gave non-finite scores")
    within = [s for s in finite if s.worst_negative >= -max_negative_drop]
    if within:
        best = max(within, key=lambda s: (round(s.selectivity, 9), -abs(s.alpha)))
        warning = None
        if best.mean_positive <= 0:
            warning = (
                f"at alpha={best.alpha:g} steering does not raise the positives' likelihood on average "
                f"(mean Δ {best.mean_positive:+.3f}, selectivity {best.selectivity:+.3f}): the latent steers "
                "at best relative to the negatives."
            )
        return Choice(best.alpha, best, warning)
    best = max(finite, key=lambda s: (round(s.worst_negative, 9), -abs(s.alpha)))
    return Choice(
        best.alpha,
        best,
        f"every alpha costs the negatives more than {max_negative_drop:g} (normalised units); took "
        f"alpha={best.alpha:g}, the gentlest. Add smaller values to the grid.",
    )
