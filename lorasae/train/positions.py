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
from typing import Protocol

from torch import Tensor

Positions = int | None  # None: every position


def parse_positions(spec: str | int | None) -> Positions:
    """`all` → None, `last` → -1, an integer (as text or int) → itself."""
    if spec is None or spec == "all":
        return None
    if spec == "last":
        return -1
    try:
        return int(spec)
    except ValueError:
        raise ValueError(
            f"--positions must be all, last or a position index (e.g. -2), got {spec!r}"
        ) from None


def check_positions(spec: str, ctx_len: int) -> str | None:
    """A problem with `--positions` for chunks of `ctx_len` tokens, or None."""
    try:
        pos = parse_positions(spec)
    except ValueError as err:
        return str(err)
    if pos is not None and not -ctx_len <= pos < ctx_len:
        return f"--positions {spec} is outside chunks of --ctx_len {ctx_len} tokens"
    return None


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


class SourceSettings(Protocol):
    """The run settings `source_problems` reads (`TrainSaeConfig` has them; named here so that the config,
    which calls it in its own validation, and this module import in one direction only)."""

    model: str | None
    models: list[str]
    layers: list[int]
    architecture: str
    e2e: bool
    positions: str
    ctx_len: int | None


def source_problems(cfg: SourceSettings) -> list[str]:
    """What is wrong with --models / --positions."""
    problems = []
    if cfg.models:
        if cfg.architecture != "crosscoder":
            problems.append("--models is for --architecture crosscoder (one source per model)")
        if len(cfg.models) < 2:
            problems.append(f"--models needs two models or more, got {cfg.models}")
        if cfg.layers:
            problems.append("--models reads --layer of every model; leave out --layers")
        if cfg.model and cfg.model != cfg.models[0]:
            problems.append(f"--model {cfg.model} is not the first of --models {cfg.models}")
    if cfg.positions != "all" and cfg.e2e:
        problems.append("--positions is for the reconstruction objective, not --e2e")
    if cfg.ctx_len is not None and (bad := check_positions(cfg.positions, cfg.ctx_len)):
        problems.append(bad)
    return problems


__all__ = [
    "Positions",
    "at_positions",
    "check_positions",
    "parse_positions",
    "replace_positions",
    "select_positions",
    "source_problems",
]
