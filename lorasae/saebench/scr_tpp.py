"""SAEBench's Spurious Correlation Removal (SCR) and Targeted Probe Perturbation (TPP)
(`evals/scr_and_tpp/main.py`), natively.

Both train linear probes (SAEBench's torch probe: AdamW, batch 16, L1 penalty) on mean-pooled residuals,
rank SAE latents by their effect on a probe, zero-ablate the top N latents in the residual stream (keeping
the SAE error term: x' = decode(f with f_ablated = 0) + (x − decode(f))), and re-test the probes.

- Effect of latent i for class c: (mean latent over positives − mean over negatives)_i × (w_probe · W_dec[i]);
  TPP clamps the mean difference at 0 (positive-class effects only); SCR takes |effect|.
- SCR, for one profession pair (e.g. professor / nurse) and the gender column: a probe trained on the
  perfectly biased set (male professors vs female nurses) is tested on profession data and on gender
  data. dir1 ablates the top-N latents of the gender probe and measures the biased probe on the
  profession data; dir2 ablates profession latents and measures on the gender data.
  SCR = (acc_ablated − acc_biased) / (acc_clean_probe − acc_biased), with acc_clean_probe the accuracy of a
  probe trained on that concept alone; as in SAEBench, a gap below `SCR_MIN_GAP` (0.001, negative gaps
  included) scores 0 and is averaged in like any other run. `scr_metric_threshold_N` picks dir1 when the
  biased probe's accuracy on the profession data is below its accuracy on gender data, else dir2.
- Ablated activations are pooled as SAEBench's `ablated_precomputed_activations` pools them
  (`ABLATION_POOLING = "saebench"`, the default): the ablated residual is summed over *all* positions and
  divided by the number of unmasked ones. Masked (BOS/PAD/EOS) positions hold x = 0, where the SAE still
  encodes f(0) ≠ 0 when b_dec ≠ 0 (TopK: f(0) = TopK(W_enc(0 − b_dec) + b_enc)), so ablating a latent
  active on f(0) shifts every masked position by −f(0)_i W_dec[i] and that shift enters the mean.
  `"unmasked"` keeps masked positions out of the sum (the cleaner definition: padding is not text).
- TPP: for each class c, ablate its top-N latents; intended diff = drop of c's probe accuracy, unintended
  diff = mean drop of the other classes' probes; `tpp_threshold_N_total_metric` = intended − unintended.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from lorasae.saebench.activations import collect_class_activations, d_sae_of, meaned_activations
from lorasae.saebench.probing import train_probes_on_activations
from lorasae.saebench.schema import EVAL_TYPE_SCR, EVAL_TYPE_TPP, eval_output
from lorasae.saebench.scr_tpp_ablation import (
    PAIRED_CLASS_KEYS,
    ablated_from_means,
    node_effects,
    paired_lookup,
    pooled_latents_for_ablation,
    probe_test_accuracies,
    select_top_n,
)
from lorasae.saebench.scr_tpp_metrics import average_over_runs, scr_scores, tpp_scores

# --- the eval ------------------------------------------------------------------------------------


@dataclass
class ScrAndTppEvalConfig:
    """SAEBench's ScrAndTppEvalConfig fields (values for one run)."""

    random_seed: int = 42
    dataset_names: list[str] = field(default_factory=list)
    perform_scr: bool = True
    early_stopping_patience: int = 20
    train_set_size: int = 4000
    test_set_size: int = 1000
    context_length: int = 128
    probe_train_batch_size: int = 16
    probe_test_batch_size: int = 500
    probe_epochs: int = 20
    probe_lr: float = 1e-3
    probe_l1_penalty: float = 1e-3
    sae_batch_size: int = 125
    llm_batch_size: int = 32
    llm_dtype: str = "float32"
    lower_vram_usage: bool = False
    model_name: str = ""
    n_values: list[int] = field(default_factory=lambda: [2, 5, 10, 20, 50, 100, 500])
    column1_vals_lookup: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    ablation_pooling: str = "saebench"
    """Not a SAEBench field: how ablated residuals are pooled (`ABLATION_POOLING`); SAEBench's by default."""


def _usable_n_values(n_values: list[int], d_sae: int) -> list[int]:
    usable = [n for n in n_values if n <= d_sae]
    if len(usable) < len(n_values):
        warnings.warn(f"SCR/TPP: dropping N values above the SAE width {d_sae}", stacklevel=3)
    return usable


