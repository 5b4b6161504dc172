"""Downstream CE of the error components (Engels et al. Fig. 9; SPEC §7): the model's next-token CE
with layer L's output replaced by x̂, by x̂ + linear error (x̂ + x·W* + b) and by x̂ + nonlinear error
(= x − x·W* − b), through `hooks.splice`.

Protocol (the original's `downstream_ce.py`, named `clean_prefix_200`): the first 200 positions of each
context keep the model's own activation in every variant and only the predictions made at positions
≥ 200 are scored, so every spliced position has 200 clean tokens of context. It needs contexts of at
least `MIN_CTX_FOR_PREFIX` (256) positions; shorter contexts (the built-in model's 128) run the named
variant `all_positions` (every position spliced, every prediction scored). `component_ce` reports which.

The component is computed from each token's own activation during the forward. Positions holding
special tokens (left out of the SAEInfo, so W* was never fitted there) get the plain SAE output in every
spliced variant, or the original activation for SAEs that skip special tokens (Gemma Scope), as
`sae.splice_fn` does; so the variants differ only where the decomposition was measured.

% of the SAE's CE gap closed by a component = (CE(x̂) − CE(x̂ + component)) / (CE(x̂) − CE(x)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.darkmatter.linear import LinearMap
from lorasae.model.hooks import splice

VARIANTS = ("sae", "sae+linear", "sae+nonlinear")
CLEAN_PREFIX = 200
"""Positions the original keeps clean (its `result[:, :200] = x`, `loss[:, 200:]`)."""
MIN_CTX_FOR_PREFIX = 256
"""Shortest context that runs the original's protocol (56 scored positions after the clean 200)."""
PROTOCOLS = {"clean_prefix_200": CLEAN_PREFIX, "all_positions": 0}
"""Protocol name -> clean positions at the start of each context."""


def downstream_protocol(ctx_len: int) -> str:
    """`clean_prefix_200` (the original's) for contexts of ≥ 256 positions, else `all_positions`."""
    return "clean_prefix_200" if ctx_len >= MIN_CTX_FOR_PREFIX else "all_positions"


def _component_fn(
    sae, lin: LinearMap, variant: str, keep_original: Tensor, special: Tensor, prefix: int
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
        if prefix:
            out = torch.cat([x[:, :prefix], out[:, prefix:]], dim=1)
        return out.to(device=h.device, dtype=h.dtype)

    return fn


@torch.no_grad()
def scored_ce(
    model: nn.Module,
    chunks: Tensor,
    batch_size: int,
    splice_fns: Callable[[Tensor], dict] | None = None,
    first: int = 0,
) -> float:
    """Mean next-token CE (nats) of the predictions made at positions `first` … T−2 of `chunks` [N, T],
    with `splice_fns(input_ids) -> {layer: fn}` spliced in."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        ids = chunks[start : start + batch_size].to(device)
        with splice(model, splice_fns(ids) if splice_fns else {}):
            logits = model(input_ids=ids, use_cache=False).logits
        for row in range(len(ids)):  # one row at a time: a 256k vocabulary's float32 logits are large
            total += F.cross_entropy(
                logits[row, first:-1].float(), ids[row, first + 1 :], reduction="sum"
            ).item()
            count += ids.shape[1] - 1 - first
    return total / count


def component_ce(
    model: nn.Module,
    sae,
    lin: LinearMap,
    chunks: Tensor,
    layer: int,
    special_ids: Sequence[int] = (),
    batch_size: int = 8,
    protocol: str | None = None,
) -> dict[str, Any]:
    """CE (nats/token) of the original model and of each variant in `VARIANTS`, the % of the SAE's CE gap
    that adding back each error component closes, and `protocol` (default: `downstream_protocol` of the
    chunks' length; `clean_prefix_200` on shorter contexts raises)."""
    protocol = protocol or downstream_protocol(chunks.shape[1])
    if protocol not in PROTOCOLS:
        raise ValueError(f"downstream protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    prefix = PROTOCOLS[protocol]
    if prefix and chunks.shape[1] < MIN_CTX_FOR_PREFIX:
        raise ValueError(
            f"downstream protocol {protocol} needs contexts of ≥ {MIN_CTX_FOR_PREFIX} positions, these have "
            f"{chunks.shape[1]}: use all_positions"
        )
    special_t = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    skip = bool(getattr(sae, "skip_special_tokens", False))

    def factory(variant: str):
        def build(ids: Tensor):
            special = torch.isin(ids.cpu(), special_t)
            return {layer: _component_fn(sae, lin, variant, special & skip, special, prefix)}

        return build

    ce: dict[str, Any] = {"original": scored_ce(model, chunks, batch_size, None, prefix)}
    for variant in VARIANTS:
        ce[variant] = scored_ce(model, chunks, batch_size, factory(variant), prefix)
    gap = ce["sae"] - ce["original"]
    for variant in VARIANTS[1:]:
        ce[f"{variant} % gap closed"] = 100 * (ce["sae"] - ce[variant]) / gap if gap > 0 else float("nan")
    ce["protocol"] = protocol
    return ce
