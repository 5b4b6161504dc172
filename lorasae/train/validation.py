"""Validation during and after SAE training, over the validation chunks shared by every rank:
the spliced CE of the curve (or the original model's CE), and the SAE's FVU, L0 and never-active latents."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lorasae.model.ce import ce_sum_and_count, masked_lm_inputs
from lorasae.model.hooks import residual_at
from lorasae.model.prefix import PrefixCache
from lorasae.sae import TopKSAE
from lorasae.sae.splice import splice_fn
from lorasae.train import distributed as dist_utils
from lorasae.train.distributed import DistInfo
from lorasae.train.modification import plain_rows
from lorasae.train.options import MIN_CURVE_VAL_TOKENS, curve_val_tokens  # noqa: F401  (their home)
from lorasae.train.positions import Positions, at_positions, select_positions


def curve_chunks(val: torch.Tensor, tokens: int) -> torch.Tensor:
    """The first validation chunks holding at least `tokens` tokens (all of them if fewer)."""
    ctx_len = val.shape[1] if val.ndim == 2 and val.shape[1] else 1
    return val[: max(1, -(-tokens // ctx_len))]


def rank_share(chunks: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous share of the validation chunks (all of them in one process)."""
    return torch.tensor_split(chunks, info.world_size)[info.rank]


def spliced_ce(
    model: nn.Module,
    sae: TopKSAE | None,
    layer: int,
    chunks: torch.Tensor,
    batch_size: int,
    special_ids: Sequence[int] = (),
    info: DistInfo | None = None,
    prefix: PrefixCache | None = None,
    positions: Positions = None,
) -> float:
    """Mean next-token CE on `chunks` with `sae` spliced after `layer` (None: the original model; with
    `positions`, at that position only, and only the prediction made there is scored), summed over the
    ranks' shares. With `prefix` (this rank's share of `chunks` cached after `layer`), only the layers
    after `layer` run."""
    info = info or DistInfo()
    mine = rank_share(chunks, info)
    if positions is not None:  # special positions: the kept one is the caller's choice
        fns = (lambda ids: {layer: at_positions(splice_fn(sae), positions)}) if sae is not None else None
    else:
        fns = (lambda ids: {layer: splice_fn(sae, ids, special_ids)}) if sae is not None else None
    if prefix is not None:
        total, count = prefix.ce_sum_and_count(batch_size, fns, positions)
    else:
        total, count = ce_sum_and_count(model, mine, batch_size, fns, positions) if len(mine) else (0.0, 0)
    device = next(model.parameters()).device
    sums = dist_utils.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=device))
    return float(sums[0] / sums[1])


@dataclass(frozen=True)
class ReconstructionStats:
    fvu: float  # ‖x̂ − x‖² / Σ‖x − mean‖² over all validation tokens
    l0: float  # mean number of non-zero latents per token (≤ k; == k means every token has k)
    never_active: float  # fraction of latents that never fired on the validation tokens


@torch.no_grad()
def reconstruction_stats(
    model: nn.Module,
    sae: TopKSAE,
    layer: int,
    chunks: torch.Tensor,
    batch_size: int,
    info: DistInfo | None = None,
    rows: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = plain_rows,
    positions: Positions = None,
) -> ReconstructionStats:
    """FVU, L0 and never-active latents on `chunks`; the SAE reconstructs `rows(residual, ids)` (the
    residual itself, or a --hidden_modification's f(x), as in training)."""
    info = info or DistInfo()
    device = sae.device
    d_in = sae.cfg.d_in
    sums = torch.zeros(3 + d_in + 1, dtype=torch.float64, device=device)  # err, active, tokens, Σx, Σ‖x‖²
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.int32, device=device)
    for ids in rank_share(chunks, info).split(batch_size):
        ids = masked_lm_inputs(model, ids.to(device))  # a masked LM's SAE trains on these too
        x = rows(
            select_positions(residual_at(model, ids, layer), positions), select_positions(ids, positions)
        )
        acts, idx = sae.encode_topk(x)
        x_hat = sae.decode_topk(acts, idx)
        xd = x.double()
        sums[0] += (x_hat.double() - xd).pow(2).sum()
        sums[1] += (acts > 0).sum()
        sums[2] += len(x)
        sums[3:-1] += xd.sum(0)
        sums[-1] += xd.pow(2).sum()
        fired.index_fill_(0, idx[acts > 0], 1)
    dist_utils.all_reduce_sum(sums)
    dist_utils.all_reduce_max(fired)
    err, active, tokens = sums[:3].tolist()
    mean = sums[3:-1] / tokens
    variance = float(sums[-1] - tokens * mean.pow(2).sum())
    return ReconstructionStats(err / variance, active / tokens, 1.0 - float(fired.float().mean()))
