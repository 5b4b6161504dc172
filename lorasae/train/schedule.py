"""Schedules of SPEC §3.1 and the seed's options: the learning rate (linear warm-up, then linear decay
to 0 at the end of training, the paper's; or cosine decay to 0; or constant), and the L1 coefficient's
linear warm-up (ReLU SAEs)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lorasae.train.options import LR_SCHEDULERS


class WarmupLinearDecay:
    """lr factor for step s (0-based, the step about to be taken): (s+1)/warmup during the warm-up, so the
    first step already moves; then (total - s)/(total - warmup), reaching 1/(total - warmup) on the last
    step and 0 after it. `kind="cosine"` replaces the decay by ½(1 + cos(π (s − warmup)/(total − warmup)))
    (1 at the end of the warm-up, 0 after the last step); `kind="constant"` keeps 1 after the warm-up."""

    def __init__(self, warmup_steps: int, total_steps: int, kind: str = "linear_decay"):
        if total_steps < 1:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}")
        if kind not in LR_SCHEDULERS:
            raise ValueError(f"Unknown lr scheduler {kind!r}: use one of {', '.join(LR_SCHEDULERS)}.")
        self.warmup_steps = max(1, min(warmup_steps, total_steps))
        self.total_steps = total_steps
        self.kind = kind

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        remaining = self.total_steps - self.warmup_steps
        if remaining <= 0:
            return 0.0
        progress = min(1.0, (step - self.warmup_steps) / remaining)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, (self.total_steps - step) / remaining)


def make_scheduler(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, kind: str = "linear_decay"
) -> LambdaLR:
    """A `LambdaLR` following `WarmupLinearDecay`; call `.step()` after each optimiser step."""
    return LambdaLR(optimizer, WarmupLinearDecay(warmup_steps, total_steps, kind))


def sparsity_coef(step: int, coef: float, warmup_steps: int) -> float:
    """The L1 coefficient at step s (0-based): coef · (s+1)/warmup during the warm-up (like the lr's,
    so the first step already has a penalty), coef after it and with no warm-up."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return coef
    return coef * (step + 1) / warmup_steps
