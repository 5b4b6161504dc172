"""Reading the results back: each eval's headline metrics (`summary_line`), the base-vs-peft comparison
table and figure, and the CE gap closed by the adapter (`gap_closed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from lorasae.atomic import atomic_save_file, read_output_json
from lorasae.gap import format_gap_closed
from lorasae.gap import gap_closed as ce_gap_closed
from lorasae.paths import sanitize
from lorasae.saebench.args import EVALS, MODEL_TYPES, results_dir

HEADLINE: dict[str, list[tuple[str, str, str]]] = {
    "core": [
        ("sparsity", "l0", "L0"),
        ("reconstruction_quality", "explained_variance", "explained variance"),
        ("reconstruction_quality", "cossim", "cosine sim"),
        ("model_performance_preservation", "ce_loss_score", "CE loss score"),
        ("model_performance_preservation", "ce_loss_with_sae", "CE with SAE"),
        ("model_performance_preservation", "ce_loss_without_sae", "CE clean"),
        ("model_behavior_preservation", "kl_div_score", "KL score"),
        ("misc_metrics", "frac_dead", "dead fraction"),
        ("misc_metrics", "frac_dense", "dense fraction"),
    ],
    "sparse_probing": [
        ("llm", "llm_test_accuracy", "LLM probe acc"),
        ("sae", "sae_top_1_test_accuracy", "SAE top-1 acc"),
        ("sae", "sae_top_2_test_accuracy", "SAE top-2 acc"),
        ("sae", "sae_top_5_test_accuracy", "SAE top-5 acc"),
        ("sae", "sae_test_accuracy", "SAE all-latents acc"),
    ],
    "scr": [
        ("scr_metrics", "scr_metric_threshold_2", "SCR top-2"),
        ("scr_metrics", "scr_metric_threshold_10", "SCR top-10"),
        ("scr_metrics", "scr_metric_threshold_20", "SCR top-20"),
    ],
    "tpp": [
        ("tpp_metrics", "tpp_threshold_2_total_metric", "TPP top-2"),
        ("tpp_metrics", "tpp_threshold_10_total_metric", "TPP top-10"),
        ("tpp_metrics", "tpp_threshold_20_total_metric", "TPP top-20"),
    ],
    "absorption": [
        ("mean", "mean_absorption_fraction_score", "absorption fraction"),
        ("mean", "mean_full_absorption_score", "full absorption"),
    ],
    "autointerp": [("autointerp", "autointerp_score", "autointerp score")],
    "ravel": [
        ("ravel", "disentanglement_score", "disentanglement"),
        ("ravel", "cause_score", "cause"),
        ("ravel", "isolation_score", "isolation"),
    ],
    "unlearning": [("unlearning", "unlearning_score", "unlearning score")],
}
NOT_SCORED = ("probe_too_weak", "too_few_known_prompts", "too_few_known_questions")
"""`eval_result_unstructured.status` of an eval that ran but had nothing to score (its `message` says why)."""


def not_scored_message(result: dict[str, Any]) -> str | None:
    unstructured = result.get("eval_result_unstructured")
    if isinstance(unstructured, dict) and unstructured.get("status") in NOT_SCORED:
        return str(unstructured.get("message", unstructured["status"]))
    return None


def headline_values(eval_name: str, result: dict[str, Any]) -> list[tuple[str, float | None]]:
    metrics = result.get("eval_result_metrics", {})
    return [(label, metrics.get(cat, {}).get(key)) for cat, key, label in HEADLINE.get(eval_name, [])]


def summary_line(eval_name: str, result: dict[str, Any]) -> str:
    message = not_scored_message(result)
    if message is not None:
        return "not scored — " + message
    parts = [
        f"{label} {value:.4g}"
        for label, value in headline_values(eval_name, result)
        if isinstance(value, (int, float))
    ]
    return ", ".join(parts) or "(no metrics)"


def _newest(folders: list[Path]) -> Path | None:
    def stamp(folder: Path) -> float:
        return max((p.stat().st_mtime for p in folder.glob("*.json")), default=0.0)

    return max(folders, key=stamp) if folders else None


def result_folders(
    model_name: str, output_dir: str | Path | None = None, sae_tag: str | None = None
) -> dict[str, Path]:
    """{model_type: folder} of one SAE's results: its base slot `<model>_base/<sae_tag>/` and the newest of
    its peft slots `<model>_peft/<sae_tag>__<adapter>/` (`sae_tag` None: the SAE evaluated last); the
    model's folder itself for results written before slots existed."""
    base_root = results_dir(model_name, "base", output_dir)
    peft_root = results_dir(model_name, "peft", output_dir)
    base_slots = sorted(p for p in base_root.glob("*") if p.is_dir()) if base_root.is_dir() else []
    peft_slots = sorted(p for p in peft_root.glob("*__*") if p.is_dir()) if peft_root.is_dir() else []
    if sae_tag is None:
        newest = _newest(base_slots + peft_slots)
        sae_tag = None if newest is None else newest.name.split("__")[0]
    out: dict[str, Path] = {}
    if sae_tag is not None:
        tag = sanitize(sae_tag)
        if (base_root / tag).is_dir():
            out["base"] = base_root / tag
        peft = _newest([p for p in peft_slots if p.name.split("__")[0] == tag])
        if peft is not None:
            out["peft"] = peft
    for kind, root in (("base", base_root), ("peft", peft_root)):  # results from before slots
        if kind not in out and any(root.glob("*.json")):
            out[kind] = root
    return out


