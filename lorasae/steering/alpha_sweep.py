"""Tuning alpha: evaluate one alpha or sweep a grid on a split, record the evaluations in
`results/latent_<N>_alpha.json` and choose alpha by the rule of `lorasae.steering.alpha_rule` (`tune_alpha`);
read the chosen alpha back for the final evaluation (`recorded_alpha`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tqdm.auto import tqdm

from lorasae.core.atomic import atomic_write_json, read_output_json
from lorasae.core.llm import LLMClient
from lorasae.core.paths import portable
from lorasae.core.result_choice import variant_files
from lorasae.evals.identity import done_already, eval_identity, write_eval_record
from lorasae.steering.alpha_rule import (
    DEFAULT_MAX_NEGATIVE_DROP,
    AlphaScore,
    choose_alpha,
    default_grid,
    rule_text,
    score_alpha,
)
from lorasae.steering.args import SteeringArgs, alpha_record_path, positives_path
from lorasae.steering.context import MODEL_LABEL, SteeringContext
from lorasae.steering.evaluator import Evaluator, build_splits
from lorasae.steering.variants import (
    TUNE_ACCUMULATED,
    find_upstream,
    recorded_off_default,
    step_variant,
)


def _describes(path: Path, ctx: SteeringContext) -> bool:
    """Whether the tuning record at `path` names this setup as `recorded_alpha` checks it (model, SAE, layer,
    adapter as given now: a moved root makes it another setup, and the record is redone)."""
    if not path.is_file():
        return False
    record = read_output_json(path)
    return all(record.get(k) == v for k, v in ctx.describe().items())


def _grid(text: Any) -> list[float] | None:
    """A `--grid` value as floats (None when not a grid string)."""
    return [float(a) for a in text.split(",") if a.strip()] if isinstance(text, str) else None


def _mode_entry(record: dict[str, Any], mode: str) -> dict[str, Any]:
    return record.get("modes", {}).get(mode, {})


def tune_alpha(
    ctx: SteeringContext,
    args: SteeringArgs,
    alpha: float | None = None,
    grid: Sequence[float] | None = None,
    tuning: bool = True,
    llm: LLMClient | None = None,
    max_negative_drop: float = DEFAULT_MAX_NEGATIVE_DROP,
) -> dict[str, Any]:
    """Evaluate one alpha (`alpha`) or sweep a grid on the tuning split (`tuning`; the test split
    otherwise), record the evaluations in `results/latent_<N>_alpha.json` (per steering mode and split;
    a record of another model, SAE, layer or adapter is replaced, and a split whose sets changed starts
    afresh), and choose alpha by the rule of `lorasae.steering.alpha_rule` (budget `max_negative_drop`) over
    every alpha recorded for the split. Returns the record."""
    assert ctx.latent is not None
    positives = find_upstream(
        variant_files(positives_path(ctx.latent).parent, f"latent_{ctx.latent}"), ctx.sae_source, args,
        f"positives of latent {ctx.latent}",
    )  # fmt: skip
    upstream = recorded_off_default(positives) if positives else None
    off, variant = step_variant(args, upstream, ignore=TUNE_ACCUMULATED)
    split_name = "tuning" if tuning else "test"
    path = alpha_record_path(ctx.latent, variant=variant)
    settings = {k: v for k, v in vars(args).items() if k not in ("model", "sae", "adapter")}
    settings |= {"latent": ctx.latent, "split": split_name, "max_negative_drop": max_negative_drop}
    settings |= {"off_default": off, "alpha": alpha}  # the alpha (or grid) evaluated, as given here
    if grid is not None and _grid(settings.get("grid")) != [float(a) for a in grid]:
        settings["grid"] = [float(a) for a in grid]
    identity = eval_identity(ctx.model_name, [ctx.sae_source], ctx.adapter, settings, variant)
    if _describes(path, ctx) and done_already("tune_alpha", path, identity, args.overwrite):
        record = read_output_json(path)
        chosen = _mode_entry(record, args.mode).get("splits", {}).get(split_name, {}).get("chosen_alpha")
        print(f"Chosen alpha = {chosen:g} ({split_name} split) → {path}")
        return record
    tune_sets, test_sets = build_splits(ctx, args, llm, positives.path if positives else None)
    if not tuning:
        warnings.warn(
            "Evaluating alphas on the test split: choosing alpha this way leaks the test set.", stacklevel=2
        )
    sets = tune_sets if tuning else test_sets
    evaluator = Evaluator(ctx, sets, args.batch_size, args.max_length)
    if alpha is not None:
        alphas = [float(alpha)]
    elif grid:
        alphas = [float(a) for a in grid]
    else:
        alphas = default_grid(args.mode, evaluator.residual_rms() if args.mode == "additive" else None)
    scores = []
    for value in tqdm(alphas, desc="alpha sweep", disable=len(alphas) == 1):
        scores.append(score_alpha(value, evaluator.evaluate(value, args.mode).delta))

    key = ctx.describe()
    record: dict[str, Any] = read_output_json(path) if path.exists() else {}
    if {k: record.get(k) for k in key} != key:
        record = dict(key)  # a different model, SAE, layer or adapter: start afresh
    rule = rule_text(max_negative_drop)
    mode_entry = record.setdefault("modes", {}).setdefault(args.mode, {})
    mode_entry["rule"] = rule
    splits = mode_entry.setdefault("splits", {})
    entry = splits.setdefault(split_name, {"evaluations": []})
    if entry.get("sets") != sets.sizes():
        entry["evaluations"] = []  # other examples: earlier scores are not comparable
    entry["sets"] = sets.sizes()
    known = {float(e["alpha"]): e for e in entry["evaluations"]}
    for score in scores:
        known[score.alpha] = score.as_dict()
    entry["evaluations"] = [known[a] for a in sorted(known)]
    choice = choose_alpha([AlphaScore.from_dict(e) for e in entry["evaluations"]], max_negative_drop)
    entry["max_negative_drop"] = max_negative_drop
    entry["chosen_alpha"] = choice.alpha
    entry["warning"] = choice.warning
    entry["last_run"] = "sweep" if alpha is None else "single"
    record["positives"] = portable(positives.path) if positives else None
    atomic_write_json(path, record)
    write_eval_record(path, "steering_alpha", identity)

    rows = []
    for e in entry["evaluations"]:
        score = AlphaScore.from_dict(e)
        row = [f"{score.alpha:g}"]
        for kind in ctx.kinds:
            row += [score.positive[kind], score.negative[kind]]
        row += [score.selectivity, "←" if score.alpha == choice.alpha else ""]
        rows.append(row)
    headers = ["alpha"]
    for kind in ctx.kinds:
        headers += [f"{MODEL_LABEL[kind]} Δpos", f"{MODEL_LABEL[kind]} Δneg"]
    headers += ["selectivity", "chosen"]
    print(
        f"\nLatent {ctx.latent}, {args.mode} steering at layer {ctx.layer}, {split_name} split "
        f"({', '.join(f'{k}: {v}' for k, v in sets.sizes().items())}); Δ in % of the unsteered range"
    )
    print(tabulate(rows, headers=headers, floatfmt="+.3f"))
    print(f"Rule: {rule}")
    if choice.warning:
        warnings.warn(choice.warning, stacklevel=2)
    print(f"Chosen alpha = {choice.alpha:g} ({split_name} split) → {path}")
    return record


def find_alpha_record(ctx: SteeringContext, args: SteeringArgs):
    """The tuning record the evaluation uses (`variants.find_upstream`), or None when there is none."""
    assert ctx.latent is not None
    folder = alpha_record_path(ctx.latent).parent
    items = variant_files(folder, f"latent_{ctx.latent}_alpha")
    return find_upstream(items, ctx.sae_source, args, f"tuning records of latent {ctx.latent}")


def recorded_alpha(latent: int, ctx: SteeringContext, mode: str, path=None) -> float:
    """The alpha chosen on the tuning split in the tuning record `path` (default: the default settings')."""
    path = path if path is not None else alpha_record_path(latent)
    if not path.exists():
        raise FileNotFoundError(
            f"No --alpha given and no tuning record {path}: run "
            f"`python eval/steering/tune_alpha.py --neuron {latent} --tuning` first, or pass --alpha."
        )
    record = read_output_json(path)
    mismatch = {k: (record.get(k), v) for k, v in ctx.describe().items() if record.get(k) != v}
    entry = _mode_entry(record, mode).get("splits", {}).get("tuning")
    if mismatch or not entry or entry.get("chosen_alpha") is None:
        problem = f"differs in {mismatch}" if mismatch else f"has no tuning-split choice for {mode} steering"
        raise ValueError(
            f"{path} does not fit this setup ({problem}): run tune_alpha.py --tuning (with the same "
            "--mode), or pass --alpha."
        )
    return float(entry["chosen_alpha"])


__all__ = [
    "tune_alpha",
]
