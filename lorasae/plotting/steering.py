"""Steering histograms (SPEC §4.2): per-example Δ normalised log-likelihood (steered − unsteered).

One panel per example set (positives: text the latent should make likelier; negatives: unrelated text),
each overlaying the base model's and the LoRA model's distributions on shared bins, with their means
as dashed lines. The steering eval calls `plot_steering_histograms(deltas, out_path, inputs=[result])` with
`deltas[model_kind in {"base", "lora"}][set in {"positive", "negative"}]` (missing entries are skipped) once
its result file is written, so each figure's run record names that file and its digest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from lorasae.plotting._common import grid, new_figure, save_figure

MODEL_STYLE = {"base": ("Base model", "tab:gray"), "lora": ("LoRA model", "tab:green")}
SET_TITLE = {"positive": "Positive examples", "negative": "Negative examples"}


def plot_steering_histograms(
    deltas: Mapping[str, Mapping[str, ArrayLike]],
    out_path: str | Path,
    *,
    title: str | None = None,
    bins: int = 30,
    inputs: Sequence[str | Path] = (),
) -> list[Path]:
    """Overlaid histograms (base vs LoRA) per set; writes `out_path` as PNG and PDF (a `.png`/`.pdf`
    suffix is replaced by both) and returns the two paths. `inputs`: the steering result file(s) the
    deltas come from, named by the figures' run records."""
    present = [s for d in deltas.values() for s in d]
    sets = [s for s in dict.fromkeys([*SET_TITLE, *present]) if s in present]
    if not sets:
        raise ValueError("no steering deltas to plot: expected deltas[base|lora][positive|negative]")
    fig, axes = new_figure(1, len(sets), figsize=(4.2 * len(sets), 3.4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        arrays = {m: np.asarray(d[name], dtype=float) for m, d in deltas.items() if name in d}
        arrays = {m: a[np.isfinite(a)] for m, a in arrays.items()}
        pooled = np.concatenate([a for a in arrays.values()]) if arrays else np.zeros(0)
        edges = np.histogram_bin_edges(pooled if len(pooled) else np.zeros(1), bins=bins)
        for m, a in arrays.items():
            label, color = MODEL_STYLE.get(m, (m, None))
            if not len(a):
                continue
            mean = float(a.mean())
            ax.hist(a, bins=edges, alpha=0.5, color=color, label=f"{label} (mean {mean:+.3f}, n={len(a)})")
            ax.axvline(mean, color=color, ls="--", lw=1)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_title(SET_TITLE.get(name, name), fontsize=10)
        ax.set_xlabel("Δ normalised log-likelihood (steered − unsteered)")
        ax.set_ylabel("Examples")
        grid(ax)
        ax.legend(fontsize=7, framealpha=1)
    if title:
        fig.suptitle(title)
    out = Path(out_path)
    stem = out.stem if out.suffix.lower() in (".png", ".pdf") else out.name
    return save_figure(fig, out.parent, stem, inputs)