def load_results(
    model_name: str, output_dir: str | Path | None = None, sae_tag: str | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """{model_type: {eval: result}} of one SAE (`result_folders`) for whatever results exist."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, folder in result_folders(model_name, output_dir, sae_tag).items():
        for name in EVALS:
            path = folder / f"{name}.json"
            if path.exists():
                out.setdefault(kind, {})[name] = read_output_json(path)
    return out


SAE_FINGERPRINT = (
    "lorasae_sae_fingerprint"  # written into each result by run.py: which SAE (weights) it is for
)


def pair_results(
    results: dict[str, dict[str, dict[str, Any]]],
) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    """The results with every eval whose base and peft results were computed on different SAEs (their
    fingerprints differ, e.g. the SAE at that path was retrained in between) left out, and a note per
    eval left out. Results without a fingerprint (older files) are paired as before."""
    notes, out = [], {kind: dict(per_eval) for kind, per_eval in results.items()}
    for name in EVALS:
        base = results.get("base", {}).get(name, {}).get(SAE_FINGERPRINT)
        peft = results.get("peft", {}).get(name, {}).get(SAE_FINGERPRINT)
        if base and peft and base != peft:
            for kind in ("base", "peft"):
                out[kind].pop(name, None)
            notes.append(
                f"{name}: skipped, the base and peft results are for different SAEs (fingerprints {base} vs "
                f"{peft}): rerun both with the same --sae."
            )
    return out, notes


def comparison_rows(results: dict[str, dict[str, dict[str, Any]]]) -> list[list[Any]]:
    rows = []
    for name in EVALS:
        per_kind = {kind: results.get(kind, {}).get(name) for kind in MODEL_TYPES}
        if not any(per_kind.values()):
            continue
        for cat, key, label in HEADLINE[name]:
            values = {
                kind: (r or {}).get("eval_result_metrics", {}).get(cat, {}).get(key) if r else None
                for kind, r in per_kind.items()
            }
            if all(v is None for v in values.values()):
                continue
            base, peft = values["base"], values["peft"]
            delta = peft - base if isinstance(base, (int, float)) and isinstance(peft, (int, float)) else None
            rows.append([name, label, base, peft, delta])
    return rows


def comparison_table(results: dict[str, dict[str, dict[str, Any]]], tablefmt: str = "simple_outline") -> str:
    results, notes = pair_results(results)
    rows = comparison_rows(results)
    if not rows:
        return "(no results yet)" + ("\n" + "\n".join(notes) if notes else "")
    for kind in MODEL_TYPES:
        for name, result in results.get(kind, {}).items():
            message = not_scored_message(result)
            if message is not None:
                notes.append(f"{name} ({kind}): {message}")
    gap = gap_closed(results)
    if gap is not None:
        closed = format_gap_closed(gap["fraction"], gap["gap_flag"], percent_sign=True)
        notes.insert(
            0,
            f"CE gap closed by the adapter: {closed} "
            f"(L_base {gap['L_base']:.4f}, L_SAE {gap['L_SAE']:.4f}, L_LoRA {gap['L_LoRA']:.4f})",
        )
    table = tabulate(
        [[e, label, _fmt(b), _fmt(p), _fmt(d, signed=True)] for e, label, b, p, d in rows],
        headers=["eval", "metric", "base", "peft", "peft − base"],
        tablefmt=tablefmt,
        disable_numparse=True,
        colalign=("left", "left", "right", "right", "right"),
    )
    return table + ("\n" + "\n".join(notes) if notes else "")


def gap_closed(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any] | None:
    """SPEC §3.3 from the two core results: L_base = the base model's CE, L_SAE = its CE with the SAE
    spliced, L_LoRA = the merged model's CE with the SAE; fraction = (L_SAE − L_LoRA) / (L_SAE − L_base),
    None with `gap_flag` = `non_positive_gap` when L_SAE − L_base ≤ 0, `gap_within_noise` when below 2
    standard errors (the base core result's `eval_result_unstructured.ce_loss_gap_stderr`; `lorasae.gap`);
    None when a core result is missing."""
    results = pair_results(results)[0]
    try:
        base = results["base"]["core"]["eval_result_metrics"]["model_performance_preservation"]
        peft = results["peft"]["core"]["eval_result_metrics"]["model_performance_preservation"]
        l_base, l_sae, l_lora = (
            base["ce_loss_without_sae"],
            base["ce_loss_with_sae"],
            peft["ce_loss_with_sae"],
        )
    except (KeyError, TypeError):
        return None
    if None in (l_base, l_sae, l_lora):
        return None
    unstructured = results["base"]["core"].get("eval_result_unstructured")
    se = unstructured.get("ce_loss_gap_stderr") if isinstance(unstructured, dict) else None
    gap = ce_gap_closed(l_base, l_sae, l_lora, se)
    return {
        "L_base": l_base,
        "L_SAE": l_sae,
        "L_LoRA": l_lora,
        "fraction": gap.fraction,
        "gap_flag": gap.flag,
    }


def _fmt(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def comparison_figure(results: dict[str, dict[str, dict[str, Any]]], out_stem: Path) -> list[Path]:
    """Bars of each headline metric, base vs peft; PNG and PDF written atomically."""
    from matplotlib.figure import Figure

    rows = [
        r
        for r in comparison_rows(results)
        if isinstance(r[2], (int, float)) and isinstance(r[3], (int, float))
    ]
    if not rows:
        return []
    ncols = 4
    nrows = -(-len(rows) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, label, base, peft, _) in zip(axes, rows):
        ax.bar([0, 1], [base, peft], color=["#7f7f7f", "#d62728"])
        ax.set_xticks([0, 1], ["base", "peft"])
        ax.set_title(f"{name}: {label}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(rows) :]:
        ax.set_axis_off()
    paths = []
    for fmt in ("png", "pdf"):
        path = out_stem.with_suffix(f".{fmt}")
        atomic_save_file(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=150))
        paths.append(path)
    return paths
