"""Synthetic validation of the decomposition: data where the answer is known (SPEC §7).

Activations x = z·F are sparse non-negative combinations of n_features ≤ d random unit directions (so
z, and any part of z·F, is a linear function of x). A stand-in "SAE" reconstructs the first
`learned` features exactly and adds an injected error ν ~ N(0, σ²·I) drawn independently of x:

    x̂ = z_S·F_S + ν,   e = x − x̂ = z_¬S·F_¬S − ν.

The absent-feature part z_¬S·F_¬S is exactly linear in x, ν is independent of x: the linear
prediction must find the first (linear FVU → its share of the variance) and none of the second
(nonlinear FVU → d·σ² / Var(x) per token). `validate` runs the project's `analyze_linear` on such
data for several (learned, σ) and returns the injected and the recovered levels side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lorasae.core.losses import total_variance
from lorasae.darkmatter.info import SAEInfo
from lorasae.darkmatter.linear import analyze_linear


@dataclass
class SyntheticData:
    info: SAEInfo
    injected_nonlinear_fvu: float
    """Σ‖ν‖² / total variance of x (on the held-out half)."""
    injected_linear_fvu: float
    """Σ‖z_¬S·F_¬S‖² / total variance of x (on the held-out half)."""


def make_synthetic(
    n: int = 20_000,
    d: int = 64,
    n_features: int = 48,
    learned: int = 36,
    p_active: float = 0.1,
    noise_std: float = 0.05,
    seed: int = 0,
) -> SyntheticData:
    """Synthetic activations and a stand-in SAE's reconstruction with known error parts."""
    if n_features > d:
        raise ValueError("n_features must be ≤ d so that every feature is linearly readable from x")
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(n_features, d, generator=g)
    F = F / F.norm(dim=1, keepdim=True)
    active = torch.rand(n, n_features, generator=g) < p_active
    z = active * torch.rand(n, n_features, generator=g).mul(2).add(0.5)
    x = z @ F
    nu = noise_std * torch.randn(n, d, generator=g)
    x_hat = z[:, :learned] @ F[:learned] + nu
    test = slice(n // 2, n)
    var = total_variance(x[test])
    absent = z[test, learned:] @ F[learned:]
    return SyntheticData(
        info=SAEInfo.from_arrays(x, x_hat, z[:, :learned], source="synthetic"),
        injected_nonlinear_fvu=float(nu[test].pow(2).sum() / var),
        injected_linear_fvu=float(absent.pow(2).sum() / var),
    )


LEVELS = ((44, 0.0), (36, 0.05), (28, 0.1), (20, 0.2))
"""(learned features of 48, injected noise std) of the default validation: both error parts vary."""


def validate(levels=LEVELS, seed: int = 0, **kwargs) -> list[dict[str, float]]:
    """For each (learned features, injected noise std): injected vs recovered linear and nonlinear FVU."""
    rows = []
    for learned, std in levels:
        data = make_synthetic(learned=learned, noise_std=std, seed=seed, **kwargs)
        report, _ = analyze_linear(data.info, train_fraction=0.5)
        rows.append({
            "learned": learned,
            "noise_std": std,
            "injected_nonlinear_fvu": data.injected_nonlinear_fvu,
            "recovered_nonlinear_fvu": report.nonlinear_fvu,
            "injected_linear_fvu": data.injected_linear_fvu,
            "recovered_linear_fvu": report.linear_fvu,
            "vector_r2": report.vector_r2,
        })  # fmt: skip
    return rows
