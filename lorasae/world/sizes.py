"""The built-in model's sizes: `tiny` (the default) and `tiny-s`, its half-width sibling trained on the same
corpus, tokenizer and token budget by the same builder (`tiny_model.build_tiny_model`). Each size is one
rule that turns a base `TinyWorldConfig` into that size's config, so a test world (a small base config)
gets a small sibling the same way the default world gets its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .tiny_model import TinyWorldConfig


def _same(base: TinyWorldConfig) -> TinyWorldConfig:
    return base


def _half_width(base: TinyWorldConfig) -> TinyWorldConfig:
    """Half the residual width and MLP width, the same depth, head width, corpus, vocabulary and tokens."""
    heads = max(1, base.n_heads // 2)
    return dataclasses.replace(base, d_model=base.d_model // 2, d_ff=base.d_ff // 2, n_heads=heads)


BUILTIN_SIZES: dict[str, Callable[[TinyWorldConfig], TinyWorldConfig]] = {
    "tiny": _same,
    "tiny-s": _half_width,
}
"""Registry key of each built-in size → its config made from the base (`TinyWorldConfig()` by default)."""


def size_config(size: str, base: TinyWorldConfig | None = None) -> TinyWorldConfig:
    """The config of built-in size `size` (`tiny`, `tiny-s`) made from `base` (default: the built-in one)."""
    if size not in BUILTIN_SIZES:
        raise ValueError(f"Unknown built-in model size {size!r}: use one of {sorted(BUILTIN_SIZES)}.")
    return BUILTIN_SIZES[size](base or TinyWorldConfig())


def is_builtin_size(name: str) -> bool:
    """Whether `name` is the registry key of a built-in model size."""
    return str(name).strip() in BUILTIN_SIZES
