"""`train_sae.py --positions`: which positions of each chunk the SAE reads, trains on and is spliced at.

`all` (the default, the paper's) keeps every position. A position index keeps that one position of every
chunk: `last` (= -1), or an integer (negative counts from the end). The grokking world needs it because
only its answer position (the `=` token of `a b = c`, index -2) carries the computation; the other
positions' residuals are a different distribution that would take up the SAE's latents.

The selection is applied where the trainer reads activations (the harvest buffer, b_dec's initialisation,
the final statistics, the crosscoder's sources) and to the splice of the validation CE (the SAE replaces
the residual at the kept position only; the other positions keep the model's own).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from lorasae.train.position_spec import Positions, check_positions, parse_positions


def select_positions(hidden: Tensor, positions: Positions) -> Tensor:
    """[B, T, d] → [B, T', d]: every position (None) or the one given (T' = 1)."""
    if positions is None:
        return hidden
    return hidden[:, positions].unsqueeze(1)


def at_positions(fn: Callable[[Tensor], Tensor], positions: Positions) -> Callable[[Tensor], Tensor]:
    """A splice function applying `fn` to the kept position only (every position with None)."""
    if positions is None:
        return fn

    def spliced(h: Tensor) -> Tensor:
        out = h.clone()
        out[:, positions] = fn(h[:, positions].unsqueeze(1)).squeeze(1).to(h.dtype)
        return out

    return spliced


def replace_positions(h: Tensor, rec: Tensor, positions: Positions) -> Tensor:
    """h with the kept positions replaced by `rec` ([B, T', d] or flattened), every position with None."""
    if positions is None:
        return rec.reshape(h.shape).to(h.dtype)
    out = h.clone()
    out[:, positions] = rec.reshape(h.shape[0], h.shape[-1]).to(h.dtype)
    return out


__all__ = [
    "Positions",
    "at_positions",
    "check_positions",
    "parse_positions",
    "replace_positions",
    "select_positions",
]
