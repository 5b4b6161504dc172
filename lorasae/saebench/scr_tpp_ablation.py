"""SCR and TPP (SAEBench's `evals/scr_and_tpp/main.py`): each latent's effect on a probe, the top-N
selection, zero-ablation of the selected latents with the SAE error kept, and the probes' accuracies on
(ablated) activations. The pooling rules are described in `scr_tpp.py`'s docstring.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import Tensor

from lorasae.saebench.activations import d_sae_of, encode_on_device, sae_device_dtype, sae_meaned_activations
from lorasae.saebench.probing import (
    NEGATIVE_CLASS_LABEL,
    POSITIVE_CLASS_LABEL,
    Probe,
    prepare_probe_data,
    probe_accuracy,
)

# The class keys are fixed names, as in SAEBench: "male" / "professor" stand for the first value of the
# column pair, "female" / "nurse" for the second, whatever the dataset.
PAIRED_CLASS_KEYS = {
    "male / female": "female_data_only",
    "professor / nurse": "nurse_data_only",
    "male_professor / female_nurse": "female_nurse_data_only",
}
ABLATION_POOLING = ("saebench", "unmasked")
"""How ablated residuals are mean-pooled (`scr_tpp.py`'s module docstring); the first is the default."""


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
    paired = paired_lookup() if perform_scr else None
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


def paired_lookup() -> dict[str, str]:
    """`PAIRED_CLASS_KEYS` both ways: each SCR class key to its paired key."""
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
    paired = paired_lookup() if perform_scr else None
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
