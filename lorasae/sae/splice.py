"""``splice_fn``: the function given to ``lorasae.model.hooks.splice`` to replace a layer's output by an
SAE's reconstruction — the residual after the layer, or, for a transcoder (``splice_site == "mlp"``),
the layer's MLP output by the transcoder's prediction from the MLP input."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from lorasae.model.hooks import MLP
from lorasae.sae.capabilities import sae_splice_site


def splice_fn(
    sae: object,
    input_ids: Tensor | None = None,
    special_ids: Iterable[int] = (),
    skip_special: bool | None = None,
) -> Callable[[Tensor], Tensor]:
    """``h -> reconstruction of h`` (no error term), computed in the SAE's dtype and device and returned
    in h's. If ``skip_special`` (default: the SAE's own ``skip_special_tokens``, True for Gemma Scope),
    positions whose id in ``input_ids`` [B, T] is in ``special_ids`` keep the original h; SAEBench's core
    eval sets it from its ``exclude_special_tokens_from_reconstruction`` option for any SAE. Gradients flow
    to h (and to the SAE if it is trainable). For a transcoder the function is marked
    ``splice_site = "mlp"``: ``(mlp_input, mlp_output) -> prediction`` (kept positions keep mlp_output)."""
    w = sae.W_dec  # type: ignore[attr-defined]
    reconstruct = getattr(sae, "reconstruct", None) or (lambda x: sae.decode(sae.encode(x)))  # type: ignore[attr-defined]
    special = sorted({int(i) for i in special_ids})
    if skip_special is None:
        skip_special = bool(getattr(sae, "skip_special_tokens", False))
    keep = None
    if skip_special and input_ids is not None and special:
        keep = torch.isin(input_ids, torch.tensor(special, device=input_ids.device))

    site = sae_splice_site(sae)

    def replace(x: Tensor, original: Tensor) -> Tensor:
        out = reconstruct(x.to(device=w.device, dtype=w.dtype)).to(
            device=original.device, dtype=original.dtype
        )
        if keep is None:
            return out
        if keep.shape != original.shape[:-1]:
            raise ValueError(
                f"splice_fn: input_ids have shape {tuple(keep.shape)} but the "
                f"{'MLP output' if site == MLP else 'hidden state'} is {tuple(original.shape)}; build the "
                "splice function from the same batch's input_ids."
            )
        return torch.where(keep.to(original.device).unsqueeze(-1), original, out)

    if site == MLP:  # called by `hooks.splice` as (mlp_input, mlp_output)
        replace.splice_site = MLP  # type: ignore[attr-defined]
        return replace
    return lambda h: replace(h, h)
