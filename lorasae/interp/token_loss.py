"""Per-token loss change from the adapter, with the SAE spliced in both models (the original repository's
`interp_analysis/get_token_loss.py` and `plot_token_loss.py`).

For each scored token, Δ = L_SAE − L_LoRA+SAE: the next-token CE of the base model with the SAE spliced
minus that of the LoRA-adapted model with the same SAE spliced (`lorasae.model.ce.per_token_ce`, the
pairing every CE of the project uses). Δ > 0: the adapter improved the token; Δ < 0: it degraded it.
The distribution of |Δ| is summarised by a histogram on log-spaced bins, improvements and degradations
counted separately (the original's 50 edges from 1e-5 to 10 nats), with the tokens below and above the
range counted rather than dropped.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_EDGES = np.logspace(-5, 1, 50)
"""The original's bins: 50 log-spaced edges from 1e-5 to 10 nats."""


def loss_difference(loss_sae: ArrayLike, loss_lora_sae: ArrayLike) -> np.ndarray:
    """Δ = L_SAE − L_LoRA+SAE per token (same shape as the inputs), in float64."""
    a = np.asarray(loss_sae, dtype=np.float64)
    b = np.asarray(loss_lora_sae, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"per-token losses differ in shape: {a.shape} vs {b.shape}")
    return a - b


def log_histogram(diff: ArrayLike, edges: ArrayLike = DEFAULT_EDGES) -> dict[str, object]:
    """Counts of |Δ| per log bin for improvements (Δ > 0) and degradations (Δ < 0), and how many tokens
    fall below the first edge (including Δ = 0), above the last, or are exactly unchanged."""
    d = np.asarray(diff, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0) or e[0] <= 0:
        raise ValueError("edges must be increasing and positive (log bins)")
    out: dict[str, object] = {"edges": e.tolist(), "n_tokens": int(d.size), "unchanged": int((d == 0).sum())}
    for name, values in (("improved", d[d > 0]), ("degraded", -d[d < 0])):
        counts, _ = np.histogram(values, bins=e)
        out[name] = counts.astype(int).tolist()
        out[f"{name}_below_range"] = int((values < e[0]).sum())
        out[f"{name}_above_range"] = int((values > e[-1]).sum())
    return out


def summarise(diff: ArrayLike) -> dict[str, float | int]:
    """Mean Δ, the fractions of tokens improved and degraded, and quantiles of |Δ| (nats)."""
    d = np.asarray(diff, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError("no finite per-token loss differences")
    absd = np.abs(d)
    q50, q90, q99 = np.quantile(absd, [0.5, 0.9, 0.99])
    return {
        "n_tokens": int(d.size),
        "mean_diff": float(d.mean()),
        "fraction_improved": float((d > 0).mean()),
        "fraction_degraded": float((d < 0).mean()),
        "median_abs_diff": float(q50),
        "p90_abs_diff": float(q90),
        "p99_abs_diff": float(q99),
        "max_abs_diff": float(absd.max()),
    }


__all__ = ["DEFAULT_EDGES", "log_histogram", "loss_difference", "summarise"]
