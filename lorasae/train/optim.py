"""Optimiser choice (SPEC §3.1): Adam; 8-bit Adam from bitsandbytes on CUDA when it is installed."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterable

import torch
from torch.optim import Optimizer


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def resolve_optimizer_kind(kind: str, device: torch.device) -> str:
    """`auto` → `adam8bit` on CUDA with bitsandbytes installed, else `adam`. An explicit `adam8bit`
    where it cannot run falls back to `adam` with a warning."""
    if kind not in ("auto", "adam", "adam8bit"):
        raise ValueError(f"Unknown optimizer {kind!r}: use auto, adam or adam8bit.")
    can_8bit = device.type == "cuda" and bitsandbytes_available()
    if kind == "auto":
        return "adam8bit" if can_8bit else "adam"
    if kind == "adam8bit" and not can_8bit:
        warnings.warn(
            "8-bit Adam needs CUDA and bitsandbytes (pip install bitsandbytes); using torch Adam.",
            stacklevel=2,
        )
        return "adam"
    return kind


def make_optimizer(
    params: Iterable[torch.nn.Parameter], lr: float, device: torch.device, kind: str = "auto"
) -> tuple[Optimizer, str]:
    """(optimizer, the kind actually used). Adam with torch's default betas (0.9, 0.999) and eps; torch's
    fused implementation where every parameter allows it."""
    kind = resolve_optimizer_kind(kind, device)
    params = list(params)
    if kind == "adam8bit":
        import bitsandbytes as bnb

        return bnb.optim.Adam8bit(params, lr=lr), kind
    # the fused kernel (one pass per tensor instead of ~10) is 4x faster on the CPU; same update rule
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_DTYPES for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None), kind


_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
