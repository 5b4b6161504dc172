"""Shared plumbing of the figure functions: headless figures, atomic PNG+PDF saving, rank colours.

Figures are built with `matplotlib.figure.Figure` directly (never pyplot), so they render without a
display and without touching the global backend: the same code runs in a headless test, a script on a
GPU box, or a notebook kernel (which shows the saved PNGs). `save_figure` writes `<stem>.png` and
`<stem>.pdf` through a temporary file and a rename, so an interrupted run never leaves half a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lorasae.core.atomic import atomic_save_file
from lorasae.results import resolve_root

PNG_DPI = 150


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.0, 4.0), **kw):
    """A constrained-layout Figure not registered with pyplot, and its axes (as `Figure.subplots`)."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **kw)


def plots_dir(root: str | Path | None, out_dir: str | Path | None) -> Path:
    """`out_dir` if given, else `<root>/plots`."""
    return Path(out_dir) if out_dir is not None else resolve_root(root) / "plots"


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `<out_dir>/<stem>.png` and `.pdf` atomically; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in ("png", "pdf"):
        final = out / f"{stem}.{fmt}"
        atomic_save_file(final, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=PNG_DPI))
        paths.append(final)
    return paths


def rank_colors(ranks: Sequence[float]) -> dict[float, tuple]:
    """One plasma colour per rank, low ranks dark (as the paper's figures)."""
    ranks = sorted(set(ranks))
    cmap = colormaps["plasma"]
    return {r: cmap(v) for r, v in zip(ranks, np.linspace(0.1, 0.8, max(len(ranks), 1)))}


def grid(ax: Axes) -> None:
    ax.grid(True, which="major", linestyle=":", linewidth=0.6, alpha=0.7)


def examples_label(n: float) -> str:
    """Training sequences for a title: 15000 → `15k`, 2500 → `2.5k`, 160 → `160`."""
    if float(n) < 1000:
        return f"{float(n):g}"
    value = float(n) / 1000
    return f"{int(value)}k" if value.is_integer() else f"{value:g}k"


def width_label(n: float) -> str:
    """Latent count as the SAE names say it: 16384 → `16k`, 131072 → `131k`, 1048576 → `1m`."""
    n = int(n)
    return f"{n // 1000**2}m" if n >= 1000**2 else f"{n // 1000}k" if n >= 1000 else str(n)


def no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
