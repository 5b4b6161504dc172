"""SAEBench's core eval (`evals/core/main.py`, now `sae_lens.evals`), natively on Hugging Face models.

Downstream reconstruction (per token, then averaged over tokens; BOS/EOS/PAD positions excluded):
- CE loss score = (CE_zero_ablation − CE_SAE) / (CE_zero_ablation − CE_clean), where CE_SAE splices the
  reconstruction into layer L's output and CE_zero_ablation replaces that output with zeros;
- KL score = (KL_zero_ablation − KL_SAE) / KL_zero_ablation, KL(p_clean ‖ p_modified) per position.

Sparsity and reconstruction quality on the residual stream itself:
- L0 = number of non-zero latents per token, L1 = Σ|latents|;
- explained variance = 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over all evaluated tokens, x̄ their mean (variance
  around the mean, not around zero); `explained_variance_legacy` = per-token 1 − ‖x − x̂‖²/‖x − x̄_batch‖²
  averaged (SAEBench's older formula, kept for comparison);
- mse = SAEBench's field: each token's ‖x − x̂‖² divided by the number of evaluated tokens in its batch
  (`batch_size_prompts` × context less special positions), averaged over tokens — i.e. the mean squared
  error per token over that token count; `squared_error_per_token` = the mean over
  tokens of ‖x − x̂‖² itself (not a SAEBench field); cossim = mean cosine(x, x̂); l2 ratio ‖x̂‖/‖x‖;
  relative reconstruction bias = E‖x̂‖² / E[x·x̂];
- per-latent firing density; frac_alive (density > 0), freq_over_1/10_percent, their normalised forms, and
  explicitly frac_dead = 1 − frac_alive and frac_dense = fraction of latents firing on > `dense_threshold`
  of tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from lorasae.core.gap import paired_gap_se
from lorasae.model.ce import per_token_ce
from lorasae.model.hooks import residual_at, splice
from lorasae.model.load import special_token_ids
from lorasae.sae.splice import splice_fn
from lorasae.saebench.activations import d_sae_of, keep_mask, sae_device_dtype
from lorasae.saebench.schema import EVAL_TYPE_CORE, eval_output

# --- formulas ------------------------------------------------------------------------------------


def ce_loss_score(ce_clean: float, ce_sae: float, ce_zero_ablation: float) -> float:
    """(CE_zero_ablation − CE_SAE) / (CE_zero_ablation − CE_clean): 1 = perfect, 0 = as bad as zeroing."""
    return (ce_zero_ablation - ce_sae) / (ce_zero_ablation - ce_clean)


def kl_div_score(kl_sae: float, kl_zero_ablation: float) -> float:
    """(KL_zero_ablation − KL_SAE) / KL_zero_ablation (KL of the clean model against each)."""
    return (kl_zero_ablation - kl_sae) / kl_zero_ablation


def per_token_kl(clean_logits: Tensor, new_logits: Tensor) -> Tensor:
    """KL(softmax(clean) ‖ softmax(new)) per position [B, T]."""
    log_p = F.log_softmax(clean_logits.float(), dim=-1)
    log_q = F.log_softmax(new_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    """1 − Σ_i ‖x_i − x̂_i‖² / Σ_i ‖x_i − x̄‖², x̄ the mean of the rows of x ([N, d])."""
    x64, xh64 = x.double(), x_hat.double()
    resid = (x64 - xh64).pow(2).sum()
    total = (x64 - x64.mean(dim=0)).pow(2).sum()
    return float(1.0 - resid / total)


def explained_variance_legacy(x: Tensor, x_hat: Tensor) -> Tensor:
    """SAEBench's older per-token values 1 − ‖x_i − x̂_i‖² / ‖x_i − x̄‖² [N] (averaged by the caller)."""
    resid = (x - x_hat).pow(2).sum(dim=-1)
    total = (x - x.mean(dim=0)).pow(2).sum(dim=-1)
    return 1 - resid / total


class ExplainedVarianceAccumulator:
    """Streaming `explained_variance` over batches: float64 sums of x, ‖x‖² and ‖x − x̂‖²."""

    def __init__(self) -> None:
        self.sum_x: Tensor | None = None
        self.sum_sq = 0.0
        self.sum_resid = 0.0
        self.n = 0

    def add(self, x: Tensor, x_hat: Tensor) -> None:
        x64 = x.double().cpu()
        self.sum_x = x64.sum(0) if self.sum_x is None else self.sum_x + x64.sum(0)
        self.sum_sq += float(x64.pow(2).sum())
        self.sum_resid += float((x64 - x_hat.double().cpu()).pow(2).sum())
        self.n += x.shape[0]

    def compute(self) -> float:
        if self.n == 0 or self.sum_x is None:
            return float("nan")
        total = self.sum_sq / self.n - float((self.sum_x / self.n).pow(2).sum())
        mse = self.sum_resid / self.n
        if total < 1e-12:
            return 1.0 if mse < 1e-12 else 0.0
        return 1.0 - mse / total


