"""The rows a single-layer SAE trains on (`LayerRows`), a part handed to the training loop: the residual
after --layer (or f(x) of a --hidden_modification, `rows_fn`) at --positions, harvested several steps per
language-model forward (`ActivationBuffer`), or, for objectives that run the model themselves (--e2e),
this rank's token ids of each step. Also b_dec's initialisation from the first global batch. (A
crosscoder's rows, one per source, are `crosscoder_parts.SourceRows`.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from lorasae.model.forward_cache import shared_forward_cache
from lorasae.model.hooks import residual_at
from lorasae.sae import geometric_median
from lorasae.train import distributed as dist_utils
from lorasae.train.distributed import DistInfo
from lorasae.train.harvest import ActivationBuffer
from lorasae.train.position_spec import Positions
from lorasae.train.positions import select_positions

RowsFn = Callable[[Tensor, Tensor], Tensor]
"""(residual [B, T, d], token ids [B, T]) -> rows [n, d] float32 the SAE reconstructs."""


class LayerRows:
    def __init__(
        self,
        model: nn.Module,
        layer: int,
        positions: Positions,
        rows_fn: RowsFn,
        info: DistInfo,
        device: torch.device,
        harvest_steps: int | None,
    ):
        """`harvest_steps`: batches per harvesting forward; None streams token ids instead (--e2e). The
        harvest takes a batch another run of this model harvested at this layer from the process's
        `ForwardCache` (`lorasae.model.forward_cache`)."""
        self.model, self.layer, self.positions, self.rows_fn = model, layer, positions, rows_fn
        self.info, self.device, self.harvest_steps = info, device, harvest_steps

    @torch.no_grad()
    def init_b_dec(self, sae: nn.Module, first_local_batch: Tensor) -> None:
        """b_dec = geometric median of the first global batch's rows (gathered over ranks)."""
        ids = first_local_batch.to(self.device)
        hidden = select_positions(residual_at(self.model, ids, self.layer), self.positions)
        rows = dist_utils.all_gather_cat(self.rows_fn(hidden, select_positions(ids, self.positions)))
        sae.b_dec.data.copy_(geometric_median(rows).to(sae.dtype))

    def stream(self, batches: Iterator[Tensor], steps: int) -> Iterator[Tensor]:
        """The inputs of the next `steps` steps from the global batches of token ids `batches`."""
        if self.harvest_steps is None:
            return (dist_utils.shard(b, self.info).to(self.device) for b in batches)
        return ActivationBuffer(
            self.model, self.layer, batches, self.harvest_steps, self.info, self.device, steps,
            rows=self.rows_fn, positions=self.positions, cached=shared_forward_cache().for_model(self.model),
        )  # fmt: skip
