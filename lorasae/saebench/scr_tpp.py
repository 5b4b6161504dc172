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
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lorasae.saebench.activations import (
    collect_class_activations,
    d_sae_of,
    encode_on_device,
    meaned_activations,
    sae_device_dtype,
    sae_meaned_activations,
)
from lorasae.saebench.probing import (
    NEGATIVE_CLASS_LABEL,
    POSITIVE_CLASS_LABEL,
    Probe,
    prepare_probe_data,
    probe_accuracy,
    train_probes_on_activations,
)
from lorasae.saebench.schema import EVAL_TYPE_SCR, EVAL_TYPE_TPP, eval_output

# The class keys are fixed names, as in SAEBench: "male" / "professor" stand for the first value of the
# column pair, "female" / "nurse" for the second, whatever the dataset.
PAIRED_CLASS_KEYS = {
    "male / female": "female_data_only",
    "professor / nurse": "nurse_data_only",
    "male_professor / female_nurse": "female_nurse_data_only",
}
BIASED_PROBE = "male_professor / female_nurse"
SCR_MIN_GAP = 0.001
"""SAEBench's rule: a clean − biased accuracy gap below this scores 0 (no division by a tiny gap)."""
ABLATION_POOLING = ("saebench", "unmasked")
"""How ablated residuals are mean-pooled (module docstring); the first is the default."""


# --- effects, selection, ablation ----------------------------------------------------------------


def _probe_weight(probe: Probe) -> Tensor:
    return probe.net.weight.detach().float().reshape(-1)


@torch.no_grad()
def node_effects(
    sae: Any,
    probe: Probe,
    class_name: str,
    acts_bld: dict[str, Tensor],
    perform_scr: bool,
    sae_batch_size: int,
    seed: int,
) -> Tensor:
    """Effect of each latent on `class_name`'s probe ([d_sae]), SAEBench's `get_effects_per_class_precomputed_acts`."""
    generator = torch.Generator().manual_seed(seed)
    paired = _paired_lookup() if perform_scr else None
    x_bld, labels = prepare_probe_data(acts_bld, class_name, generator, paired)
    d_sae = d_sae_of(sae)
    sums = {
        POSITIVE_CLASS_LABEL: torch.zeros(d_sae, dtype=torch.float64),
        NEGATIVE_CLASS_LABEL: torch.zeros(d_sae, dtype=torch.float64),
    }
    counts = {POSITIVE_CLASS_LABEL: 0, NEGATIVE_CLASS_LABEL: 0}
    pooled = sae_meaned_activations(x_bld, sae, sae_batch_size)
    for label in (POSITIVE_CLASS_LABEL, NEGATIVE_CLASS_LABEL):
        rows = labels == label
        sums[label] += pooled[rows].sum(0).double()
        counts[label] += int(rows.sum())
    mean_pos = sums[POSITIVE_CLASS_LABEL] / max(counts[POSITIVE_CLASS_LABEL], 1)
    mean_neg = sums[NEGATIVE_CLASS_LABEL] / max(counts[NEGATIVE_CLASS_LABEL], 1)
    diff = (mean_pos - mean_neg).float()
    if not perform_scr:
        diff = diff.clamp(min=0.0)
    dot = sae.W_dec.detach().float().cpu() @ _probe_weight(probe)
    effects = diff * dot
    return effects.abs() if perform_scr else effects


def select_top_n(effects: Tensor, n: int) -> Tensor:
    """Boolean mask of the top-n latents by effect among those with a non-zero effect."""
    mask = torch.zeros_like(effects, dtype=torch.bool)
    k = min(n, int((effects != 0).sum()))
    if k > 0:
        mask[torch.topk(effects, k).indices] = True
    return mask


def _check_pooling(pooling: str) -> None:
    if pooling not in ABLATION_POOLING:
        raise ValueError(f"ablation pooling must be one of {ABLATION_POOLING}, got {pooling!r}")


