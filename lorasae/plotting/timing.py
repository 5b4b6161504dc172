"""The timing figure (paper Fig. "TopK + LoRA vs e2e"): spliced CE against training time.

Draws the TopK SAE's validation curve, the e2e SAE's curve, and from each TopK checkpoint the LoRA
curve trained on it, shifted right by the SAE training time up to that checkpoint (so every green
curve starts on the blue one), plus a dashed line through the LoRA curves' final points and a dashed
grey line at the original model's CE (L_base). Beside them, "TopK + KL fine-tune" from each checkpoint
(`train_sae.py --objective kl --init_sae <checkpoint>`, found through the run records): a purple segment
from the checkpoint to x = SAE time to the checkpoint + fine-tune time, y = the CE after. Times are in hours when the longest run takes at least
an hour, else in minutes (the built-in model trains in minutes); `time_unit` forces either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lorasae.plotting._common import examples_label, grid, new_figure, plots_dir, save_figure
from lorasae.results import load_timing_data, sanitize
from lorasae.results.kl_fine_tunes import kl_points


def plot_timing(
    root: str | Path | None,
    model: str,
    *,
    sae_tag: str | None = None,
    rank: int | None = None,
    lora_layers: str | None = None,
    num_examples: int | None = None,
    time_unit: str = "auto",
    ylim: tuple[float, float] | None = None,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """Spliced CE vs training time for TopK SAE, e2e SAE, TopK+LoRA and TopK+KL fine-tune; writes `<model>_timing.{png,pdf}`.

    The LoRA configuration (SAE tag, layers, rank, N) defaults to the one with the most checkpoints. Its
    run record names every file drawn (`TimingData.inputs`).
    """
    data = load_timing_data(
        root, model, sae_tag=sae_tag, rank=rank, lora_layers=lora_layers, num_examples=num_examples
    )
    ends = [data.topk.minutes[-1]] + ([data.e2e.minutes[-1]] if data.e2e else [])
    ends += [sae_min + run.curve.minutes[-1] for _, sae_min, run in data.checkpoints if run.curve]
    kl = kl_points(data.topk, data.kl_fine_tunes)
    ends += [float(t[-1]) for _, t, _ in kl]
    if time_unit == "auto":
        time_unit = "hours" if max(ends) >= 60 else "minutes"
    if time_unit not in ("hours", "minutes"):
        raise ValueError(f"time_unit must be 'auto', 'hours' or 'minutes', got {time_unit!r}")
    scale = 1 / 60 if time_unit == "hours" else 1.0

    fig, ax = new_figure(figsize=(6.5, 4.0))
    ax.plot(data.topk.minutes * scale, data.topk.ce, color="tab:blue", lw=1.2, label="TopK SAE")
    if data.e2e is not None:
        ax.plot(data.e2e.minutes * scale, data.e2e.ce, color="crimson", lw=1.2, label="e2e SAE")
    finals_t, finals_y = [], []
    for i, (pct, sae_min, run) in enumerate(data.checkpoints):
        t = (sae_min + run.curve.minutes) * scale
        label = "TopK + LoRA (from each checkpoint)" if i == 0 else None
        ax.plot(t, run.curve.ce, color="green", lw=0.9, label=label)
        ax.plot(t[0], run.curve.ce[0], "o", color="green", ms=2.5)
        ax.annotate(f"{pct:g}%", (t[0], run.curve.ce[0]), fontsize=6, color="green", rotation=45,
                    xytext=(1, 3), textcoords="offset points")  # fmt: skip
        finals_t.append(t[-1])
        finals_y.append(run.curve.ce[-1])
    if len(finals_t) > 1:
        ax.plot(finals_t, finals_y, "--", color="darkgreen", lw=0.9, label="TopK + LoRA (final points)")
    for i, (_pct, t, ce) in enumerate(kl):
        label = "TopK + KL fine-tune (from each checkpoint)" if i == 0 else None
        ax.plot(t * scale, ce, color="darkviolet", lw=0.9, label=label)
        ax.plot(t[-1] * scale, ce[-1], "s", color="darkviolet", ms=3)
    if len(kl) > 1:
        ax.plot([t[-1] * scale for _, t, _ in kl], [ce[-1] for _, _, ce in kl], ":", color="darkviolet", lw=0.9,
                label="TopK + KL fine-tune (final points)")  # fmt: skip
    if data.L_base is not None:
        ax.axhline(data.L_base, color="dimgray", ls="--", lw=0.9,
                   label=f"Original model (best achievable) = {data.L_base:.4f}")  # fmt: skip

    ax.set_ylim(*(ylim or _auto_ylim(data)))
    ax.set_xlim(left=0)
    ax.set_xlabel(f"Training time ({time_unit})")
    ax.set_ylabel("Spliced CE loss (nats/token)")
    tag, layers, r, n = data.config[:4]
    variant = f"; {data.config[4]}" if len(data.config) > 4 else ""  # settings off their defaults
    ax.set_title(
        f"{model}: spliced CE vs training time\nSAE {tag}; LoRA layers {layers}, rank {r}, "
        f"{examples_label(n)} examples{variant}",
        fontsize=10,
    )
    grid(ax)
    ax.legend(loc="upper right", fontsize=8, framealpha=1)
    return save_figure(fig, plots_dir(root, out_dir), f"{sanitize(model)}_timing", data.inputs)


def _auto_ylim(data) -> tuple[float, float]:
    """From a bit under min(L_base, every CE) up to the highest CE after 10% of SAE training (the
    untrained SAE's CE would squash everything else)."""
    values = [run.curve.ce for _, _, run in data.checkpoints] + [t.curve.ce for t in data.kl_fine_tunes]
    for curve in (data.topk, data.e2e):
        if curve is not None:
            late = curve.ce[curve.progress >= 0.1 - 1e-9]
            values.append(late if len(late) else curve.ce)
    allv = np.concatenate([np.asarray(v, dtype=float) for v in values])
    allv = allv[np.isfinite(allv)]
    lo = min(allv.min(), data.L_base) if data.L_base is not None else allv.min()
    hi = allv.max()
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    return float(lo - pad), float(hi + pad)
