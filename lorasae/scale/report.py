"""The scale study's table (`data/scale_study/table.csv`, `table.md`) and one figure per question
(`plots/scale_study/{rank,examples,size,speed}.png`), each with a run record (a figure's names the result
files it was drawn from). Each (question, x) row is the mean over seeds; its error is the standard error
over seeds when there are several, else the single run's own standard error (lm-eval's for accuracies, the
paired per-example one for steering, and for % gap closed the gap's relative standard error times the
percentage)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lorasae.core import paths
from lorasae.core.records import write_record
from lorasae.scale.config import PAPER_RANK_RATIO, ScaleStudyConfig

BENCH = ("bench_base", "bench_base_sae", "bench_lora", "bench_lora_sae")
BENCH_LABELS = {
    "bench_base": "base",
    "bench_base_sae": "base + SAE",
    "bench_lora": "LoRA",
    "bench_lora_sae": "LoRA + SAE",
}
X_OF = {"rank": "rank_ratio", "examples": "examples", "size": "n_params"}


def point_rows(results: dict[str, Any]) -> pd.DataFrame:
    """One row per (question, point): the point's numbers and its model's base accuracies."""
    rows = []
    for question, points in results["plan"].items():
        for point in points:
            r = results["points"][point]
            m = results["models"][point.model]
            pct, gap = r["pct_gap_closed"], r["L_SAE"] - r["L_base"]
            row = {
                "question": question, "model": r["model"], "rank": point.rank, "examples": point.examples,
                "seed": point.seed, "d_model": r["d_model"], "rank_ratio": r["rank_ratio"],
                "n_params": m["n_params"], "pct_gap_closed": pct,
                "pct_gap_closed_se": abs(pct) * r["gap_se"] / gap if gap > 0 else math.nan,
                "steer_lora_minus_base": r["steering"].get("lora_minus_base", math.nan),
                "steer_lora_minus_base_se": r["steering"].get("lora_minus_base_se", math.nan),
                "steer_base_effect": r["steering"]["base_effect"],
            }  # fmt: skip
            for key in BENCH:
                source = m if key.startswith("bench_base") else r
                row[key], row[f"{key}_se"] = source[key]["mean"]["acc"], source[key]["mean"]["se"]
            rows.append(row)
    return pd.DataFrame(rows)


VALUES = ("pct_gap_closed", "steer_lora_minus_base", *BENCH)


def aggregate(points: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (question, model, rank, examples); errors as the module docstring says."""
    keys = ["question", "model", "rank", "examples", "d_model", "rank_ratio", "n_params"]
    out = []
    for key, group in points.groupby(keys, sort=False):
        row = dict(zip(keys, key)) | {"seeds": len(group)}
        for value in VALUES:
            row[value] = group[value].mean()
            if len(group) > 1:
                row[f"{value}_se"] = group[value].std(ddof=1) / math.sqrt(len(group))
            else:
                row[f"{value}_se"] = group[f"{value}_se"].iloc[0]
        out.append(row)
    return pd.DataFrame(out)


