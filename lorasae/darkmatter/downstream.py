"""Downstream CE of the error components (Engels et al. Fig. 9; SPEC §7): the model's next-token CE
with layer L's output replaced by x̂, by x̂ + linear error (x̂ + x·W* + b) and by x̂ + nonlinear error
(= x − x·W* − b), through `hooks.splice` and `eval_ce.mean_ce`.

The component is computed from each token's own activation during the forward. Positions holding
special tokens (left out of the SAEInfo, so W* was never fitted there) get the plain SAE output in every
spliced variant, or the original activation for SAEs that skip special tokens (Gemma Scope), as
`sae.splice_fn` does; so the variants differ only where the decomposition was measured.

% of the SAE's CE gap closed by a component = (CE(x̂) − CE(x̂ + component)) / (CE(x̂) − CE(x)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lorasae.darkmatter.linear import LinearMap
from lorasae.eval_ce import mean_ce

VARIANTS = ("sae", "sae+linear", "sae+nonlinear")


def _component_fn(
    sae, lin: LinearMap, variant: str, keep_original: Tensor, special: Tensor
) -> Callable[[Tensor], Tensor]:
    w = sae.W_dec
    lin_dev = lin.to(w.device)

    def fn(h: Tensor) -> Tensor:
        x = h.to(device=w.device, dtype=torch.float32)
        x_hat = sae.reconstruct(x.to(w.dtype)).float()
        linear = x @ lin_dev.W + lin_dev.b
        out = {"sae": x_hat, "sae+linear": x_hat + linear, "sae+nonlinear": x - linear}[variant]
        out = torch.where(
            special.to(w.device)[..., None], torch.where(keep_original.to(w.device)[..., None], x, x_hat), out
        )
        return out.to(device=h.device, dtype=h.dtype)

    return fn


def component_ce(
    model: nn.Module,
    sae,
    lin: LinearMap,
    chunks: Tensor,
    layer: int,
    special_ids: Sequence[int] = (),
    batch_size: int = 8,
) -> dict[str, float]:
    """CE (nats/token) of the original model and of each variant in `VARIANTS`, and the % of the SAE's
    CE gap that adding back each error component closes."""
    special_t = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    skip = bool(getattr(sae, "skip_special_tokens", False))

    def factory(variant: str):
        def build(ids: Tensor):
            special = torch.isin(ids.cpu(), special_t)
            return {layer: _component_fn(sae, lin, variant, special & skip, special)}

        return build

    ce = {"original": mean_ce(model, chunks, batch_size)}
    for variant in VARIANTS:
        ce[variant] = mean_ce(model, chunks, batch_size, factory(variant))
    gap = ce["sae"] - ce["original"]
    for variant in VARIANTS[1:]:
        ce[f"{variant} % gap closed"] = 100 * (ce["sae"] - ce[variant]) / gap if gap > 0 else float("nan")
    return ce
