"""The dark-matter figures, one function each; every one writes `<out_dir>/<stem>.png` and `.pdf` through
`plotting._common.save_figure` and returns the paths. `inputs`: the results file the numbers are written to
(`data/dark_matter/<model>/results*.json`, written before the figures), named by each figure's run record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lorasae.darkmatter.powerlaw import PowerLaw
from lorasae.plotting._common import grid, new_figure, save_figure, width_label

PARTS = ("absent features", "linear dark matter", "nonlinear error", "encoder error")
_COLORS = {"absent features": "#4c72b0", "linear dark matter": "#55a868", "nonlinear error": "#c44e52",
           "encoder error": "#dd8452"}  # fmt: skip


_VARIANTS = {"original": "x (no SAE)", "sae": "x̂", "sae+linear": "x̂ + linear error",
             "sae+nonlinear": "x̂ + nonlinear error"}  # fmt: skip


def stacked_parts(rows: Sequence[dict], linear_fit: PowerLaw | None) -> dict[str, np.ndarray]:
    """Per width, the four stacked regions (they add up to the SAE's FVU up to the small cross term of
    the held-out split): the linear error split at its power-law asymptote c into absent features
    (what more width removes) and linear dark matter (c); the nonlinear error with the encoder error
    (FVU(SAE) − FVU(gradient pursuit), when positive) taken out of it."""
    lin = np.array([r["linear_fvu"] for r in rows])
    nonlin = np.array([r["nonlinear_fvu"] for r in rows])
    enc = np.clip(np.array([r.get("encoder_error", 0.0) for r in rows]), 0, None)
    enc = np.minimum(enc, nonlin)
    c = linear_fit.c if linear_fit is not None else 0.0
    dark = np.minimum(lin, c)
    return {"absent features": lin - dark, "linear dark matter": dark, "nonlinear error": nonlin - enc,
            "encoder error": enc}  # fmt: skip


def plot_decomposition(rows: Sequence[dict], fits: dict[str, PowerLaw], out_dir: Path, title: str,
                       stem: str = "decomposition", inputs: Sequence[Path] = ()) -> list[Path]:  # fmt: skip
    """Stacked FVU decomposition against SAE width (log x), with the measured FVU and its power law."""
    widths = np.array([r["width"] for r in rows], dtype=float)
    parts = stacked_parts(rows, fits.get("linear_fvu"))
    fig, ax = new_figure(figsize=(8, 4.2))
    ax.stackplot(
        widths, *[parts[p] for p in PARTS], labels=PARTS, colors=[_COLORS[p] for p in PARTS], alpha=0.8
    )
    ax.plot(widths, [r["fvu"] for r in rows], "ko", label="FVU (measured)")
    if "fvu" in fits:
        dense = np.geomspace(widths.min(), widths.max(), 100)
        f = fits["fvu"]
        ax.plot(dense, f(dense), "k--", label=f"FVU fit {f.c:.3f} + {f.a:.3g}·W^{f.m:.2f}")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(widths, [width_label(w) for w in widths])
    ax.set_xlabel("SAE width (latents)")
    ax.set_ylabel("fraction of variance unexplained")
    ax.set_title(title, fontsize=10)
    fig.legend(fontsize=7, loc="outside right upper")
    grid(ax)
    return save_figure(fig, out_dir, stem, inputs)


def plot_token_r2(matrix: np.ndarray, labels: Sequence[str], out_dir: Path, title: str,
                  stem: str = "per_token_r2", inputs: Sequence[Path] = ()) -> list[Path]:  # fmt: skip
    """Heat map: R² of SAE j's per-token ‖e‖² from SAE i's (a linear fit on the same held-out tokens)."""
    fig, ax = new_figure(figsize=(5.2, 4.4))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] < 0.6 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted: ‖e‖² of SAE")
    ax.set_ylabel("predictor: ‖e‖² of SAE")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="R²")
    return save_figure(fig, out_dir, stem, inputs)


def _bars(ax, groups: Sequence[str], series: dict[str, Sequence[float]]) -> None:
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    grid(ax)


def plot_downstream(
    rows: Sequence[dict], out_dir: Path, title: str, stem: str = "downstream_ce", inputs: Sequence[Path] = ()
) -> list[Path]:
    """CE of the original model and with x̂, x̂ + linear error, x̂ + nonlinear error spliced, per SAE."""
    fig, ax = new_figure(figsize=(7, 4))
    names = ("original", "sae", "sae+linear", "sae+nonlinear")
    _bars(ax, [r["label"] for r in rows], {_VARIANTS[n]: [r["ce"][n] for r in rows] for n in names})
    lo = min(r["ce"]["original"] for r in rows)
    hi = max(max(r["ce"][n] for n in names) for r in rows)
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylabel("next-token CE (nats)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, stem, inputs)


def plot_base_vs_lora(
    base: dict,
    lora: dict,
    out_dir: Path,
    title: str,
    stem: str = "base_vs_lora",
    inputs: Sequence[Path] = (),
) -> list[Path]:
    """Left: the FVU split (linear, nonlinear) on the base and on the LoRA-adapted model; right: CE of
    each spliced variant on both."""
    fig, (left, right) = new_figure(1, 2, figsize=(9, 3.8))
    parts = {"fvu": "SAE error (FVU)", "linear_fvu": "linear error", "nonlinear_fvu": "nonlinear error"}
    _bars(left, list(parts.values()), {"base": [base[p] for p in parts], "LoRA": [lora[p] for p in parts]})
    left.set_ylabel("fraction of variance")
    left.legend(fontsize=8)
    names = ("original", "sae", "sae+linear", "sae+nonlinear")
    series = {"base": [base["ce"][n] for n in names], "LoRA": [lora["ce"][n] for n in names]}
    _bars(right, [_VARIANTS[n] for n in names], series)
    values = [m["ce"][n] for m in (base, lora) for n in names]
    span = max(values) - min(values)
    right.set_ylim(min(values) - 0.1 * span, max(values) + 0.05 * span)
    right.set_ylabel("next-token CE (nats)")
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out_dir, stem, inputs)


def plot_error_saes(
    results: Sequence[dict], out_dir: Path, title: str, stem: str = "error_saes", inputs: Sequence[Path] = ()
) -> list[Path]:
    """Held-out FVU of SAEs trained on the linear and on the nonlinear error, against their width."""
    fig, ax = new_figure(figsize=(5.5, 3.8))
    for target in sorted({r["target"] for r in results}):
        mine = sorted((r["width"], r["test_fvu"]) for r in results if r["target"] == target)
        ax.plot(*zip(*mine), "o-", label=f"SAE on {target} error")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("SAE width (latents)")
    ax.set_ylabel("held-out FVU of the component")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    grid(ax)
    return save_figure(fig, out_dir, stem, inputs)


def plot_synthetic(
    rows: Sequence[dict], out_dir: Path, stem: str = "synthetic", inputs: Sequence[Path] = ()
) -> list[Path]:
    """Injected vs recovered linear and nonlinear FVU on the synthetic data."""
    fig, ax = new_figure(figsize=(5, 4))
    for part, marker in (("nonlinear", "o"), ("linear", "s")):
        ax.plot([r[f"injected_{part}_fvu"] for r in rows], [r[f"recovered_{part}_fvu"] for r in rows], marker,
                label=f"{part} error", markersize=7)  # fmt: skip
    top = max(max(r["injected_linear_fvu"], r["injected_nonlinear_fvu"]) for r in rows) * 1.1
    ax.plot([0, top], [0, top], "k:", label="recovered = injected")
    ax.set_xlabel("injected FVU")
    ax.set_ylabel("recovered FVU (linear decomposition)")
    ax.set_title("Synthetic validation", fontsize=10)
    ax.legend(fontsize=8)
    grid(ax)
    return save_figure(fig, out_dir, stem, inputs)