def cosine_similarity_rows(x: Tensor, x_hat: Tensor) -> Tensor:
    """cos(x_i, x̂_i) per row [N] (SAEBench normalises each vector, then takes the dot product)."""
    return ((x / x.norm(dim=-1, keepdim=True)) * (x_hat / x_hat.norm(dim=-1, keepdim=True))).sum(-1)


def density_metrics(feature_density: Tensor, dense_threshold: float = 0.1) -> dict[str, float]:
    """SAEBench's `calculate_misc_metrics` density part, plus explicit dead and dense fractions."""
    dens = feature_density.float()
    total = dens.sum()
    frac_alive = float((dens > 0).float().mean())

    def normalized(threshold: float) -> float:
        return float(dens[dens > threshold].sum() / total) if total > 0 else 0.0

    return {
        "frac_alive": frac_alive,
        "frac_dead": 1.0 - frac_alive,
        "frac_dense": float((dens > dense_threshold).float().mean()),
        "freq_over_1_percent": float((dens > 0.01).float().mean()),
        "freq_over_10_percent": float((dens > 0.1).float().mean()),
        "normalized_freq_over_1_percent": normalized(0.01),
        "normalized_freq_over_10_percent": normalized(0.1),
    }


def max_cosine_sim(vectors: Tensor, chunk: int = 1024) -> Tensor:
    """For each row, the largest cosine similarity with any other row ([F, d] → [F])."""
    unit = F.normalize(vectors.float(), dim=-1)
    out = torch.empty(unit.shape[0], dtype=unit.dtype, device=unit.device)
    for start in range(0, unit.shape[0], chunk):
        sims = unit[start : start + chunk] @ unit.T
        rows = torch.arange(sims.shape[0], device=unit.device)
        sims[rows, rows + start] = float("-inf")
        out[start : start + chunk] = sims.max(dim=1).values
    return out


def encoder_matrix(sae: Any) -> Tensor | None:
    """Encoder directions as [d_sae, d_in] (SAELens `W_enc` is [d_in, d_sae]; an `encoder` Linear is [d_sae, d_in])."""
    w = getattr(sae, "W_enc", None)
    if isinstance(w, Tensor):
        return w.T
    enc = getattr(sae, "encoder", None)
    if isinstance(enc, nn.Linear):
        return enc.weight
    return None


def encoder_bias(sae: Any) -> Tensor | None:
    b = getattr(sae, "b_enc", None)
    if isinstance(b, Tensor):
        return b
    enc = getattr(sae, "encoder", None)
    if isinstance(enc, nn.Linear) and enc.bias is not None:
        return enc.bias
    return None


# --- the eval ------------------------------------------------------------------------------------


@dataclass
class CoreEvalConfig:
    """SAEBench's CoreEvalConfig fields (values for one run)."""

    model_name: str = ""
    batch_size_prompts: int = 16
    n_eval_reconstruction_batches: int = 10
    n_eval_sparsity_variance_batches: int = 1
    dataset: str = "Skylion007/openwebtext"
    context_size: int = 128
    compute_kl: bool = True
    compute_ce_loss: bool = True
    compute_l2_norms: bool = True
    compute_sparsity_metrics: bool = True
    compute_variance_metrics: bool = True
    compute_featurewise_density_statistics: bool = True
    compute_featurewise_weight_based_metrics: bool = True
    exclude_special_tokens_from_reconstruction: bool = True
    dense_threshold: float = 0.1
    llm_dtype: str = "float32"
    verbose: bool = False


