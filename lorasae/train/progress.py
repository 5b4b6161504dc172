"""Where a training run stands (`Progress`): the step, the curve so far, the training clock (evaluation
and checkpoint writing excluded), the dead-latent counters and the base CE. The loop advances it; the
parts (objective, rows, curve, persistence) read it, and persistence saves and restores it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class Progress:
    tokens_since_fired: torch.Tensor
    """[d_sae] training tokens since each latent last fired."""
    step: int = 0
    val_loss: list[float] = field(default_factory=list)
    """The curve's values so far (spliced CE, or the FVU of f(x) for a modified target)."""
    minutes: list[float] = field(default_factory=list)
    """Training minutes at each curve point."""
    train_minutes: float = 0.0
    base_ce: float | None = None
    needs_b_dec_init: bool = True
    updating: bool = False
    """True from the optimiser's update until the step counts: a Ctrl-C then leaves no consistent state."""
    clock: float | None = None

    def pause_clock(self, device: torch.device) -> None:
        """Add the time since `start_clock` to the training minutes (after the device's queued work)."""
        if self.clock is not None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.train_minutes += (time.perf_counter() - self.clock) / 60
            self.clock = None

    def start_clock(self) -> None:
        self.clock = time.perf_counter()

    def dead_fraction(self, dead_after_tokens: int) -> float:
        """Share of latents that did not fire in the last `dead_after_tokens` training tokens."""
        return float((self.tokens_since_fired >= dead_after_tokens).float().mean())

    @torch.no_grad()
    def count_fired(self, fired: torch.Tensor, tokens: int) -> None:
        """`tokens` more tokens seen; the latents in the bool mask `fired` [d_sae] fired among them."""
        self.tokens_since_fired += tokens
        self.tokens_since_fired[fired] = 0
