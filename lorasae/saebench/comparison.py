"""Reading the results back: each eval's headline metrics (`summary_line`), the base-vs-peft comparison
table and figure, and the CE gap closed by the adapter (`gap_closed`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from lorasae.core.atomic import read_output_json
from lorasae.core.gap import format_gap_closed
from lorasae.core.gap import gap_closed as ce_gap_closed
from lorasae.core.paths import sanitize
from lorasae.core.records import RECORD_SUFFIX, read_record
from lorasae.core.result_choice import Found, pick_result
from lorasae.model.load import model_key
from lorasae.saebench.args import MODEL_TYPES, results_dir
from lorasae.saebench.suite import EVALS, HEADLINE

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


def _slot(folder: Path) -> Found:
    """A slot folder with the run record of its newest eval result (None for results made before
    records: their SAE is then read from the slot's name, as it was written)."""
    files = sorted(
        (p for p in folder.glob("*.json") if not p.name.endswith(RECORD_SUFFIX) and p.stem in EVALS),
        key=lambda p: p.stat().st_mtime,
    )
    for path in reversed(files):
        record = read_record(path)
        if record is not None:
            return Found(folder, record)
    return Found(folder, None)


def _slot_sae(slot: Found) -> str:
    tag = slot.record.get("settings", {}).get("sae_tag") if slot.record is not None else None
    return str(tag) if tag else slot.path.name.split("__")[0]


def result_folders(
    model_name: str,
    output_dir: str | Path | None = None,
    sae_tag: str | None = None,
    variant: str | None = None,
) -> dict[str, Path]:
    """{model_type: folder} of one SAE's results (`sae_tag` None: the SAE evaluated last), found through
    the results' run records: the slots of the settings `variant` (None: by `eval_identity.pick_result`,
    the default settings first, else the newest; the peft slot then of the same settings as the base one
    where it exists), the newest adapter's among peft slots; the model's folder itself for results
    written before slots existed."""
    slots = {}
    for kind in MODEL_TYPES:
        root = results_dir(model_name, kind, output_dir)
        slots[kind] = [_slot(p) for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    if sae_tag is None:
        every = slots["base"] + slots["peft"]
        sae_tag = _slot_sae(max(every, key=lambda s: s.stamp)) if every else None
    out: dict[str, Path] = {}
    if sae_tag is not None:
        tag = sanitize(sae_tag)
        chosen = variant
        for kind in MODEL_TYPES:
            mine = [s for s in slots[kind] if sanitize(_slot_sae(s)) == tag]
            what = f"SAE-Bench {kind} results of {tag} for {model_key(model_name)}"
            pick = pick_result(mine, what, chosen) if chosen is not None else None
            if pick is None and variant is None:
                pick = pick_result(mine, what)
            if pick is not None:
                out[kind] = pick.path
                chosen = pick.variant
    for kind in MODEL_TYPES:  # results from before slots
        root = results_dir(model_name, kind, output_dir)
        if kind not in out and variant in (None, "") and any(root.glob("*.json")):
            out[kind] = root
    return out


def load_results(
    model_name: str,
    output_dir: str | Path | None = None,
    sae_tag: str | None = None,
    variant: str | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{model_type: {eval: result}} of one SAE (`result_folders`) for whatever results exist."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, folder in result_folders(model_name, output_dir, sae_tag, variant).items():
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
    standard errors (the base core result's `eval_result_unstructured.ce_loss_gap_stderr`; `lorasae.core.gap`);
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


def comparison_figure(
    results: dict[str, dict[str, dict[str, Any]]], out_stem: Path, inputs: Sequence[Path] = ()
) -> list[Path]:
    """Bars of each headline metric, base vs peft; PNG and PDF written by `save_figure` (only when their
    bytes change), with a run record naming `inputs` (the result files drawn)."""
    from matplotlib.figure import Figure

    from lorasae.plotting._common import save_figure

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
    return save_figure(fig, out_stem.parent, out_stem.name, inputs, dpi=150)  # the stem may hold dots
