"""Harvesting at full batch: the language model's truncated forward runs over many training batches at
once, into an activation buffer, and the SAE steps then take the buffer's activations batch by batch.

The optimisation is the paper's: every SAE step sees exactly the tokens (and the order) it would see with
one forward per step — the buffer only changes how many sequences go through the model per forward. On a
GPU a 1024-token forward leaves the device mostly idle; 32 sequences per forward are ~10-20x the
throughput. On the CPU (small batches are as fast per token) the default is one step per forward.

Only the local (TopK/FVU) objective can use it; the e2e objective needs a spliced forward per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from lorasae.model.forward_cache import Lookup
from lorasae.model.hooks import residual_at
from lorasae.train import distributed as dist_utils
from lorasae.train.distributed import DistInfo
from lorasae.train.modification import plain_rows
from lorasae.train.objectives import StepStats, _sae_losses
from lorasae.train.positions import Positions, select_positions

HARVEST_TOKENS_CUDA = 32_768  # tokens per harvesting forward on a GPU (32 sequences of 1024)


def default_harvest_steps(device: torch.device, tokens_per_step: int) -> int:
    """Training steps harvested per forward: 32k tokens' worth on CUDA, one step on the CPU."""
    if device.type != "cuda":
        return 1
    return max(1, HARVEST_TOKENS_CUDA // max(1, tokens_per_step))


class ActivationBuffer:
    """Iterator over this rank's activations [local batch x T, d] (float32) of the global batches
    `batches`, `steps_per_forward` batches per truncated forward through layer `layer`; at most `total`
    batches are read (none is harvested beyond the run's last step). `positions` (`--positions`) keeps one
    position of each chunk (None: all); `rows(hidden, ids)` then turns one step's residual [B, T, d] into
    the rows the SAE reconstructs (default: the residual itself; a `--hidden_modification` gives f(x),
    `lorasae/train/modification.py`). `cached`: a `ForwardCache` lookup of the model; a batch another run
    harvested at this layer is then taken from it (the same numbers, one truncated forward fewer)."""

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        batches: Iterator[Tensor],
        steps_per_forward: int,
        info: DistInfo,
        device: torch.device,
        total: int | None = None,
        rows: Callable[[Tensor, Tensor], Tensor] = plain_rows,
        positions: Positions = None,
        cached: Lookup | None = None,
    ):
        if steps_per_forward < 1:
            raise ValueError(f"steps_per_forward must be >= 1, got {steps_per_forward}")
        self.model, self.layer, self.batches, self.rows = model, layer, batches, rows
        self.steps_per_forward, self.info, self.device = steps_per_forward, info, device
        self.ready: list[Tensor] = []
        self.forwards = 0
        self.remaining = total
        self.positions = positions
        self.cached = cached

    def __iter__(self) -> ActivationBuffer:
        return self

    def _refill(self) -> None:
        shards = []
        count = (
            self.steps_per_forward if self.remaining is None else min(self.steps_per_forward, self.remaining)
        )
        for _ in range(count):
            try:
                shards.append(dist_utils.shard(next(self.batches), self.info))
            except StopIteration:
                break
        if not shards:
            raise StopIteration
        if self.remaining is not None:
            self.remaining -= len(shards)
        sizes = [len(s) for s in shards]
        ids = torch.cat(shards).to(self.device)
        with torch.no_grad():
            hidden = select_positions(self._residual(ids), self.positions)
        ids = select_positions(ids, self.positions)
        self.forwards += 1
        # one [B_i x T, d] float32 block per step, in the order the steps take them
        self.ready = [self.rows(h, i) for h, i in zip(hidden.split(sizes), ids.split(sizes))][::-1]

    def _residual(self, ids: Tensor) -> Tensor:
        if self.cached is None:
            return residual_at(self.model, ids, self.layer)
        return self.cached(f"residual:{self.layer}", ids, lambda: residual_at(self.model, ids, self.layer))

    def __next__(self) -> Tensor:
        if not self.ready:
            self._refill()
        return self.ready.pop()


def activation_step(
    sae: nn.Module,
    x: Tensor,
    auxk_alpha: float,
    dead_mask: Tensor | None,
    sparsity_coef: float = 0.0,
    recon_loss: str = "fvu",
) -> tuple[Tensor, object, StepStats]:
    """The local objective (`objectives.reconstruction_step`) on harvested activations `x` [N, d]."""
    out = sae(x, dead_mask)
    loss, stats = _sae_losses(x, out, auxk_alpha, sparsity_coef, recon_loss)
    return loss, out, stats
