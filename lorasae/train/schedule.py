"""Learning-rate schedule of SPEC §3.1: linear warm-up, then linear decay to 0 at the end of training."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupLinearDecay:
    """lr factor for step s (0-based, the step about to be taken): (s+1)/warmup during the warm-up, so the
    first step already moves; then (total - s)/(total - warmup), reaching 1/(total - warmup) on the last
    step and 0 after it."""

    def __init__(self, warmup_steps: int, total_steps: int):
        if total_steps < 1:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}")
        self.warmup_steps = max(1, min(warmup_steps, total_steps))
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        remaining = self.total_steps - self.warmup_steps
        if remaining <= 0:
            return 0.0
        return max(0.0, (self.total_steps - step) / remaining)


def make_scheduler(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """A `LambdaLR` following `WarmupLinearDecay`; call `.step()` after each optimiser step."""
    return LambdaLR(optimizer, WarmupLinearDecay(warmup_steps, total_steps))
