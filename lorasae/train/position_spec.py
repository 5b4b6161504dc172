"""`train_sae.py --positions`' values: the spec a user writes (`all`, `last`, an index) and the position it
means (torch-free: the options' checks and the trainer's selection, `positions.py`, both read it)."""

from __future__ import annotations

Positions = int | None
"""None: every position of each chunk; an int: that one position (negative from the end)."""


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
