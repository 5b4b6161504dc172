"""The comparison's figure: grouped bars of CE per dictionary (spliced, +LoRA, +KL fine-tune, +both) with
the clean model's CE as a line; `plots/<model>_dictionaries[__<variant>].{png,pdf}`, named as the table it
draws (`data/dictionaries/<model>/comparison[__<variant>].json`): one figure per settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lorasae.core.paths import sanitize, with_variant
from lorasae.core.records import RECORD_SUFFIX
from lorasae.plotting._common import grid, new_figure, plots_dir, save_figure

BARS = (("CE spliced", "spliced", "tab:red"), ("CE +LoRA", "+ LoRA", "tab:green"),
        ("CE +KL-ft", "+ KL fine-tune", "tab:purple"), ("CE +both", "+ both", "tab:blue"))  # fmt: skip


TABLE_STEM = "comparison"
"""The comparison table's file name before `__<variant>` (`lorasae.dictcompare.table.comparison_path`)."""


def plot_comparison(
    root: str | Path | None,
    model: str,
    out_dir: str | Path | None = None,
    comparison: str | Path | None = None,
) -> list[Path]:
    """Grouped bars of a comparison table of `model`: the file `comparison` (`table.comparison_path`), else
    the one `table.load_comparison` takes (the default settings, else the newest); a CE not measured (a
    dictionary train_sae.py cannot KL fine-tune) has no bar. Writes `<model>_dictionaries[__<variant>].{png,pdf}` with the
    table's own variant (`comparison__<variant>.json`; none for `comparison.json`), so the tables of two
    settings never draw into one figure."""
    from lorasae.core.atomic import read_output_json
    from lorasae.dictcompare.table import load_comparison

    if comparison is not None:
        table = Path(comparison)
        payload = read_output_json(table, "python eval/dictionaries/run.py")
    else:
        payload = load_comparison(root, model)
        table = _table_holding(root, model, payload)
    variant = table.name.removesuffix(".json").removeprefix(TABLE_STEM).removeprefix("__")
    rows = payload["rows"]
    names = [f"{r['architecture']}\nL0 {r['L0']:.1f}" for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(BARS)
    fig, ax = new_figure(figsize=(7.0, 4.0))
    for i, (column, label, color) in enumerate(BARS):
        ax.bar(
            x + (i - (len(BARS) - 1) / 2) * width,
            [np.nan if r[column] is None else r[column] for r in rows],
            width,
            label=label,
            color=color,
        )
    clean = float(np.median([r["CE clean"] for r in rows]))
    ax.axhline(clean, color="dimgray", ls="--", lw=1.0, label=f"original model = {clean:.4f}")
    values = [r[c] for r in rows for c, _, _ in BARS if r[c] is not None] + [clean]
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - 0.15 * (hi - lo), hi + 0.3 * (hi - lo))  # the differences; room for the legend
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("CE with the dictionary spliced (nats/token)")
    ax.set_title(f"{model}: dictionaries at matched L0 — LoRA vs KL fine-tuning", fontsize=10)
    grid(ax)
    ax.legend(fontsize=7, ncol=3, loc="upper left", framealpha=1)
    return save_figure(
        fig, plots_dir(root, out_dir), with_variant(f"{sanitize(model)}_dictionaries", variant), [table]
    )


def _table_holding(root: str | Path | None, model: str, payload: dict) -> Path:
    """The comparison file of `model` whose content is `payload` (what `load_comparison` read: its settings
    make it one file's)."""
    from lorasae.core.atomic import read_output_json
    from lorasae.core.paths import dictionaries_dir

    folder = dictionaries_dir(sanitize(model), Path(root) if root else None)
    for table in sorted(folder.glob(f"{TABLE_STEM}*.json")):
        if not table.name.endswith(RECORD_SUFFIX) and read_output_json(table) == payload:
            return table
    raise FileNotFoundError(f"lorasae/dictcompare/figure.py: no file in {folder} holds the comparison read")
