"""The final evaluation: steer the test split with the chosen alpha through the base and LoRA models,
write `results/latent_<N>.json` and the histograms, and print the table (`run_steering_eval`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.llm import LLMClient
from lorasae.core.paths import from_portable, with_variant
from lorasae.core.result_choice import variant_files
from lorasae.evals.identity import done_already, eval_identity, source_slot, write_eval_record
from lorasae.steering.alpha_sweep import find_alpha_record, recorded_alpha
from lorasae.steering.args import (
    SteeringArgs,
    alpha_record_path,
    distributions_dir,
    positives_path,
    results_path,
)
from lorasae.steering.context import MODEL_LABEL, SteeringContext
from lorasae.steering.evaluator import Evaluator, Outcome, build_splits
from lorasae.steering.stats import Interval, lora_minus_base
from lorasae.steering.variants import find_upstream, recorded_off_default, step_variant


def _summary(outcome: Outcome, kinds: Sequence[str], confidence: float) -> dict[str, Any]:
    sets = list(next(iter(outcome.delta.values())))
    negatives = [s for s in sets if s != "positive"]
    summary: dict[str, Any] = {}
    groups = {name: [name] for name in sets} | {"negative (all)": negatives}
    for label, members in groups.items():
        entry: dict[str, Any] = {"n": int(sum(len(outcome.delta[kinds[0]][m]) for m in members))}
        for kind in kinds:
            cat = {
                key: np.concatenate([getattr(outcome, key)[kind][m] for m in members])
                for key in ("unsteered", "steered", "delta")
            }
            entry[kind] = {
                "mean_loglik_unsteered": float(cat["unsteered"].mean()),
                "mean_loglik_steered": float(cat["steered"].mean()),
                "delta_mean": float(cat["delta"].mean()),
            }
        if "lora" in kinds:
            lora = np.concatenate([outcome.delta["lora"][m] for m in members])
            base = np.concatenate([outcome.delta["base"][m] for m in members])
            entry["lora_minus_base"] = lora_minus_base(lora, base, confidence).as_dict()
        summary[label] = entry
    return summary


def summary_table(
    summary: dict[str, Any], kinds: Sequence[str], confidence: float, tablefmt: str = "simple"
) -> str:
    """Mean Δ per set and model, and LoRA − base with its interval (the evaluation's summary)."""
    rows = []
    for label, entry in summary.items():
        row = [label, entry["n"]]
        row += [entry[k]["delta_mean"] for k in kinds]
        if "lora_minus_base" in entry:
            iv = entry["lora_minus_base"]
            row.append(str(Interval(iv["mean"], iv["low"], iv["high"], iv["n"], iv["confidence"])))
        rows.append(row)
    headers = ["set", "n"] + [f"{MODEL_LABEL[k]} Δ" for k in kinds]
    if "lora" in kinds:
        headers.append(f"LoRA − base Δ [{confidence:.0%} CI]")
    return tabulate(rows, headers=headers, floatfmt="+.3f", tablefmt=tablefmt)


def _print_table(summary: dict[str, Any], kinds: Sequence[str], confidence: float) -> None:
    print(summary_table(summary, kinds, confidence))


def run_steering_eval(
    ctx: SteeringContext,
    args: SteeringArgs,
    alpha: float | None = None,
    confidence: float = 0.90,
    llm: LLMClient | None = None,
    per_set_histograms: bool = True,
) -> dict[str, Any]:
    """Steer the test split with `alpha` (default: the tuning record's choice) through the base and LoRA
    models; write `results/<SAE and adapter>/latent_<N>.json` (with its run record) and the histograms (`all` pools the negative sets; one per
    negative set too with `per_set_histograms`), print the table. Returns the results."""
    from lorasae.plotting._common import figure_paths
    from lorasae.plotting.steering import plot_steering_histograms

    assert ctx.latent is not None
    source, upstream, positives = "--alpha", None, None
    if alpha is None:
        upstream = find_alpha_record(ctx, args)
        path = upstream.path if upstream is not None else alpha_record_path(ctx.latent)
        alpha, source = recorded_alpha(ctx.latent, ctx, args.mode, path), str(path)
        tuned_on = read_output_json(path).get("positives")
        positives = from_portable(tuned_on) if tuned_on and from_portable(tuned_on).is_file() else None
    if positives is None:
        found_positives = find_upstream(
            variant_files(positives_path(ctx.latent).parent, f"latent_{ctx.latent}"), ctx.sae_source, args,
            f"positives of latent {ctx.latent}",
        )  # fmt: skip
        positives = found_positives.path if found_positives is not None else None
        upstream = upstream or found_positives
    off, variant = step_variant(args, recorded_off_default(upstream) if upstream is not None else None)
    slot = with_variant(source_slot(ctx.sae_source, ctx.adapter), variant)
    path = results_path(ctx.latent, slot=slot)
    settings = {k: v for k, v in vars(args).items() if k not in ("model", "sae", "adapter")}
    settings |= {"latent": ctx.latent, "alpha": float(alpha), "mode": args.mode, "confidence": confidence}
    settings |= {"off_default": off, "positives": str(positives) if positives else None}
    identity = eval_identity(ctx.model_name, [ctx.sae_source], ctx.adapter, settings, variant)
    if done_already("steering", path, identity, args.overwrite):
        results = read_output_json(path)
        _print_table(results["summary"], ctx.kinds, float(results["confidence"]))
        return results
    _, test_sets = build_splits(ctx, args, llm, positives)
    outcome = Evaluator(ctx, test_sets, args.batch_size, args.max_length).evaluate(
        alpha, args.mode, progress=True
    )
    kinds = ctx.kinds
    summary = _summary(outcome, kinds, confidence)

    out_dir = distributions_dir(ctx.latent, variant=variant)
    negatives = [s for s in test_sets.negatives]
    panels = [(name, [name]) for name in negatives] if per_set_histograms else []
    histograms = [(label, members) for label, members in [*panels, ("all", negatives)]]
    figures = [str(p) for label, _ in histograms for p in figure_paths(out_dir, label)]

    results = ctx.describe() | {
        "alpha": float(alpha),
        "alpha_source": source,
        "mode": args.mode,
        "split": "test",
        "normalisation": "min-max per (model, set) on unsteered values, scaled to 0-100",
        "loglik": "mean over tokens of log p(ids[t+1] | ids[:t+1]) (logits[:-1] score ids[1:]), BOS first",
        "confidence": confidence,
        "sets": test_sets.sizes(),
        "summary": summary,
        "deltas": {k: {s: v.tolist() for s, v in d.items()} for k, d in outcome.delta.items()},
        "logliks": {
            k: {
                s: {"unsteered": outcome.unsteered[k][s].tolist(), "steered": outcome.steered[k][s].tolist()}
                for s in outcome.delta[k]
            }
            for k in kinds
        },
        "histograms": figures,
    }
    atomic_write_json(path, results)
    for label, members in histograms:  # drawn once the result is written: each figure's record names it
        deltas = {
            kind: {
                "positive": outcome.delta[kind]["positive"],
                "negative": np.concatenate([outcome.delta[kind][m] for m in members]),
            }
            for kind in kinds
        }
        title = f"Latent {ctx.latent}, α={alpha:g} ({args.mode}); negatives: {label}"
        plot_steering_histograms(deltas, out_dir / f"{label}.png", title=title, inputs=[path])
    write_eval_record(path, "steering_result", identity)  # last: the run's record

    print(
        f"\nSteering latent {ctx.latent} at layer {ctx.layer}: α={alpha:g} ({args.mode}, from {source}); "
        "Δ = steered − unsteered normalised log-likelihood (% of the unsteered range)"
    )
    _print_table(summary, kinds, confidence)
    if "lora" in kinds:
        pos, neg = summary["positive"]["lora_minus_base"], summary["negative (all)"]["lora_minus_base"]
        print(
            f"POSITIVE CI ({confidence:.0%}): ({pos['low']:+.3f}, {pos['high']:+.3f})   "
            f"NEGATIVE CI ({confidence:.0%}): ({neg['low']:+.3f}, {neg['high']:+.3f})"
        )
    print(f"Results → {path}\nHistograms → {out_dir}/")
    return results


__all__ = [
    "run_steering_eval",
]
