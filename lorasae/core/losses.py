"""The training losses, one small named function each (SPEC §3.1, §3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def total_variance(x: torch.Tensor) -> torch.Tensor:
    """Σ‖x − mean(x)‖² over the tokens of `x` ([..., d]; the mean is taken over every token)."""
    flat = x.reshape(-1, x.shape[-1]).float()
    return (flat - flat.mean(0)).pow(2).sum()


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """‖x̂ − x‖² summed over every token and dimension."""
    return (x_hat.float() - x.float()).pow(2).sum()


def fvu(x: torch.Tensor, x_hat: torch.Tensor, denominator: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of variance unexplained: ‖x̂ − x‖² / Σ‖x − mean(x)‖² over the batch. `denominator`
    overrides the total variance (data-parallel training passes the variance of the global batch)."""
    den = total_variance(x) if denominator is None else denominator
    return squared_error(x, x_hat) / den


def kl_next_token(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) between the next-token distributions of two [B, T, V] logit tensors, summed over the
    positions (all T of them) and the vocabulary and divided by the batch size B: PyTorch's
    `kl_div(..., reduction="batchmean")` on [B, T, V], the paper's loss. p is the target (original
    model, no gradient needed), q the model being trained. Computed in float32."""
    if p_logits.shape != q_logits.shape:
        raise ValueError(f"logit shapes differ: {tuple(p_logits.shape)} vs {tuple(q_logits.shape)}")
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True) / p_logits.shape[0]