@torch.no_grad()
def reconstruction_metrics(
    model: nn.Module,
    tokens: Tensor,
    sae: Any,
    layer: int,
    special_ids: Sequence[int],
    exclude_special: bool,
) -> dict[str, Tensor]:
    """Per-token CE (clean, SAE, zero ablation) [B, T−1] and KL (SAE, zero ablation) [B, T] for one batch.
    The SAE goes in through the project's one splice (`hooks.splice` + `sae.splice.splice_fn`, as in
    `eval_ce.mean_ce`); with `exclude_special`, positions holding `special_ids` keep their activation."""
    device = next(model.parameters()).device
    ids = tokens.to(device)
    clean = model(input_ids=ids, use_cache=False).logits
    with splice(model, {layer: splice_fn(sae, ids, special_ids, skip_special=exclude_special)}):
        recon = model(input_ids=ids, use_cache=False).logits
    with splice(model, {layer: torch.zeros_like}):
        zero = model(input_ids=ids, use_cache=False).logits
    return {
        "ce_loss_without_sae": per_token_ce(clean, ids).cpu(),
        "ce_loss_with_sae": per_token_ce(recon, ids).cpu(),
        "ce_loss_with_ablation": per_token_ce(zero, ids).cpu(),
        "kl_div_with_sae": per_token_kl(clean, recon).cpu(),
        "kl_div_with_ablation": per_token_kl(clean, zero).cpu(),
    }


