"""The report of a Dark Matter run (`results.md`, and the README's demo block through `demo_report`): which
tokens ran and how they split, each quantity's range over every sweep, the per-SAE tables, power laws,
error SAEs, synthetic validation, base vs LoRA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from lorasae.core import paths
from lorasae.darkmatter.tokens import TokenRegion


def _table(rows: Sequence[dict]) -> str:
    head = ["SAE", "L0", "FVU", "R² e (vec)", "R² e (vec, no b)", "R² ‖e‖²", "R² ‖e‖² no b", "lin FVU",
            "nonlin FVU", "pursuit FVU", "enc err", "CE x", "CE x̂", "CE x̂+lin", "CE x̂+nonlin"]  # fmt: skip
    body = [[r["label"], r["mean_l0"], r["fvu"], r["vector_r2"], r["vector_r2_no_bias"], r["norm_r2"],
             r["norm_r2_no_bias"], r["linear_fvu"], r["nonlinear_fvu"], r["pursuit_fvu"], r["encoder_error"],
             r["ce"]["original"], r["ce"]["sae"], r["ce"]["sae+linear"], r["ce"]["sae+nonlinear"]]
            for r in rows]  # fmt: skip
    return tabulate(body, head, floatfmt=".3f", tablefmt="github")


def _baseline_table(rows: Sequence[dict]) -> str:
    names = list(rows[0]["baseline_norm_r2"])
    body = [
        [r["label"], r["norm_r2"], *[r["baseline_norm_r2"].get(n, float("nan")) for n in names]] for r in rows
    ]
    return tabulate(
        body, ["SAE", "R² ‖e‖² from x", *[f"from {n}" for n in names]], floatfmt=".3f", tablefmt="github"
    )


def _relative(path: str | None) -> str:
    """`path` below the output root as a relative path (README tables hold no machine's folders)."""
    if path is None:
        return "?"
    try:
        return str(Path(path).relative_to(paths.root()))
    except ValueError:
        return path


RANGED = {"vector R²": "vector_r2", "norm R²": "norm_r2", "nonlinear FVU": "nonlinear_fvu",
          "% CE gap closed by x̂+lin": ("ce", "sae+linear % gap closed"),
          "by x̂+nonlin": ("ce", "sae+nonlinear % gap closed")}  # fmt: skip
"""The numbers whose range over every sweep the report states (README's Dark Matter line)."""


def _value(row: dict, key) -> float:
    return float(row[key[0]][key[1]]) if isinstance(key, tuple) else float(row[key])


def sweep_ranges(summary: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """{quantity: {"all": (lo, hi), "width sweep": ..., "k sweep": ...}} over the rows of every sweep."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    sweeps = {name.replace("_", " "): summary.get(name) or [] for name in ("width_sweep", "k_sweep")}
    for label, key in RANGED.items():
        ranges = {}
        for name, rows in {"all": [r for part in sweeps.values() for r in part], **sweeps}.items():
            values = [v for v in (_value(r, key) for r in rows) if np.isfinite(v)]
            if values:
                ranges[name] = (min(values), max(values))
        if ranges:
            out[label] = ranges
    return out


def ranges_line(summary: dict) -> str:
    """One sentence: each quantity's range over every sweep, then per sweep."""

    def span(lo_hi: tuple[float, float], pct: bool) -> str:
        fmt = "{:.0f}" if pct else "{:.2f}"
        return "–".join(fmt.format(v) for v in lo_hi) + (" %" if pct else "")

    parts = []
    for label, ranges in sweep_ranges(summary).items():
        pct = "CE gap" in label or label.startswith("by ")
        per = ", ".join(f"{n} {span(r, pct)}" for n, r in ranges.items() if n != "all")
        parts.append(f"{label} {span(ranges['all'], pct)} ({per})")
    return "Over every sweep: " + "; ".join(parts) + "." if parts else ""


def tokens_line(summary: dict) -> str:
    """Which tokens ran, how they split, and which downstream-CE protocol ran."""
    t, split = summary.get("tokens"), summary.get("split")
    if not t or not split:
        return ""
    from lorasae.darkmatter.downstream import MIN_CTX_FOR_PREFIX

    region = TokenRegion(t["ctx_len"], t["start"], t["count"], t["bos"], tuple(t["after"]))
    protocol = summary.get("downstream_protocol", "?")
    why = (f" (contexts of {t['ctx_len']} < {MIN_CTX_FOR_PREFIX} positions)" if protocol == "all_positions"
           else " (the original's: the first 200 positions clean, predictions from position 200 scored)")  # fmt: skip
    return (f"Tokens: {region.describe()}; the SAEInfo fits W* on a {split['kind']} {split['train_fraction']:.0%} "
            f"of its tokens (seed {split['seed']}) and scores the rest; downstream CE on the last "
            f"{summary['settings']['ce_chunks']} chunks of the region, protocol {protocol}{why}.")  # fmt: skip


def _val_label(results: list[dict]) -> str:
    """The val FVU column's header: its tokens (results before `val_tokens` was recorded: the whole
    stream up to the region's end)."""
    counts = {r.get("val_tokens") for r in results}
    if len(counts) == 1 and None not in counts:
        return f"val FVU (first {counts.pop():,} tokens)"
    return "val FVU (stream to the region's end)"


def report_markdown(summary: dict) -> str:
    """The tables of a run: per SAE, baselines, power laws, error SAEs, synthetic, base vs LoRA."""
    parts = [f"# Dark matter of SAEs: {summary['model']}"]
    parts += [line for line in (tokens_line(summary), ranges_line(summary)) if line]
    for name in ("width_sweep", "k_sweep"):
        if summary.get(name):
            parts += [f"## {name.replace('_', ' ')}", _table(summary[name]), "", "R² of ‖e‖² (held out) vs baselines:",
                      _baseline_table(summary[name])]  # fmt: skip
    if "power_laws" in summary:
        body = [[q, f["c"], f["a"], f["m"]] for q, f in summary["power_laws"].items()]
        parts += [
            "## power laws y = c + a·W^m",
            tabulate(body, ["quantity", "c", "a", "m"], floatfmt=".4g", tablefmt="github"),
        ]
    if "error_saes" in summary:
        body = [
            [r["target"], r["width"], r["k"], r["train_fvu"], r.get("val_fvu"), r["test_fvu"]]
            for r in summary["error_saes"]["results"]
        ]
        head = [
            "target",
            "width",
            "k",
            "train FVU",
            _val_label(summary["error_saes"]["results"]),
            "test FVU (held out)",
        ]
        parts += [
            f"## SAEs trained on the error parts of {summary['error_saes']['of']}",
            "(train_sae.py --hidden_modification linear_error|nonlinear_error --modification_file "
            f"{_relative(summary['error_saes'].get('map_file'))}, on the training tokens after the "
            "Dark Matter region; not spliced, so no CE)",
            tabulate(body, head, floatfmt=".3f", tablefmt="github"),
        ]
    if "synthetic" in summary:
        parts += [
            "## synthetic validation",
            tabulate(summary["synthetic"], "keys", floatfmt=".4f", tablefmt="github"),
        ]
    if "base_vs_lora" in summary:
        parts += [
            "## base vs LoRA-adapted model (same SAE)",
            _table([{**r, "label": name} for name, r in summary["base_vs_lora"].items()]),
        ]
    parts.append(f"\n({summary.get('seconds', 0):.0f} s)")
    return "\n\n".join(parts) + "\n"
