"""One-layer-at-a-time figure: the CE improvement from a LoRA adapter on a single layer, per layer.

Reads the runs of `data/results.csv` whose `lora_layers` is one layer (for one SAE, rank and example
count; each defaults to its most common value among such runs), draws one bar per adapted layer
(absolute improvement on the left axis, the same bars as % of the CE gap on the right axis), a
vertical line at the SAE's layer, and a dashed line at the improvement of the run with the same SAE,
rank and examples on all layers after the SAE (or on all layers) when there is one.
"""

from __future__ import annotations

from pathlib import Path

from lorasae.core.gap import GAP_EPSILON
from lorasae.core.paths import with_variant
from lorasae.plotting._common import (
    examples_label,
    grid,
    new_figure,
    plots_dir,
    results_csv_input,
    save_figure,
)
from lorasae.results import MissingResultsError, load_results_csv, parse_sae_tag, sanitize, select_model


def plot_single_layer_lora(
    root: str | Path | None,
    model: str,
    *,
    sae_tag: str | None = None,
    rank: int | None = None,
    num_examples: int | None = None,
    out_dir: str | Path | None = None,
    variant: str = "",
) -> list[Path]:
    """Bars of CE improvement vs the one adapted layer; writes `<model>_single_layer_lora[__<variant>].{png,pdf}`
    (`variant`: the settings variant of the sweep manifest that chose `sae_tag`)."""
    df = select_model(load_results_csv(root), model)
    df = df.assign(ce_improvement=df["ce_improvement"].fillna(df["L_SAE"] - df["L_LoRA"]))
    single = df[(df["lora_kind"] == "single") & (df["n_sae_layers"] <= 1) & df["ce_improvement"].notna()]
    if single.empty:
        raise MissingResultsError(
            f"No single-layer LoRA runs of {model!r} in data/results.csv "
            "(run `python train_lora.py --LoRA_layers <one layer> ...` for each layer after the SAE)"
        )
    for col, value in (("sae_tag", sae_tag), ("rank", rank), ("num_examples", num_examples)):
        if value is None:
            value = single[col].mode().iloc[0]
        elif col == "sae_tag":
            value = sanitize(value)
        chosen = single[single[col] == value]
        if chosen.empty:
            raise MissingResultsError(
                f"No single-layer runs of {model!r} with {col}={value!r}; have {sorted(set(single[col]))}"
            )
        single = chosen
        if col == "sae_tag":
            sae_tag = value
        elif col == "rank":
            rank = value
        else:
            num_examples = value
    single = single.sort_values("timestamp_parsed", na_position="first", kind="stable")
    single = single.drop_duplicates("lora_first", keep="last").sort_values("lora_first")

    fig, ax = new_figure(figsize=(6.5, 3.2))
    ax.bar(single["lora_first"], single["ce_improvement"], color="tab:blue", alpha=0.7,
           label=f"LoRA on one layer (rank {rank:g})")  # fmt: skip
    sae_layer = single["sae_layer"].dropna()
    if len(sae_layer):
        ax.axvline(sae_layer.iloc[0], color="black", ls=":", lw=1, label=f"SAE layer {sae_layer.iloc[0]:g}")
    same = df[(df["sae_tag"] == sae_tag) & (df["rank"] == rank) & (df["num_examples"] == num_examples)]
    top = float(single["ce_improvement"].max())
    for kind in ("after", "all"):
        ref = same[same["lora_kind"] == kind].sort_values("timestamp_parsed", na_position="first")
        if len(ref):
            row = ref.iloc[-1]
            ax.axhline(row["ce_improvement"], color="crimson", ls="--", lw=1,
                       label=f"LoRA on layers {row['lora_layers']} ({kind})")  # fmt: skip
            top = max(top, float(row["ce_improvement"]))
            break
    if top > 0:  # head room for the legend
        ax.set_ylim(top=1.35 * top)
    gap = (single["L_SAE"] - single["L_base"]).median()
    if gap > GAP_EPSILON:  # no % axis without a gap (NaN compares False)
        sec = ax.secondary_yaxis("right", functions=(lambda v: 100 * v / gap, lambda p: p * gap / 100))
        sec.set_ylabel("CE gap closed (%)")
    ax.set_xticks(single["lora_first"].to_numpy(dtype=float))
    ax.set_xlabel("Adapted layer (LoRA on this layer only)")
    ax.set_ylabel("CE improvement (nats/token)")
    tag = parse_sae_tag(str(sae_tag)).tag
    ax.set_title(f"{model}: one LoRA layer at a time\nSAE {tag}, {examples_label(num_examples)} examples",
                 fontsize=10)  # fmt: skip
    grid(ax)
    ax.legend(fontsize=7, framealpha=1, loc="upper right")
    return save_figure(
        fig,
        plots_dir(root, out_dir),
        with_variant(f"{sanitize(model)}_single_layer_lora", variant),
        results_csv_input(root),
    )
