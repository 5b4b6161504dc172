"""Reading benchmark results back (ours or the original's), each task's metrics with their standard errors,
and the table comparing the four combinations of a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lorasae.atomic import read_json
from lorasae.benchmarks.layout import ALL_FOUR, results_dir, results_path


def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """Per-task metrics of a results file: ours (`{"results": ...}`) or the original's (task → metrics)."""
    data = read_json(path)
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
) -> str:
    """One row per (task, metric), one column per combination found on disk (value ± stderr)."""
    from tabulate import tabulate

    found = {c: results_path(model, c, base) for c in ALL_FOUR}
    loaded = {c: load_results(p) for c, p in found.items() if p.exists()}
    if not loaded:
        return f"(no benchmark results for {model} under {results_dir(base)})"
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
    return f"{model}: lm-eval benchmarks\n" + tabulate(rows, headers=headers, tablefmt=tablefmt)
