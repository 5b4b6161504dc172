"""Hidden states after each decoder layer, clean and with the SAE spliced (the original repository's
`interp_analysis/activation_distances.py`, on our hooks).

One forward pass captures the output of every requested decoder layer through `lorasae.model.hooks.splice`
(the capture is an identity splice, so the forward is exactly the one the CE evaluation runs; at the
SAE's layer the capture sees the reconstruction, as the original's hook order did) and returns the
logits too, so the same pass gives both the distances and the per-token loss.

Distances compare a variant's states with the clean *base* model's states at the same layer (the
original's reference for both the base and the LoRA-adapted model): per sequence, the mean over positions
of ‖h_clean − h_spliced‖₂ and of cos(h_clean, h_spliced).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorasae.model.hooks import SpliceFn, splice


@torch.no_grad()
def forward_states(
    model: nn.Module,
    input_ids: Tensor,
    layers: Sequence[int],
    splice_fns: Mapping[int, SpliceFn] | None = None,
) -> tuple[dict[int, Tensor], Tensor]:
    """({layer: output hidden state [B, T, d]} for each of `layers`, logits [B, T, V]) of one forward
    pass with `splice_fns` spliced in. A layer both spliced and captured yields the spliced state."""
    splice_fns = dict(splice_fns or {})
    captured: dict[int, Tensor] = {}

    def capture(layer: int, inner: SpliceFn | None) -> SpliceFn:
        def fn(h: Tensor) -> Tensor:
            out = inner(h) if inner is not None else h
            captured[layer] = out.detach()
            return out

        return fn

    wanted = set(layers)
    fns = {
        layer: capture(layer, splice_fns.get(layer)) if layer in wanted else splice_fns[layer]
        for layer in sorted(wanted | set(splice_fns))
    }
    with splice(model, fns):
        logits = model(input_ids=input_ids, use_cache=False).logits
    return {layer: captured[layer] for layer in layers}, logits


def distance_and_cosine(clean: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """Per sequence ([B] each, float32 on the CPU): the mean over positions of the L2 distance and of the
    cosine similarity between `clean` and `other` [B, T, d]."""
    if clean.shape != other.shape:
        raise ValueError(f"hidden states differ in shape: {tuple(clean.shape)} vs {tuple(other.shape)}")
    a, b = clean.float(), other.float()
    l2 = (a - b).norm(dim=-1).mean(dim=-1)
    cos = F.cosine_similarity(a, b, dim=-1).mean(dim=-1)
    return l2.cpu(), cos.cpu()


def layer_metrics(clean: Mapping[int, Tensor], other: Mapping[int, Tensor]) -> tuple[Tensor, Tensor]:
    """Per sequence and layer ([B, n_layers] each, layers in `clean`'s order): `distance_and_cosine` of
    the two runs' states at each layer."""
    pairs = [distance_and_cosine(clean[layer], other[layer]) for layer in clean]
    return torch.stack([p[0] for p in pairs], dim=1), torch.stack([p[1] for p in pairs], dim=1)


__all__ = ["distance_and_cosine", "forward_states", "layer_metrics"]