def run_scr_tpp_dataset(
    model: torch.nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    train_texts: dict[str, list[str]],
    test_texts: dict[str, list[str]],
    config: ScrAndTppEvalConfig,
    classes: list[str],
) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, float]]:
    """Train the LLM probes, rank latents, ablate: (accuracies[ablated class][N][measured], clean accuracies)."""
    train_bld = collect_class_activations(
        model, tokenizer, train_texts, layer, config.context_length, config.llm_batch_size
    )
    test_bld = collect_class_activations(
        model, tokenizer, test_texts, layer, config.context_length, config.llm_batch_size
    )
    train_bd = {k: meaned_activations(v) for k, v in train_bld.items()}
    test_bd = {k: meaned_activations(v) for k, v in test_bld.items()}
    seed = config.random_seed
    torch.manual_seed(seed)
    probes, _ = train_probes_on_activations(
        train_bd,
        test_bd,
        None,
        seed,
        use_sklearn=False,
        torch_kwargs={
            "epochs": config.probe_epochs,
            "lr": config.probe_lr,
            "batch_size": config.probe_train_batch_size,
            "l1_penalty": config.probe_l1_penalty,
            "early_stopping_patience": config.early_stopping_patience,
        },
        paired_classes=paired_lookup() if config.perform_scr else None,
        classes=classes,
    )
    clean = probe_test_accuracies(probes, classes, test_bd, config.perform_scr, seed)
    effects = {
        c: node_effects(sae, probes[c], c, train_bld, config.perform_scr, config.sae_batch_size, seed)
        for c in classes
    }
    n_values = _usable_n_values(config.n_values, d_sae_of(sae))
    test_latents = {
        k: pooled_latents_for_ablation(v, sae, config.sae_batch_size, config.ablation_pooling)
        for k, v in test_bld.items()
    }
    accuracies: dict[str, dict[int, dict[str, float]]] = {}
    for ablated in classes:
        accuracies[ablated] = {}
        for n in n_values:
            mask = select_top_n(effects[ablated], n)
            ablated_bd = {k: ablated_from_means(test_bd[k], test_latents[k], sae, mask) for k in test_bld}
            accuracies[ablated][n] = probe_test_accuracies(
                probes, classes, ablated_bd, config.perform_scr, seed
            )
    return accuracies, clean


def run_scr(
    model: torch.nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    runs: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]],
    config: ScrAndTppEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """SCR over `runs` {run name: (train, test)} whose dicts hold the six keys of `PAIRED_CLASS_KEYS`."""
    config.perform_scr = True
    results: dict[str, dict[str, float]] = {}
    raw: dict[str, Any] = {}
    for name, (train, test) in runs.items():
        accuracies, clean = run_scr_tpp_dataset(
            model, tokenizer, sae, layer, train, test, config, list(PAIRED_CLASS_KEYS)
        )
        results[name] = scr_scores(accuracies, clean)
        raw[f"{name}_results"] = {"llm_clean_accs": clean, "ablated_accs": accuracies}
    metrics = {"scr_metrics": average_over_runs(results)}
    details = [{"dataset_name": f"{name}_results", **r} for name, r in results.items()]
    return eval_output(EVAL_TYPE_SCR, asdict(config), metrics, details, sae, sae_id, release_id, raw)


def run_tpp(
    model: torch.nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    datasets: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]],
    config: ScrAndTppEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """TPP over `datasets` {name: (train texts by class, test texts by class)}."""
    config.perform_scr = False
    config.dataset_names = list(datasets)
    results: dict[str, dict[str, float]] = {}
    per_class: dict[str, Any] = {}
    for name, (train, test) in datasets.items():
        accuracies, clean = run_scr_tpp_dataset(
            model, tokenizer, sae, layer, train, test, config, list(train)
        )
        results[name], per_class[f"{name}_tpp_results"] = tpp_scores(accuracies, clean)
    keys = list(next(iter(results.values())))
    metrics = {"tpp_metrics": {k: float(np.mean([r[k] for r in results.values()])) for k in keys}}
    details = [{"dataset_name": f"{name}_tpp_results", **r} for name, r in results.items()]
    return eval_output(EVAL_TYPE_TPP, asdict(config), metrics, details, sae, sae_id, release_id, per_class)