def _batches(tokens: Tensor, batch_size: int, n_batches: int) -> list[Tensor]:
    needed = batch_size * n_batches
    if tokens.shape[0] < needed:
        raise ValueError(
            f"core eval needs {needed} sequences ({n_batches} batches of {batch_size}), got {tokens.shape[0]}"
        )
    return [tokens[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


@torch.no_grad()
def run_core(
    model: nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    tokens: Tensor,
    config: CoreEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """Run the core eval on `tokens` [N, context_size] and return SAEBench's output object."""
    metrics: dict[str, dict[str, Any]] = {}
    B = config.batch_size_prompts

    unstructured: dict[
        str, float
    ] = {}  # the CE gap's standard error (lorasae.core.gap), not a SAEBench field
    if config.compute_kl or config.compute_ce_loss:
        acc: dict[str, list[Tensor]] = {}
        rows: dict[str, list[Tensor]] = {}
        special = special_token_ids(tokenizer)
        batches = _batches(tokens, B, config.n_eval_reconstruction_batches)
        for batch in tqdm(batches, desc="core: reconstruction", disable=not config.verbose):
            keep = keep_mask(batch, tokenizer)
            per_token = reconstruction_metrics(
                model, batch, sae, layer, special, config.exclude_special_tokens_from_reconstruction
            )
            for name, values in per_token.items():
                mask = keep if values.shape[1] == keep.shape[1] else keep[:, :-1]
                acc.setdefault(name, []).append(values[mask])
                if name in ("ce_loss_without_sae", "ce_loss_with_sae"):  # per sequence, for the gap's noise
                    rows.setdefault(name, []).append((values * mask).double().sum(1))
            rows.setdefault("counts", []).append(keep[:, :-1].sum(1))
        means = {name: float(torch.cat(v).mean()) for name, v in acc.items()}
        counts = torch.cat(rows["counts"])
        unstructured["ce_loss_gap_stderr"] = paired_gap_se(
            torch.cat(rows["ce_loss_without_sae"]), counts, torch.cat(rows["ce_loss_with_sae"]), counts
        )
        if config.compute_kl:
            metrics["model_behavior_preservation"] = {
                "kl_div_score": kl_div_score(means["kl_div_with_sae"], means["kl_div_with_ablation"]),
                "kl_div_with_ablation": means["kl_div_with_ablation"],
                "kl_div_with_sae": means["kl_div_with_sae"],
            }
        if config.compute_ce_loss:
            metrics["model_performance_preservation"] = {
                "ce_loss_score": ce_loss_score(
                    means["ce_loss_without_sae"], means["ce_loss_with_sae"], means["ce_loss_with_ablation"]
                ),
                "ce_loss_with_ablation": means["ce_loss_with_ablation"],
                "ce_loss_with_sae": means["ce_loss_with_sae"],
                "ce_loss_without_sae": means["ce_loss_without_sae"],
            }

    d_sae = d_sae_of(sae)
    lists: dict[str, list[Tensor]] = {}
    ev = ExplainedVarianceAccumulator()
    total_acts = torch.zeros(d_sae, dtype=torch.float64)
    total_prompts = torch.zeros(d_sae, dtype=torch.float64)
    total_tokens = 0
    device = next(model.parameters()).device
    sae_dev, sae_dtype = sae_device_dtype(sae)
    batches = _batches(tokens, B, config.n_eval_sparsity_variance_batches)
    for batch in tqdm(batches, desc="core: sparsity/variance", disable=not config.verbose):
        keep = keep_mask(batch, tokenizer)
        h = residual_at(model, batch.to(device), layer)
        z = sae.encode(h.to(device=sae_dev, dtype=sae_dtype))
        if getattr(z, "is_sparse", False):
            z = z.to_dense()
        x_hat = sae.decode(z).float().cpu()
        z = z.float().cpu()
        x = h.float().cpu()
        flat_keep = keep.reshape(-1)
        xf = x.reshape(-1, x.shape[-1])[flat_keep]
        xhf = x_hat.reshape(-1, x.shape[-1])[flat_keep]
        zf = z.reshape(-1, d_sae)[flat_keep]
        if config.compute_l2_norms:
            norm_in = xf.norm(dim=-1)
            norm_out = xhf.norm(dim=-1)
            lists.setdefault("l2_norm_in", []).append(norm_in)
            lists.setdefault("l2_norm_out", []).append(norm_out)
            lists.setdefault("l2_ratio", []).append(
                norm_out / torch.where(norm_in.abs() < 1e-4, 1.0, norm_in)
            )
            bias = xhf.pow(2).sum(-1).mean() / (xf * xhf).sum(-1).mean()
            lists.setdefault("relative_reconstruction_bias", []).append(bias.reshape(1))
        if config.compute_sparsity_metrics:
            lists.setdefault("l0", []).append((zf != 0).sum(-1).float())
            lists.setdefault("l1", []).append(zf.abs().sum(-1))
        if config.compute_variance_metrics:
            lists.setdefault("explained_variance_legacy", []).append(explained_variance_legacy(xf, xhf))
            ev.add(xf, xhf)
            squared_error = (xf - xhf).pow(2).sum(-1)
            lists.setdefault("mse", []).append(squared_error / max(xf.shape[0], 1))
            lists.setdefault("squared_error_per_token", []).append(squared_error)
            lists.setdefault("cossim", []).append(cosine_similarity_rows(xf, xhf))
        active = (z * keep[..., None]) != 0
        total_acts += active.sum(dim=(0, 1)).double()
        total_prompts += (active.sum(dim=1) > 0).sum(dim=0).double()
        total_tokens += int(keep.sum())

    means = {name: float(torch.cat(v).mean()) for name, v in lists.items()}
    if config.compute_l2_norms:
        metrics["shrinkage"] = {
            k: means[k] for k in ("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias")
        }
    if config.compute_sparsity_metrics:
        metrics["sparsity"] = {"l0": means["l0"], "l1": means["l1"]}
    if config.compute_variance_metrics:
        metrics["reconstruction_quality"] = {
            "explained_variance": ev.compute(),
            "explained_variance_legacy": means["explained_variance_legacy"],
            "mse": means["mse"],
            "cossim": means["cossim"],
            "squared_error_per_token": means["squared_error_per_token"],
        }
    T = tokens.shape[1]
    metrics["token_stats"] = {
        "total_tokens_eval_reconstruction": T * B * config.n_eval_reconstruction_batches,
        "total_tokens_eval_sparsity_variance": T * B * config.n_eval_sparsity_variance_batches,
    }

    density = total_acts / max(total_tokens, 1)
    misc = density_metrics(density, config.dense_threshold)
    details: list[dict[str, Any]] = []
    feature: dict[str, list[float]] = {}
    if config.compute_featurewise_density_statistics:
        feature["feature_density"] = density.tolist()
        feature["consistent_activation_heuristic"] = (total_acts / total_prompts).tolist()
    w_dec = sae.W_dec.detach().float().cpu()
    misc["average_max_decoder_cosine_sim"] = float(max_cosine_sim(w_dec).mean())
    w_enc = encoder_matrix(sae)
    if w_enc is not None:
        w_enc = w_enc.detach().float().cpu()
        misc["average_max_encoder_cosine_sim"] = float(max_cosine_sim(w_enc).mean())
    if config.compute_featurewise_weight_based_metrics:
        feature["max_decoder_cosine_sim"] = max_cosine_sim(w_dec).tolist()
        if w_enc is not None:
            feature["encoder_norm"] = w_enc.norm(dim=-1).tolist()
            feature["encoder_decoder_cosine_sim"] = F.cosine_similarity(w_enc, w_dec, dim=-1).tolist()
            feature["max_encoder_cosine_sim"] = max_cosine_sim(w_enc).tolist()
            b = encoder_bias(sae)
            if b is not None:
                feature["encoder_bias"] = b.detach().float().cpu().tolist()
    metrics["misc_metrics"] = misc
    if feature:
        details = [{"index": i, **{k: v[i] for k, v in feature.items()}} for i in range(d_sae)]

    return eval_output(
        EVAL_TYPE_CORE,
        asdict(config),
        metrics,
        details,
        sae,
        sae_id,
        release_id,
        unstructured=unstructured,
    )
