"""Splicing a crosscoder into the model it reads: every source layer's output is replaced by the
crosscoder's reconstruction of that source.

A crosscoder's latents depend on all its source layers at once, so a single causal pass cannot compute
them (at layer a, layer b > a has not run yet). The latents are therefore read from the unspliced
forward of the same batch (one truncated pass up to the last source layer, `source_activations`), and
the spliced pass then replaces each source layer's output by its reconstruction `x̂_s`. Gradients flow
through both passes (with LoRA adapters before a source layer, the latents follow the adapted model);
nothing is cached across batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from lorasae.model.hooks import residual_at, splice
from lorasae.sae.crosscoder import Crosscoder


def source_activations(model: nn.Module, input_ids: Tensor, layers: Sequence[int]) -> list[Tensor]:
    """The outputs of decoder `layers` [B, T, d] from one forward that stops after the last of them."""
    seen: dict[int, Tensor] = {}

    def capture(layer: int) -> Callable[[Tensor], Tensor]:
        def fn(h: Tensor) -> Tensor:
            seen[layer] = h
            return h

        return fn

    with splice(model, {layer: capture(layer) for layer in layers}):
        residual_at(model, input_ids, max(layers))
    return [seen[layer] for layer in layers]


def coder_layers(coder: Crosscoder) -> list[int]:
    """The decoder layer of each source, with an error for a crosscoder that does not say."""
    layers = coder.cfg.hook_layers
    if any(x is None for x in layers):
        raise ValueError(f"crosscoder sources {coder.cfg.sources} do not all name a layer ({layers})")
    return [int(x) for x in layers]  # type: ignore[arg-type]


def crosscoder_splice_fns(
    coder: Crosscoder, model: nn.Module, input_ids: Tensor, only: Sequence[int] | None = None
) -> dict[int, Callable[[Tensor], Tensor]]:
    """`{layer: h -> x̂_layer}` for `hooks.splice`: the reconstruction of each source (or of the layers in
    `only`) from the latents of this batch's unspliced activations."""
    layers = coder_layers(coder)
    xs = source_activations(model, input_ids, layers)
    x_hat = coder.reconstruct([x.reshape(-1, x.shape[-1]) for x in xs])
    fns = {}
    for layer, rec in zip(layers, x_hat):
        if only is None or layer in only:
            fns[layer] = lambda h, rec=rec: rec.reshape(h.shape).to(h.dtype)
    return fns


__all__ = ["coder_layers", "crosscoder_splice_fns", "source_activations"]
