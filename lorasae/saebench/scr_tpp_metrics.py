"""SCR and TPP metric formulas (SAEBench's `get_scr_plotting_dict`, `create_tpp_plotting_dict`,
`average_results_dictionaries`), from probe accuracies before and after ablation.
"""

from __future__ import annotations

import numpy as np

BIASED_PROBE = "male_professor / female_nurse"
SCR_MIN_GAP = 0.001
"""SAEBench's rule: a clean − biased accuracy gap below this scores 0 (no division by a tiny gap)."""


def scr_score(changed_acc: float, original_acc: float, clean_acc: float) -> float:
    """(changed − original) / (clean − original); 0 when the gap is below `SCR_MIN_GAP` (SAEBench)."""
    gap = clean_acc - original_acc
    return 0.0 if gap < SCR_MIN_GAP else (changed_acc - original_acc) / gap


def scr_scores(
    class_accuracies: dict[str, dict[int, dict[str, float]]], llm_clean_accs: dict[str, float]
) -> dict[str, float]:
    """SAEBench's `get_scr_plotting_dict`."""
    results: dict[str, float] = {}
    dir1_acc = llm_clean_accs[f"{BIASED_PROBE} probe on professor / nurse data"]
    dir2_acc = llm_clean_accs[f"{BIASED_PROBE} probe on male / female data"]
    for direction, (ablated, data) in enumerate(
        (("male / female", "professor / nurse"), ("professor / nurse", "male / female")), start=1
    ):
        for threshold, accs in class_accuracies[ablated].items():
            combined = f"{BIASED_PROBE} probe on {data} data"
            score = scr_score(accs[combined], llm_clean_accs[combined], llm_clean_accs[data])
            results[f"scr_dir{direction}_threshold_{threshold}"] = score
            if (direction == 1 and dir1_acc < dir2_acc) or (direction == 2 and dir1_acc > dir2_acc):
                results[f"scr_metric_threshold_{threshold}"] = score
    return results


def average_over_runs(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Plain mean over the runs of each metric (SAEBench's `average_results_dictionaries`); a metric a run
    lacks (`scr_metric_*` when its two directions tie) is averaged over the runs that have it."""
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    return {k: float(np.mean([r[k] for r in results.values() if k in r])) for k in keys}


def tpp_scores(
    class_accuracies: dict[str, dict[int, dict[str, float]]], llm_clean_accs: dict[str, float]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """SAEBench's `create_tpp_plotting_dict`: (class-averaged metrics, per-class metrics)."""
    per_class: dict[str, dict[str, float]] = {}
    classes = list(llm_clean_accs)
    for name in classes:
        metrics: dict[str, float] = {}
        for threshold, accs in class_accuracies[name].items():
            intended = llm_clean_accs[name] - accs[name]
            unintended = float(np.mean([llm_clean_accs[o] - accs[o] for o in classes if o != name]))
            metrics[f"tpp_threshold_{threshold}_total_metric"] = intended - unintended
            metrics[f"tpp_threshold_{threshold}_intended_diff_only"] = intended
            metrics[f"tpp_threshold_{threshold}_unintended_diff_only"] = unintended
        per_class[name] = metrics
    keys = next(iter(per_class.values())).keys()
    overall = {k: float(np.mean([m[k] for m in per_class.values()])) for k in keys}
    return overall, per_class
