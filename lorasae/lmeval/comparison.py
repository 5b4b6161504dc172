"""Reading benchmark results back (ours or the original's), each task's metrics with their standard errors,
and the table comparing the four combinations of a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lorasae.core.atomic import read_output_json
from lorasae.lmeval.layout import ALL_FOUR, DEFAULT_SLOT, Slot, picked_variant, results_dir, results_path


def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-task metrics of a results file: ours (`{"results": ...}`) or the original's (task → metrics)."""
    data = read_output_json(path)
    return data["results"] if isinstance(data, dict) and "results" in data else data


def task_metrics(metrics: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """`{"acc,none": 0.5, "acc_stderr,none": 0.1}` → `{"acc": (0.5, 0.1)}`."""
    found: dict[str, tuple[float, float | None]] = {}
    for key, value in metrics.items():
        name, comma, filt = key.partition(",")
        # metrics are `<metric>,<filter>`; `sample_len`, `alias`, ... are not
        if not comma or "_stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        label = name if filt in ("", "none") else f"{name} ({filt})"
        stderr = metrics.get(f"{name}_stderr,{filt}")
        found[label] = (float(value), float(stderr) if isinstance(stderr, (int, float)) else None)
    return found


def summary_line(results: dict[str, dict[str, Any]], tasks: Iterable[str]) -> str:
    parts = []
    for task in tasks:
        metrics = task_metrics(results.get(task, {}))
        if metrics:
            metric, (value, _) = next(iter(metrics.items()))
            parts.append(f"{task} {metric} {value:.3f}")
    return ", ".join(parts)


def comparison_table(
    model: str,
    tasks: Sequence[str] | None = None,
    base: Path | None = None,
    tablefmt: str = "github",
    variant: str | None = None,
    slot: Slot = DEFAULT_SLOT,
) -> str:
    """One row per (task, metric), one column per combination found on disk (value ± stderr), of the
    results with the settings `variant` (`layout.settings_variant`; None: `layout.picked_variant`, the
    default settings first, else the newest) and of the SAE and adapter `slot` (default: the default
    ones, the original names; `base_no_sae` is every slot's)."""
    from tabulate import tabulate

    variant = picked_variant(model, base, slot) if variant is None else variant
    found = {c: results_path(model, c, base, variant, slot) for c in ALL_FOUR}
    records = {c: read_output_json(p) for c, p in found.items() if p.exists()}
    if not records:
        return f"(no benchmark results for {model} under {results_dir(base)})"
    kept, notes = pair_runs(records)
    loaded = {c: r["results"] if "results" in r else r for c, r in kept.items()}
    names = list(tasks) if tasks else sorted({t for r in loaded.values() for t in r})
    rows = []
    for task in names:
        metric_names: list[str] = []
        for results in loaded.values():
            for metric in task_metrics(results.get(task, {})):
                if metric not in metric_names:
                    metric_names.append(metric)
        sizes = {
            r[task]["sample_len"]
            for r in loaded.values()
            if isinstance(r.get(task, {}).get("sample_len"), int)
        }
        label = f"{task} (n={sizes.pop()})" if len(sizes) == 1 else task
        for metric in metric_names:
            row = [label, metric]
            for combo in ALL_FOUR:
                value = task_metrics(loaded.get(combo, {}).get(task, {})).get(metric)
                if value is None:
                    row.append("—")
                else:
                    mean, stderr = value
                    row.append(f"{mean:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else ""))
            rows.append(row)
    headers = ["task", "metric", *(c.label for c in ALL_FOUR)]
    table = f"{model}: lm-eval benchmarks\n" + tabulate(rows, headers=headers, tablefmt=tablefmt)
    return table + "".join(f"\n{note}" for note in notes)


# settings every column of the table must share (a --limit 50 run is not comparable with a full one)
PAIRED_SETTINGS = ("limit", "num_fewshot", "max_length", "tasks")


def pair_runs(records: dict[Any, dict[str, Any]]) -> tuple[dict[Any, dict[str, Any]], list[str]]:
    """The combinations that can share one table: the same `PAIRED_SETTINGS` as the first combination
    found (in `ALL_FOUR` order), and, among those with an SAE, the same SAE fingerprint. Returns them and
    a note per combination left out, naming what differs. Files without our `config` (the original's)
    are kept as they are."""
    kept: dict[Any, dict[str, Any]] = {}
    notes: list[str] = []
    reference: dict[str, Any] | None = None
    sae_print: str | None = None
    for combo in ALL_FOUR:
        record = records.get(combo)
        if record is None:
            continue
        config = record.get("config") if isinstance(record.get("config"), dict) else None
        if config is not None:
            settings = {k: config.get(k) for k in PAIRED_SETTINGS}
            if reference is None:
                reference = settings
            diffs = [
                f"--{k} {settings[k]!r} vs {reference[k]!r}"
                for k in PAIRED_SETTINGS
                if settings[k] != reference[k]
            ]
            if diffs:
                notes.append(
                    f"skipped {combo.label}: run with other settings ({'; '.join(diffs)}); rerun it."
                )
                continue
            if combo.sae and config.get("sae_fingerprint"):
                sae_print = sae_print or config["sae_fingerprint"]
                if config["sae_fingerprint"] != sae_print:
                    notes.append(
                        f"skipped {combo.label}: evaluated with another SAE than the other SAE column; rerun it."
                    )
                    continue
        kept[combo] = record
    return kept, notes