def markdown_table(table: pd.DataFrame) -> str:
    """The table as markdown: mean ± error per column."""
    from tabulate import tabulate

    def pm(row: pd.Series, col: str, fmt: str) -> str:
        value, se = row[col], row[f"{col}_se"]
        return f"{value:{fmt}} ± {se:{fmt.lstrip('+')}}" if np.isfinite(se) else f"{value:{fmt}}"

    rows = [
        [
            r["question"],
            r["model"],
            f"{r['n_params'] / 1e6:.2f}M",
            r["rank"],
            f"{100 * r['rank_ratio']:.1f}%",
            r["examples"],
            r["seeds"],
            pm(r, "pct_gap_closed", ".1f"),
            *(pm(r, b, ".3f") for b in BENCH),
            pm(r, "steer_lora_minus_base", "+.2f"),
        ]  # fmt: skip
        for _, r in table.iterrows()
    ]
    headers = ["question", "model", "params", "rank", "rank/d", "sequences", "seeds", "% gap closed"]
    headers += [f"acc {BENCH_LABELS[b]}" for b in BENCH] + ["steering LoRA − base"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _errorbar(ax, x, y, se, **kw) -> None:
    ax.errorbar(x, y, yerr=np.where(np.isfinite(se), se, 0.0), marker="o", ms=4, capsize=3, **kw)


XLABEL = {
    "rank": "LoRA rank / d_model (%)",
    "examples": "LoRA training sequences",
    "size": "model parameters (M)",
}
TITLES = ("CE gap closed (%)", "built-in benchmarks: mean accuracy", "steering: LoRA − base effect")


def _series(sub: pd.DataFrame, question: str) -> list[tuple[str, pd.DataFrame]]:
    """The lines of a question's panels: the main model's points (rank, examples), or one line across
    the model sizes per rank / d_model (size)."""
    if question != "size":
        return [(str(sub["model"].iloc[0]), sub)]
    ratio = sub["rank_ratio"].round(4)
    return [(f"rank/d {100 * r:.1f}%", part) for r, part in sub.groupby(ratio)]


def plot_question(table: pd.DataFrame, question: str, folder: Path, inputs: Sequence[Path] = ()) -> Path:
    """Gap closed, benchmark accuracy (4 variants) and the steering difference against the question's x;
    `inputs`: the point and model result files the question's rows come from (`question_inputs`)."""
    from lorasae.plotting._common import new_figure, save_figure

    sub = table[table["question"] == question]
    fig, axes = new_figure(1, 3, figsize=(13.0, 3.8))
    styles = ("-", "--", ":", "-.")
    for i, (label, part) in enumerate(_series(sub, question)):
        part = part.sort_values(X_OF[question])
        x = part[X_OF[question]].to_numpy(dtype=float)
        x = 100 * x if question == "rank" else (x / 1e6 if question == "size" else x)
        _errorbar(axes[0], x, part["pct_gap_closed"], part["pct_gap_closed_se"], label=label)
        for j, b in enumerate(BENCH):
            name = BENCH_LABELS[b] + (f" ({label})" if question == "size" else "")
            _errorbar(axes[1], x, part[b], part[f"{b}_se"], ls=styles[i % 4], color=f"C{j}", label=name)
        _errorbar(axes[2], x, part["steer_lora_minus_base"], part["steer_lora_minus_base_se"], label=label)
    for ax, title in zip(axes, TITLES):
        ax.set_xlabel(XLABEL[question])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if question == "examples":
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            values = sorted(set(sub["examples"]))
            ax.set_xticks(values, [str(v) for v in values])
            ax.xaxis.set_minor_formatter(NullFormatter())
        if question == "rank":
            ax.axvline(100 * PAPER_RANK_RATIO, color="grey", ls=":", lw=1, label="paper's rank/d")
        if question == "size":
            ticks = sub.drop_duplicates("model").sort_values("n_params")
            ax.set_xticks(
                ticks["n_params"] / 1e6,
                [f"{m}\n{n / 1e6:.2f}M" for m, n in zip(ticks["model"], ticks["n_params"])],
            )
    axes[2].axhline(0, color="black", lw=0.8)
    for ax in axes:
        ax.legend(fontsize=6)
    seeds = int(sub["seeds"].max()) if len(sub) else 0
    fig.suptitle(
        f"Scale study: {question} ({seeds} seed(s) per point; error bars: standard errors)", fontsize=11
    )
    return save_figure(fig, folder, question, inputs)[0]


def plot_speed(speed: dict[str, Any], folder: Path, inputs: Sequence[Path] = ()) -> Path:
    """e2e / TopK per-token cost against the FLOPs of the layers after vs before the SAE; `inputs`: the
    speed result file."""
    from lorasae.plotting._common import new_figure, save_figure

    fig, axes = new_figure(1, 1, figsize=(5.5, 4.0))
    ax = axes if not isinstance(axes, np.ndarray) else axes.flat[0]
    df = pd.DataFrame(
        [{"model": r["model"], "layer": r["layer"], "x": r["predicted"]["after_over_before"],
          "predicted": r["predicted"]["e2e_over_topk"], "measured": r["measured"]["e2e_over_topk"]}
         for r in speed["rows"]]
    )  # fmt: skip
    for model, rows in df.groupby("model", sort=False):
        rows = rows.sort_values("x")
        (line,) = ax.plot(
            rows["x"], rows["predicted"], ls="--", marker="o", mfc="none", label=f"{model}: FLOPs"
        )
        ax.plot(
            rows["x"],
            rows["measured"],
            ls="-",
            marker="o",
            color=line.get_color(),
            label=f"{model}: measured",
        )
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs of the layers after the SAE / before it (SAE layer varies)")
    ax.set_ylabel("e2e step / TopK step (per token)")
    ax.set_title("Why the e2e speed-up grows with the model", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, folder, "speed", inputs)[0]


def question_inputs(results: dict[str, Any], question: str) -> list[Path]:
    """The result files of a question's rows: each of its points' and those points' models' (`run_study`'s
    `results["files"]`)."""
    files = results["files"]
    points = results["plan"][question]
    return [*(files["points"][p] for p in points), *(files["models"][p.model] for p in points)]


def write_report(results: dict[str, Any], cfg: ScaleStudyConfig) -> dict[str, Path]:
    """The table (CSV and markdown, under data/scale_study/) and the four figures (plots/scale_study/)."""
    from lorasae.core.atomic import atomic_write_text

    data = paths.root() / "data" / "scale_study"
    folder = paths.root() / "plots" / "scale_study"
    table = aggregate(point_rows(results))
    identity = {"what": "report", "points": sorted(p.key for p in results["points"]), "models": cfg.models}
    csv_path = data / "table.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    md_path = data / "table.md"
    atomic_write_text(md_path, markdown_table(table) + "\n")
    out = {"table": csv_path, "table_md": md_path}
    for path in (csv_path, md_path):
        write_record(path, "scale_study_report", identity)
    for question in ("rank", "examples", "size"):  # each figure's record names its result files
        out[question] = plot_question(table, question, folder, question_inputs(results, question))
    out["speed"] = plot_speed(results["speed"], folder, [results["files"]["speed"]])
    print(markdown_table(table))
    for row in results["speed"]["rows"]:
        p, m = row["predicted"], row["measured"]
        print(f"speed {row['model']} layer {row['layer']}: after/before {p['after_over_before']:.2f}, "
              f"e2e/TopK per token: FLOPs {p['e2e_over_topk']:.2f}, measured {m['e2e_over_topk']:.2f}")  # fmt: skip
    return out
