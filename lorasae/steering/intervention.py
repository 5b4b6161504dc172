"""The steering edit (SPEC §4.2), applied to the residual stream after decoder layer L on every position.

- multiplicative (the paper's): ``h <- h + alpha * (h . d) d``: the component of h along the latent's unit
  decoder direction d is scaled by ``1 + alpha`` (alpha = -1 removes it);
- additive: ``h <- h + alpha * d`` (alpha in residual-stream units).

No SAE is spliced: only the latent's decoder row is used. The edit is a `lorasae.model.hooks.splice` function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from lorasae.model.hooks import SpliceFn, splice

SteeringMode = Literal["multiplicative", "additive"]
MODES: tuple[str, ...] = ("multiplicative", "additive")


def unit_direction(W_dec: torch.Tensor, latent: int) -> torch.Tensor:
    """The latent's decoder row ``W_dec[latent]`` ([d_sae, d_in] layout) scaled to unit norm, float32."""
    if not 0 <= latent < W_dec.shape[0]:
        raise ValueError(
            f"Latent {latent} is out of range: the SAE has {W_dec.shape[0]} latents (0 … {W_dec.shape[0] - 1})."
        )
    row = W_dec[latent].detach().float()
    norm = row.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError(f"Latent {latent} has a zero or non-finite decoder row; it cannot be steered.")
    return row / norm


def check_mode(mode: str) -> SteeringMode:
    if mode not in MODES:
        raise ValueError(f"Unknown steering mode {mode!r}: use one of {', '.join(MODES)}.")
    return mode  # type: ignore[return-value]


def steering_fn(direction: torch.Tensor, alpha: float, mode: str = "multiplicative") -> SpliceFn:
    """A splice function applying the edit with unit direction ``direction`` [d] to hidden states [..., d].
    The arithmetic runs in float32 and the result is cast back to the hidden state's dtype."""
    mode = check_mode(mode)
    unit = direction.detach().float()
    unit = unit / unit.norm()
    cache: dict[torch.device, torch.Tensor] = {}

    def fn(h: torch.Tensor) -> torch.Tensor:
        d = cache.get(h.device)
        if d is None:
            d = cache[h.device] = unit.to(h.device)
        x = h.float()
        if mode == "multiplicative":
            out = x + alpha * (x @ d).unsqueeze(-1) * d
        else:
            out = x + alpha * d
        return out.to(h.dtype)

    return fn


@contextmanager
def steer(
    model: nn.Module, layer: int, direction: torch.Tensor, alpha: float, mode: str = "multiplicative"
) -> Iterator[None]:
    """Within the block, the output of decoder layer `layer` is steered along `direction`."""
    with splice(model, {layer: steering_fn(direction, alpha, mode)}):
        yield
