"""The tables printed at the end of a demo or sweep: one row per LoRA run of a model (L_base, L_SAE,
L_LoRA, % of the CE gap closed) and the e2e speed-up, read from `data/`."""

from __future__ import annotations

from tabulate import tabulate

from lorasae.core.gap import format_gap_closed

RUN_KEY = ["sae_tag", "sae_layers", "lora_layers", "rank", "num_examples"]


# run settings shown as a column whenever the rows differ in them (two runs on the same SAE, layers and
# rank with different example counts must not look like one run twice)
VARYING = {"sae_layers": "SAE layers", "num_examples": "examples"}


def _latest_runs(model: str):
    """The latest row of each run, grouped by SAE (in the order the SAEs first appear) and, within an SAE,
    ordered by layers and rank: runs written concurrently (sweep shards) still give one stable table."""
    from lorasae.results import load_results_csv, select_model

    df = select_model(load_results_csv(None), model).drop_duplicates(subset=RUN_KEY, keep="last")
    first_seen = {tag: i for i, tag in reversed(list(enumerate(df["sae_tag"])))}
    df = df.assign(_group=df["sae_tag"].map(first_seen))
    order = ["_group", "sae_layers", "lora_layers", "rank", "num_examples"]
    return df.sort_values(order, kind="stable").drop(columns="_group")


def varying_columns(df) -> list[str]:
    """The `VARYING` settings that take more than one value among the rows."""
    return [c for c in VARYING if c in df.columns and df[c].astype(str).nunique() > 1]


def results_rows(model: str, extra: list[str] | None = None) -> list[list[object]]:
    """The latest row of each distinct run of `model` in data/results.csv (plus the `extra` columns,
    after the LoRA layers)."""
    df = _latest_runs(model)
    extra = varying_columns(df) if extra is None else extra
    return [
        [
            r.sae_tag,
            r.lora_layers,
            *[int(getattr(r, c)) if c == "num_examples" else getattr(r, c) for c in extra],
            int(r.rank),
            r.L_base,
            r.L_SAE,
            r.L_LoRA,
            format_gap_closed(r.frac_gap_closed, r.gap_flag),
        ]
        for r in df.itertuples()
    ]


def results_table(model: str, fmt: str = "simple") -> str:
    """One row per run; `% gap closed` reads `n/a (no gap)` for a run whose SAE did not raise the CE and
    `n/a (gap within noise)` for one whose gap is below 2 standard errors (`lorasae.core.gap`).
    Settings that differ between rows (`VARYING`) get a column."""
    extra = varying_columns(_latest_runs(model))
    headers = [
        "SAE",
        "LoRA layers",
        *[VARYING[c] for c in extra],
        "rank",
        "L_base",
        "L_SAE",
        "L_LoRA",
        "% gap closed",
    ]
    floatfmt = ("", "", *[""] * len(extra), "", ".4f", ".4f", ".4f", "")
    colalign = ("left", "left", *["right"] * len(extra), "right", "right", "right", "right", "right")
    rows = results_rows(model, extra)
    return tabulate(rows, headers=headers, floatfmt=floatfmt, tablefmt=fmt, colalign=colalign)


def speedup_table(model: str, fmt: str = "simple") -> str:
    """The e2e speed-up table (SPEC §3.3), times in minutes when the e2e SAE took under two hours;
    raises FileNotFoundError without the SAE curves."""
    from lorasae.results.speedup import compute_speedup

    table = compute_speedup(None, model)
    hours = [c for c in table.columns if c.endswith("_hours")]
    if hours and not table["e2e_hours"].max() >= 2:
        table[hours] = table[hours] * 60
        table = table.rename(columns={c: c.removesuffix("_hours") + "_min" for c in hours})
    return tabulate(table, headers="keys", showindex=False, floatfmt=".4g", tablefmt=fmt)


def print_results_table(model: str, speedup: bool = False) -> None:
    print(results_table(model))
    if not speedup:
        return
    try:
        table = speedup_table(model)
    except FileNotFoundError as err:
        print(f"e2e speed-up: not computed ({err})")
        return
    print("\ne2e speed-up (e2e SAE time / (TopK checkpoint time + LoRA time) to reach the same spliced CE):")
    print(table)
