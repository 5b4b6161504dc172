"""The logits a latent pushes up and down: its decoder direction read directly by the unembedding.

As in sae_vis / Neuronpedia (TransformerLens folds the final norm's scale into W_U), the direct logit
effect of latent i is W_U (γ ⊙ d_i), with d_i the decoder row and γ the final norm's scale (Gemma's
RMSNorm scales by 1 + w: γ is read by applying the norm to a vector of ones). The unembedding module is
called, so an adapter on the LM head (rarely trained) counts; the norm is never adapted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lorasae.model.load import find_module

_NORM_PATHS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.final_layernorm")


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm before the LM head (None when the architecture is not one of the known layouts)."""
    return find_module(model, _NORM_PATHS)


def norm_scale(model: nn.Module, d_model: int) -> torch.Tensor:
    """γ of the final norm, [d_model] (ones when there is no known final norm)."""
    norm = final_norm(model)
    device = next(model.parameters()).device
    if norm is None:
        return torch.ones(d_model, device=device)
    if isinstance(norm, nn.LayerNorm):
        return norm.weight.detach().float() if norm.weight is not None else torch.ones(d_model, device=device)
    weight = getattr(norm, "weight", None)
    dtype = weight.dtype if isinstance(weight, torch.Tensor) else torch.float32
    with torch.no_grad():  # RMSNorm of a vector of ones is its scale (rms = 1, up to eps)
        return norm(torch.ones(1, d_model, device=device, dtype=dtype))[0].float()


@dataclass(frozen=True)
class LatentLogits:
    """The top and bottom `k` tokens of a latent's direct logit effect."""

    top: list[tuple[int, float]]
    bottom: list[tuple[int, float]]


def direct_logits(
    model: nn.Module, W_dec: torch.Tensor, latents: Sequence[int], k: int = 10
) -> dict[int, LatentLogits]:
    """`{latent: LatentLogits}` of W_U (γ ⊙ W_dec[latent]) for each latent."""
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    rows = W_dec[list(latents)].detach().float().to(device)
    scaled = rows * norm_scale(model, rows.shape[-1])
    with torch.no_grad():
        logits = head(scaled.to(next(head.parameters()).dtype)).float().cpu()
    out = {}
    for row, latent in enumerate(latents):
        up = logits[row].topk(k)
        down = (-logits[row]).topk(k)
        out[latent] = LatentLogits(
            top=[(int(i), float(v)) for v, i in zip(up.values, up.indices)],
            bottom=[(int(i), -float(v)) for v, i in zip(down.values, down.indices)],
        )
    return out


__all__ = ["LatentLogits", "direct_logits", "final_norm", "norm_scale"]
