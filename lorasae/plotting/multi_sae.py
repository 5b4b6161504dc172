"""The multiple-SAE figure (the paper's §5.3): SAEs at several layers spliced at once, adapted jointly by
one LoRA, next to each of those SAEs alone, from `data/results.csv`.

For the newest run with the most SAE layers (of `rank` when given), the single-SAE runs at each of its
layers with the same rank, example count and LoRA layers (of the same SAE width and L0 when there are such)
make the comparison. Bars: L_SAE (spliced, before LoRA) and
L_LoRA per configuration, with the original model's CE as a line; the % of the CE gap closed is written
above each pair. `multi_sae_table` returns the plotted rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lorasae.core.gap import format_gap_closed, gap_fractions
from lorasae.core.layer_spec import parse_layer_spec
from lorasae.plotting._common import (
    examples_label,
    grid,
    new_figure,
    plots_dir,
    results_csv_input,
    save_figure,
)
from lorasae.results import MissingResultsError, load_results_csv, sanitize, select_model

KEY = ["rank", "num_examples", "lora_layers"]


def _latest(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    rows = rows.sort_values("timestamp_parsed", na_position="first", kind="stable")
    return rows.drop_duplicates(list(by), keep="last")


def multi_sae_table(df: pd.DataFrame, rank: int | None = None) -> pd.DataFrame:
    """Rows `config` (`SAE@1+2`, `SAE@1`, ...), `sae_layers`, `L_base`, `L_SAE`, `L_LoRA`, `pct_gap_closed`:
    the joint run with the most SAE layers first, then each of its layers' SAE alone: the run on the very
    SAE the joint run spliced there (its `sae_source`) when there is one, else the newest of its family
    (width and L0), so a later fine-tune or dictionary of the same width and L0 never stands in for it."""
    multi = df[(df["n_sae_layers"] > 1) & df["L_LoRA"].notna()]
    if rank is not None:
        multi = multi[multi["rank"] == rank]
    if multi.empty:
        raise MissingResultsError(
            "No LoRA run with several SAEs in data/results.csv "
            "(run `python train_lora.py --sae_layer 1,2 ...` for one)"
        )
    joint = _latest(multi[multi["n_sae_layers"] == multi["n_sae_layers"].max()], ["sae_layers", *KEY]).iloc[
        -1
    ]
    layers = parse_layer_spec(str(joint["sae_layers"]))
    same = df[
        (df["n_sae_layers"] == 1)
        & (df["rank"] == joint["rank"])
        & (df["num_examples"] == joint["num_examples"])
        & (df["lora_layers"] == joint["lora_layers"])
        & (df["checkpoint_pct"].isna() | (df["checkpoint_pct"] == 100))
    ]
    for col in ("sae_width", "sae_l0"):  # the joint run's SAE family when it has runs alone
        family = same[same[col] == joint[col]]
        same = family if len(family) else same
    joint_sources = set(str(joint["sae_source"]).split(";"))
    rows = [joint]
    for layer in layers:
        at_layer = same[same["sae_layer"] == layer]
        exact = at_layer[
            at_layer["sae_source"].astype(str).isin(joint_sources)
        ]  # the very SAE of the joint run
        alone = _latest(exact if len(exact) else at_layer, ["sae_layer"])
        if len(alone):
            rows.append(alone.iloc[-1])
    table = pd.DataFrame(rows)
    table["config"] = ["SAE@" + "+".join(str(x) for x in layers)] + [
        f"SAE@{int(layer)}" for layer in table["sae_layer"].iloc[1:]
    ]
    table["pct_gap_closed"] = 100 * gap_fractions(
        table["L_base"], table["L_SAE"], table["L_LoRA"], table["gap_se"]
    )
    cols = ["config", "sae_layers", "rank", "lora_layers", "num_examples", "L_base", "L_SAE", "L_LoRA",
            "pct_gap_closed", "gap_flag"]  # fmt: skip
    return table[cols].reset_index(drop=True)


def plot_multi_sae(
    root: str | Path | None, model: str, *, rank: int | None = None, out_dir: str | Path | None = None
) -> list[Path]:
    """Bars of L_SAE and L_LoRA for the joint run and each SAE alone; writes `<model>_multi_sae.{png,pdf}`."""
    table = multi_sae_table(select_model(load_results_csv(root), model), rank)
    fig, ax = new_figure(figsize=(5.5, 3.6))
    xs = range(len(table))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], table["L_SAE"], width, color="#d62728", label="SAE(s) spliced")
    ax.bar([x + width / 2 for x in xs], table["L_LoRA"], width, color="#1f77b4", label="SAE(s) + LoRA")
    ax.axhline(table["L_base"].iloc[0], color="k", ls="--", lw=1, label="original model")
    for x, (_, row) in zip(xs, table.iterrows()):
        flagged = isinstance(row.get("gap_flag"), str) and row["gap_flag"]  # lorasae.core.gap's text instead
        label = (
            format_gap_closed(None, row["gap_flag"]) if flagged else f"{row['pct_gap_closed']:.0f}% closed"
        )
        ax.text(x, row["L_SAE"], label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), table["config"].tolist())
    low = min(table["L_base"].min(), table["L_LoRA"].min())
    ax.set_ylim(low - 0.1 * (table["L_SAE"].max() - low), table["L_SAE"].max() * 1.04)
    ax.set_ylabel("validation CE (nats/token)")
    first = table.iloc[0]
    ax.set_title(
        f"{model}: several SAEs at once vs each alone\nLoRA rank {first['rank']:g} on layers "
        f"{first['lora_layers']}, {examples_label(first['num_examples'])} examples",
        fontsize=10,
    )
    grid(ax)
    ax.legend(fontsize=7, loc="upper right", framealpha=1)
    return save_figure(fig, plots_dir(root, out_dir), f"{sanitize(model)}_multi_sae", results_csv_input(root))
