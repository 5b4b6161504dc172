"""Power laws y(W) = c + a·W^m with a, c ≥ 0 and m < 0 (SPEC §7): the FVU of an SAE family against its
width at fixed L0, and of its linear and nonlinear error parts. The asymptote c is what more latents
never remove (the "dark matter"); a·W^m is what they do ("absent features").

For a fixed exponent the model is linear in (c, a), so the fit is a non-negative least-squares problem
in (c, a) profiled over m: a grid over m, then a bounded 1-D refinement around the best grid point.
Widths are divided by the smallest before fitting, so a·W^m stays well-conditioned for W up to 2^20+.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar, nnls

M_RANGE = (-3.0, -1e-3)
"""Exponents searched."""


@dataclass
class PowerLaw:
    c: float
    a: float
    """In units of the original widths: y = c + a·W^m."""
    m: float
    sse: float
    """Sum of squared residuals of the fit."""

    def __call__(self, widths) -> np.ndarray:
        return self.c + self.a * np.asarray(widths, dtype=np.float64) ** self.m

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _profile(m: float, w: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    design = np.stack([np.ones_like(w), w**m], axis=1)
    coef, rnorm = nnls(design, y)
    return rnorm**2, coef


def fit_power_law(widths, values, grid: int = 300) -> PowerLaw:
    """Least-squares fit of c + a·W^m (a, c ≥ 0, m in `M_RANGE`) to (widths, values); needs ≥ 3 points."""
    widths, values = np.asarray(widths, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(widths) != len(values) or len(widths) < 3:
        raise ValueError(f"a power law needs at least 3 (width, value) points, got {len(widths)}")
    w0 = widths.min()
    w = widths / w0
    ms = np.linspace(*M_RANGE, grid)
    sses = np.array([_profile(m, w, values)[0] for m in ms])
    best = int(sses.argmin())
    lo, hi = ms[max(best - 1, 0)], ms[min(best + 1, grid - 1)]
    res = minimize_scalar(lambda m: _profile(m, w, values)[0], bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})  # fmt: skip
    m = float(res.x) if res.fun <= sses[best] else float(ms[best])
    sse, (c, a_scaled) = _profile(m, w, values)
    return PowerLaw(c=float(c), a=float(a_scaled * w0 ** (-m)), m=m, sse=float(sse))