@torch.no_grad()
def ablated_meaned_activations(
    acts_bld: Tensor, sae: Any, to_ablate: Tensor, sae_batch_size: int, pooling: str = "saebench"
) -> Tensor:
    """Mean-pooled residuals with the `to_ablate` latents zeroed and the SAE error kept ([B, D]), each
    position re-encoded (the reference path). `pooling`: see `ABLATION_POOLING`; the divisor is always the
    number of unmasked (non-zero) positions."""
    _check_pooling(pooling)
    device, dtype = sae_device_dtype(sae)
    out = []
    for i in range(0, len(acts_bld), sae_batch_size):
        acts = acts_bld[i : i + sae_batch_size].float()
        nonzero = (acts.sum(-1) != 0).float()
        f = sae.encode(acts.to(device=device, dtype=dtype))
        if getattr(f, "is_sparse", False):
            f = f.to_dense()
        x_hat = sae.decode(f).float().cpu()
        error = acts - x_hat
        f = f.clone()
        f[..., to_ablate.to(f.device)] = 0.0
        modified = sae.decode(f).float().cpu() + error
        if pooling == "unmasked":
            modified = modified * nonzero[..., None]
        out.append(modified.sum(1) / nonzero.sum(1).clamp_min(1.0)[:, None])
    return torch.cat(out)


@torch.no_grad()
def pooled_latents_for_ablation(
    acts_bld: Tensor, sae: Any, sae_batch_size: int, pooling: str = "saebench"
) -> Tensor:
    """The mean-pooled latents [B, F] that `ablated_from_means` needs to reproduce
    `ablated_meaned_activations(..., pooling)`: the mean over unmasked positions, plus for "saebench" the
    masked positions' f(0), as many times as the row has masked positions, over the unmasked count."""
    _check_pooling(pooling)
    latents = sae_meaned_activations(acts_bld, sae, sae_batch_size)
    if pooling == "saebench":
        nonzero = (acts_bld.float().sum(-1) != 0).float().sum(1)
        masked = acts_bld.shape[1] - nonzero
        f_zero = encode_on_device(sae, acts_bld.new_zeros(1, acts_bld.shape[-1], dtype=torch.float32)).cpu()
        latents = latents + (masked / nonzero.clamp_min(1.0))[:, None] * f_zero
    return latents


@torch.no_grad()
def ablated_from_means(mean_acts: Tensor, mean_latents: Tensor, sae: Any, to_ablate: Tensor) -> Tensor:
    """`ablated_meaned_activations` from the mean-pooled residuals [B, D] and pooled latents [B, F]
    (`pooled_latents_for_ablation`): x' = x − (decode(f ⊙ m) − decode(0)) for an affine decoder (every
    SAEBench architecture), and pooling commutes with it, so one small decode per ablation replaces
    re-encoding every sequence."""
    device, dtype = sae_device_dtype(sae)
    kept = torch.zeros_like(mean_latents)
    kept[:, to_ablate] = mean_latents[:, to_ablate]
    delta = sae.decode(kept.to(device=device, dtype=dtype)).float().cpu()
    delta = delta - sae.decode(torch.zeros_like(kept[:1]).to(device=device, dtype=dtype)).float().cpu()
    return mean_acts - delta


def _paired_lookup() -> dict[str, str]:
    lookup = dict(PAIRED_CLASS_KEYS)
    lookup.update({v: k for k, v in PAIRED_CLASS_KEYS.items()})
    return lookup


def _class_seed(seed: int, name: str) -> int:
    return seed * 1_000_003 + zlib.crc32(name.encode())


def probe_test_accuracies(
    probes: dict[str, Probe], classes: list[str], acts_bd: dict[str, Tensor], perform_scr: bool, seed: int
) -> dict[str, float]:
    """Each class's probe on its own test task; for SCR also every other probe on each class's data,
    keyed `"{probe} probe on {class} data"` (SAEBench's `get_probe_test_accuracy`). The negatives drawn for
    a class are the same for every call with the same seed, so clean and ablated runs see the same rows."""
    paired = _paired_lookup() if perform_scr else None
    accs: dict[str, float] = {}
    for name in classes:
        x, y = prepare_probe_data(
            acts_bd, name, torch.Generator().manual_seed(_class_seed(seed, name)), paired
        )
        accs[name] = probe_accuracy(probes[name], x, y)
        if perform_scr:
            for other in PAIRED_CLASS_KEYS:
                if other != name and name in PAIRED_CLASS_KEYS:
                    accs[f"{other} probe on {name} data"] = probe_accuracy(probes[other], x, y)
    return accs


# --- metric formulas -----------------------------------------------------------------------------


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
        paired_classes=_paired_lookup() if config.perform_scr else None,
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
