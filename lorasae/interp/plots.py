"""The two figures of the interpretability analysis, drawn from its JSON record (so the notebook redraws
them from the file alone):

- `<model>_interp_layers`: per layer from the SAE's on, the mean L2 distance and cosine similarity between
  the clean base model's states and the SAE-spliced states of the base and the LoRA model (top), and
  LoRA − base with its bootstrap interval (bottom; below zero for L2 / above for cosine means the adapter
  brings the spliced model's later states closer to the clean model's);
- `<model>_interp_token_loss`: the log-binned histogram of |L_SAE − L_LoRA+SAE| per token, improvements
  and degradations overlaid.

`eval/interp_analysis/run.py` names them after the result they draw (`__<sae_tag>__<adapter label>`, as the
result's own path), so analysing another SAE or adapter never redraws another run's figure; `make demo`
draws its own analysis under the plain names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lorasae.core import paths
from lorasae.model.load import model_key
from lorasae.plotting._common import grid, new_figure, save_figure

STYLE = {"base": ("Base + SAE", "tab:gray"), "lora": ("LoRA + SAE", "tab:green")}
METRICS = {"l2": "L2 distance to clean", "cosine": "cosine similarity to clean"}


def figure_stem(model: str, kind: str, variant: str = "") -> str:
    """`<model>_interp_layers` / `<model>_interp_token_loss` (model as in output paths), followed by
    `__<variant>` when given."""
    stem = f"{paths.sanitize(model_key(model))}_interp_{kind}"
    return f"{stem}__{paths.sanitize(variant)}" if variant else stem


def plot_interp_layers(
    record: Mapping, out_dir: str | Path, stem: str, inputs: Sequence[Path] = ()
) -> list[Path]:
    """Absolute values (top) and LoRA − base with the interval (bottom), L2 left, cosine right."""
    x = np.asarray(record["layers_after_sae"])
    fig, axes = new_figure(2, 2, figsize=(9.0, 5.6), sharex=True)
    for col, (metric, label) in enumerate(METRICS.items()):
        data = record[metric]
        top, bottom = axes[0][col], axes[1][col]
        for variant, (name, color) in STYLE.items():
            top.plot(x, data[variant], "o-", color=color, label=name, lw=1.2, ms=4)
        top.set_ylabel(label)
        top.legend(fontsize=8, framealpha=1)
        diff = data["lora_minus_base"]
        pct = round(100 * diff["confidence"])
        bottom.plot(x, diff["mean"], "o-", color="tab:green", lw=1.2, ms=4, label="LoRA − base")
        bottom.fill_between(
            x, diff["low"], diff["high"], color="tab:green", alpha=0.2, label=f"{pct} % bootstrap interval"
        )
        bottom.axhline(0, color="black", lw=0.6)
        bottom.set_ylabel(f"Δ {label.split(' to ')[0]}")
        bottom.set_xlabel("layers after the SAE")
        bottom.legend(fontsize=8, framealpha=1)
        for ax in (top, bottom):
            grid(ax)
            ax.set_xticks(x)
    fig.suptitle(_title(record, f"n = {record['num_sequences']} sequences"))
    return save_figure(fig, out_dir, stem, inputs)


def plot_interp_token_loss(
    record: Mapping, out_dir: str | Path, stem: str, inputs: Sequence[Path] = ()
) -> list[Path]:
    """Improvements (blue) and degradations (red) of the per-token loss on the record's log bins."""
    hist = record["token_loss"]["histogram"]
    summary = record["token_loss"]["summary"]
    edges = np.asarray(hist["edges"])
    fig, ax = new_figure(figsize=(6.0, 3.8))
    for name, color, label in (
        ("improved", "#2196F3", "loss improvement (L_SAE > L_LoRA+SAE)"),
        ("degraded", "#F44336", "loss degradation (L_SAE < L_LoRA+SAE)"),
    ):
        counts = np.asarray(hist[name])
        share = 100 * summary[f"fraction_{name}"]
        ax.stairs(
            counts, edges, fill=True, alpha=0.55, color=color, label=f"{label}: {share:.1f} % of tokens"
        )
        ax.stairs(counts, edges, color="black", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("|L_SAE − L_LoRA+SAE| per token (nats)")
    ax.set_ylabel("validation tokens")
    grid(ax)
    ax.legend(fontsize=8, framealpha=1)
    ce = record["ce"]
    ax.set_title(
        _title(
            record, f"mean CE: base {ce['clean']:.3f}, SAE {ce['sae']:.3f}, LoRA+SAE {ce['lora_sae']:.3f}"
        ),
        fontsize=9,
    )
    return save_figure(fig, out_dir, stem, inputs)


def plot_interp(
    record: Mapping, out_dir: str | Path | None = None, variant: str = "", inputs: Sequence[Path] = ()
) -> dict[str, list[Path]]:
    """Both figures under `out_dir` (default `paths.plots_dir()`), named after the record's model and
    `variant`; `inputs`: the result file(s) drawn, for the figures' run records."""
    out = Path(out_dir) if out_dir is not None else paths.plots_dir()
    model = record["model"]
    return {
        "layers": plot_interp_layers(record, out, figure_stem(model, "layers", variant), inputs),
        "token_loss": plot_interp_token_loss(record, out, figure_stem(model, "token_loss", variant), inputs),
    }


def _title(record: Mapping, detail: str) -> str:
    return f"{model_key(record['model'])} · SAE {record['sae_tag']} (layer {record['layer']})\n{detail}"


__all__ = ["figure_stem", "plot_interp", "plot_interp_layers", "plot_interp_token_loss"]
