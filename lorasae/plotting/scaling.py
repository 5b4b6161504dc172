"""Scaling figures: CE improvement (absolute and % of the CE gap closed) vs SAE L0, width, layer and
model size, one line per LoRA rank, read from `data/results.csv`.

Each sweep varies one quantity while the others are held fixed, as in the paper: for the L0 sweep the
SAE width and layer, for the width sweep the layer (Gemma Scope widths come with different L0s), for
the layer sweep the width, and always the number of training examples and the kind of LoRA layer
set (`after` the SAE / `all` / ...; single-layer runs belong to the one-layer-at-a-time figure).
Unless given in `where`, each held quantity is fixed at its most common value among the runs, only
runs on a final (not intermediate-checkpoint) single SAE are used when there are any, and reruns of
the same point keep the latest row. `improvement_table` returns the selected rows, so a notebook can
show exactly what a figure plots.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, NullFormatter

from lorasae.core.gap import gap_fractions
from lorasae.core.paths import with_variant
from lorasae.plotting._common import (
    examples_label,
    grid,
    new_figure,
    no_data,
    plots_dir,
    rank_colors,
    results_csv_input,
    save_figure,
    width_label,
)
from lorasae.results import MissingResultsError, load_results_csv, sanitize, select_model


@dataclass(frozen=True)
class XVar:
    column: str
    label: str
    log: bool
    held: tuple[str, ...]


X_VARS: dict[str, XVar] = {
    "l0": XVar("sae_l0", "SAE L0 (active latents per token)", False, ("sae_width", "sae_layer")),
    "width": XVar("sae_width", "SAE width (latents; log scale)", True, ("sae_layer",)),
    "layer": XVar("sae_layer", "SAE layer", False, ("sae_width",)),
    "model_size": XVar("model_size_b", "Model size (billions of parameters)", False, ()),
}
NAMES = {"l0": "L0", "width": "width", "layer": "layer", "model_size": "model size"}
ALWAYS_HELD = ("num_examples", "lora_kind")
SHOWN = ["model", "sae_tag", "lora_layers", "num_examples", "L_base", "L_SAE", "L_LoRA"]


def _mode(series: pd.Series) -> Any:
    values = series.dropna()
    return values.mode().iloc[0] if len(values) else None


def improvement_table(
    df: pd.DataFrame,
    x: str,
    *,
    where: Mapping[str, Any] | None = None,
    ranks: Sequence[int] | None = None,
    sae_tags: Collection[str] | None = None,
) -> pd.DataFrame:
    """The rows a sweep over `x` (`l0`, `width`, `layer`, `model_size`) plots: columns `x` (the value),
    `rank`, `ce_improvement`, `pct_gap_closed` and identifying columns; sorted by rank then x.
    `sae_tags` keeps only runs on those SAEs (a sweep's manifest names the SAEs of each sweep)."""
    if x not in X_VARS:
        raise ValueError(f"x must be one of {sorted(X_VARS)}, got {x!r}")
    xv, where = X_VARS[x], dict(where or {})
    rows = df.copy()
    if sae_tags is not None:
        rows = rows[rows["sae_tag"].isin([sanitize(t) for t in sae_tags])]
    for col, value in where.items():
        rows = rows[(rows[col] == value) | ((col == "model") & (rows["model_dir"] == sanitize(str(value))))]
    improvement = rows["L_SAE"] - rows["L_LoRA"]
    rows["ce_improvement"] = rows["ce_improvement"].fillna(improvement)
    fractions = gap_fractions(rows["L_base"], rows["L_SAE"], rows["L_LoRA"], rows["gap_se"])  # NaN: flagged
    rows["frac_gap_closed"] = rows["frac_gap_closed"].fillna(pd.Series(fractions, index=rows.index))
    rows = rows[rows[xv.column].notna() & rows["ce_improvement"].notna() & rows["rank"].notna()]
    if "n_sae_layers" not in where:
        rows = rows[rows["n_sae_layers"] <= 1]
    if "checkpoint_pct" not in where:
        final = rows[rows["checkpoint_pct"].isna() | (rows["checkpoint_pct"] == 100)]
        rows = final if len(final) else rows
    if "lora_kind" not in where:
        multi = rows[rows["lora_kind"] != "single"]
        rows = multi if len(multi) else rows
    for col in (*xv.held, *ALWAYS_HELD):
        if col not in where and len(rows) and (value := _mode(rows[col])) is not None:
            rows = rows[rows[col] == value]
    if x == "model_size" and "sae_tag" not in where and len(rows):  # one SAE per model
        keep = rows.groupby("model")["sae_tag"].agg(lambda s: s.mode().iloc[0])
        rows = rows[rows["sae_tag"] == rows["model"].map(keep)]
    if ranks is not None:
        rows = rows[rows["rank"].isin(list(ranks))]
    rows = rows.sort_values("timestamp_parsed", na_position="first", kind="stable")
    key = [xv.column, "rank"] if x != "model_size" else ["model", "rank"]
    rows = rows.drop_duplicates(key, keep="last")
    out = rows.assign(x=rows[xv.column], pct_gap_closed=100 * rows["frac_gap_closed"])
    cols = ["x", "rank", "ce_improvement", "pct_gap_closed", *SHOWN, "sae_width", "sae_l0", "sae_layer"]
    return out[cols].sort_values(["rank", "x"]).reset_index(drop=True)


def _describe(table: pd.DataFrame, x: str) -> str:
    parts = []
    for col, fmt in (("sae_width", "width {}"), ("sae_layer", "layer {:g}"), ("sae_l0", "L0 {:g}")):
        if X_VARS[x].column != col and table[col].nunique() == 1:
            value = table[col].iloc[0]
            parts.append(fmt.format(width_label(value) if col == "sae_width" else value))
    if table["num_examples"].nunique() == 1:
        parts.append(f"{examples_label(table['num_examples'].iloc[0])} examples")
    return ", ".join(parts)


def _value_label(value: float, x: str) -> str:
    return width_label(value) if x == "width" else f"{value:g}"


def _draw(ax_abs: Axes, ax_pct: Axes, table: pd.DataFrame, x: str) -> None:
    xv = X_VARS[x]
    colors = rank_colors(table["rank"].tolist())
    for rank, sub in table.groupby("rank"):
        xs = sub["x"]
        kw = dict(marker="o", ms=4, lw=1.2, color=colors[rank], label=f"Rank {rank:g}")
        ax_abs.plot(xs, sub["ce_improvement"], **kw)
        ax_pct.plot(xs, sub["pct_gap_closed"], **kw)
    for ax in (ax_abs, ax_pct):
        grid(ax)
        if xv.log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(sorted(set(table["x"])), [width_label(v) for v in sorted(set(table["x"]))])
        elif x == "layer":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_abs.set_ylabel("CE improvement (nats/token)")
    ax_pct.set_ylabel("CE gap closed (%)")
    ax_pct.set_xlabel(xv.label)
    ax_abs.legend(fontsize=7, framealpha=1)


def plot_improvement_vs(
    root: str | Path | None,
    model: str,
    x: str,
    *,
    where: Mapping[str, Any] | None = None,
    ranks: Sequence[int] | None = None,
    sae_tags: Collection[str] | None = None,
    out_dir: str | Path | None = None,
) -> list[Path]:
    """CE improvement (top) and % of the gap closed (bottom) vs `x` in `l0|width|layer`, one line per
    rank; writes `<model>_improvement_vs_<x>.{png,pdf}`."""
    df = select_model(load_results_csv(root), model)
    table = improvement_table(df, x, where=where, ranks=ranks, sae_tags=sae_tags)
    if table.empty:
        raise MissingResultsError(f"No LoRA runs in data/results.csv to plot against {x} for {model!r}")
    fig, (ax_abs, ax_pct) = new_figure(2, 1, figsize=(5.0, 5.0), sharex=True)
    _draw(ax_abs, ax_pct, table, x)
    ax_abs.set_title(f"{model}: LoRA CE improvement vs SAE {NAMES[x]}\n{_describe(table, x)}", fontsize=10)
    return save_figure(
        fig, plots_dir(root, out_dir), f"{sanitize(model)}_improvement_vs_{x}", results_csv_input(root)
    )


def plot_scaling_grid(
    root: str | Path | None,
    model: str,
    *,
    where: Mapping[str, Any] | None = None,
    ranks: Sequence[int] | None = None,
    sae_tags: Mapping[str, Collection[str]] | None = None,
    out_dir: str | Path | None = None,
    size_tags: Mapping[str, str] | None = None,
    variant: str = "",
) -> list[Path]:
    """The paper's scaling figure (columns: L0, width, layer, and model size when `size_tags` names at
    least two models; rows: absolute, %); a sweep without runs shows "no runs"; `sae_tags` (by sweep:
    `l0`, `width`, `layer`) picks the SAEs of each sweep, `size_tags` (model → SAE tag, the sweep
    manifest's `model_size`) the SAE of each model; writes `<model>_scaling[__<variant>].{png,pdf}`
    (`variant`: the settings variant of the sweep manifest the tags come from)."""
    everything = load_results_csv(root)
    df = select_model(everything, model)
    sizes = size_tags if size_tags and len(size_tags) >= 2 else None
    fig, axes = new_figure(2, 4 if sizes else 3, figsize=(14.5 if sizes else 11.0, 5.5), sharey="row")
    drawn = 0
    if sizes:
        drawn += _draw_size_panel(axes[0, 3], axes[1, 3], model_size_table(everything, sizes, where, ranks))
    for j, x in enumerate(("l0", "width", "layer")):
        tags = (sae_tags or {}).get(x)
        table = improvement_table(df, x, where=where, ranks=ranks, sae_tags=tags)
        if table.empty or table["x"].nunique() < 2:
            only = "" if table.empty else f" (all runs at {NAMES[x]} {_value_label(table['x'].iloc[0], x)})"
            no_data(axes[0, j], f"no {NAMES[x]} sweep{only}")
            axes[0, j].set_xticks([])
            axes[1, j].set_xticks([])
            axes[1, j].set_xlabel(X_VARS[x].label)
            continue
        _draw(axes[0, j], axes[1, j], table, x)
        axes[0, j].set_title(f"vs {NAMES[x]}: {_describe(table, x)}", fontsize=9)
        if j:
            axes[0, j].set_ylabel("")
            axes[1, j].set_ylabel("")
            axes[0, j].get_legend().remove()
        drawn += 1
    if not drawn:
        raise MissingResultsError(f"No LoRA runs in data/results.csv for a scaling plot of {model!r}")
    what = "sparsity, width, layer and model size" if sizes else "sparsity, width and layer"
    fig.suptitle(f"{model}: CE improvement from LoRA vs SAE {what}")
    return save_figure(
        fig,
        plots_dir(root, out_dir),
        with_variant(f"{sanitize(model)}_scaling", variant),
        results_csv_input(root),
    )


def plot_improvement_vs_model_size(
    root: str | Path | None,
    models: Sequence[str] | None = None,
    *,
    where: Mapping[str, Any] | None = None,
    ranks: Sequence[int] | None = None,
    sae_tags: Mapping[str, str] | None = None,
    out_dir: str | Path | None = None,
    variant: str = "",
) -> list[Path]:
    """CE improvement vs model size across `models` (default: every model in results.csv), one SAE per
    model (`sae_tags[model]`, else the one with the most runs unless `where` picks); model sizes come
    from the names (`2b`), and models whose name has no size are placed in order on a categorical axis;
    writes `model_size_scaling[__<variant>].{png,pdf}` (`variant`: that of the sweep manifest the models
    and tags come from)."""
    df = load_results_csv(root)
    if models is not None:
        df = pd.concat([select_model(df, m) for m in models])
    if sae_tags:
        chosen = {sanitize(m): sanitize(t) for m, t in sae_tags.items()}
        df = df[df["model_dir"].map(chosen).isna() | (df["sae_tag"] == df["model_dir"].map(chosen))]
    df = df.assign(model_size_b=df["model_size_b"].fillna(-1.0))  # placeholder for "unknown size"
    table = improvement_table(df, "model_size", where=where, ranks=ranks)
    if table["model"].nunique() < 2:
        have = f"only {sorted(set(table['model']))}" if len(table) else "none"
        raise MissingResultsError(
            f"The model-size figure needs LoRA runs on at least two models in data/results.csv ({have})"
        )
    categorical = bool((table["x"] < 0).any())
    if categorical:  # some size unknown: a categorical axis in the given (else sorted) order
        present = set(table["model"])
        seen = df["model"] if models is not None else sorted(present, key=str)
        order = [m for m in dict.fromkeys(seen) if m in present]
        table = table.assign(x=table["model"].map({m: float(i) for i, m in enumerate(order)}))
    fig, (ax_abs, ax_pct) = new_figure(2, 1, figsize=(5.0, 5.0), sharex=True)
    _draw(ax_abs, ax_pct, table, "model_size")
    ticks = table.drop_duplicates("model").sort_values("x")
    ax_pct.set_xticks(ticks["x"].to_numpy(dtype=float))
    if categorical:
        ax_pct.set_xticklabels(ticks["model"].tolist(), rotation=20)
        ax_pct.set_xlabel("Model")
    else:
        ax_pct.set_xticklabels([f"{v:g}B" for v in ticks["x"]])
    ax_abs.set_title(f"CE improvement from LoRA vs model size\n{_describe(table, 'model_size')}", fontsize=10)
    return save_figure(
        fig, plots_dir(root, out_dir), with_variant("model_size_scaling", variant), results_csv_input(root)
    )


def model_params_millions(model: str) -> float:
    """A model's parameters in millions: a built-in size's count from its `world.json` (without building
    it), else the size its name says (`model_size_billions`); NaN when neither says."""
    from lorasae.results import model_size_billions
    from lorasae.world.sizes import is_builtin_size
    from lorasae.world.tiny_model import default_root

    name = str(model).split("/")[-1]
    folder = default_root() / name if is_builtin_size(name) else Path(str(model)).expanduser()
    world = folder / "world.json"
    if world.is_file():
        import json

        return json.loads(world.read_text())["n_params"] / 1e6
    return 1000 * model_size_billions(name)


def model_size_table(
    df: pd.DataFrame,
    size_tags: Mapping[str, str],
    where: Mapping[str, Any] | None = None,
    ranks: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The model-size panel's rows: each model of `size_tags` on its own SAE (model → SAE tag), with `x`
    its parameters in millions (`model_params_millions`); one row per (model, rank)."""
    chosen = {sanitize(m): sanitize(t) for m, t in size_tags.items()}
    rows = df[df["model_dir"].isin(list(chosen))]
    rows = rows[rows["sae_tag"] == rows["model_dir"].map(chosen)]
    rows = rows.assign(model_size_b=rows["model"].map(model_params_millions) / 1000)
    table = improvement_table(rows, "model_size", where=where, ranks=ranks)
    return table.assign(x=1000 * table["x"])


def _draw_size_panel(ax_abs: Axes, ax_pct: Axes, table: pd.DataFrame) -> int:
    """The grid's model-size column: one point per model and rank, x in millions of parameters; 1 if
    drawn, 0 (and "no runs") when fewer than two models have runs."""
    if table["model"].nunique() < 2:
        no_data(ax_abs, f"no model-size sweep ({table['model'].nunique()} model with runs)")
        return 0
    _draw(ax_abs, ax_pct, table, "model_size")
    ticks = table.drop_duplicates("model").sort_values("x")
    ax_pct.set_xticks(ticks["x"].to_numpy(dtype=float))
    ax_pct.set_xticklabels([f"{m}\n{v:.2g}M" for m, v in zip(ticks["model"], ticks["x"])], fontsize=8)
    ax_pct.set_xlabel("Model size (parameters)")
    ax_abs.set_title(f"vs model size: {_describe(table, 'model_size')}", fontsize=9)
    for ax in (ax_abs, ax_pct):
        ax.set_ylabel("")
    ax_abs.get_legend().remove()
    return 1
