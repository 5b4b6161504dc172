"""Mean next-token cross-entropy over validation chunks, optionally with functions (SAEs) spliced into
the residual stream (a transcoder's into its layer's MLP output: `lorasae.model.hooks.splice`). Shared by `train_sae.py`, `train_lora.py` and the evals, so every CE in the project
is computed the same way: logits at positions 0…T-2 score tokens 1…T-1 of each chunk, summed in float64
over all scored tokens of all chunks and divided by their count (a token-weighted mean).

For a masked LM (ESM2, `models.is_masked_lm`) next-token CE means nothing; the same functions then return
the masked-LM loss instead: a fixed ~15 % of the positions of each chunk (`mlm_mask`, the same every
call, never position 0 or a special token) are replaced by the mask token and scored against the
original tokens (no 80/10/10 random replacement, so the number is deterministic).

That masked input is the one input distribution of a masked LM's SAE: `masked_lm_inputs` applies the same
fixed mask, and train_sae.py trains on it (every training batch, the b_dec init and the validation FVU),
so the SAE is scored on the residuals it was trained on. With ESM2's `token_dropout` (on in the released
configs) the embeddings are rescaled by 0.88 / (observed mask ratio) when `<mask>` tokens are present, so
the residuals of a masked input differ at every position, and the `<mask>` positions themselves would
otherwise never be seen in training (docs/DEVIATIONS.md, train-SAE section)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lorasae.model.hooks import SpliceFn, splice
from lorasae.model.load import is_masked_lm

# either fixed functions per layer, or a factory that builds them from each batch's input ids (needed
# when special positions such as BOS keep the original activation)
_CE_CHUNK_ELEMENTS = 2**26

SpliceFns = Mapping[int, SpliceFn] | Callable[[torch.Tensor], Mapping[int, SpliceFn]]


MLM_FRACTION = 0.15


def mlm_mask(input_ids: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    """Bool [B, T]: the masked positions, a fixed pseudo-random ~15 % of each row (a hash of the row's
    position and token ids, so a chunk gets the same mask in every evaluation)."""
    b, t = input_ids.shape
    pos = torch.arange(t, device=input_ids.device).expand(b, t)
    h = (pos * 2654435761 + input_ids * 40503 + pos * input_ids) % 1000
    mask = h < int(1000 * MLM_FRACTION)
    mask[:, 0] = False
    if special_ids:
        mask &= ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    return mask


def masked_lm_inputs(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The ids `model` is scored on: for a masked LM, `input_ids` with the fixed `mlm_mask` positions
    replaced by the mask token (what the masked-LM loss feeds the model); for any other model,
    `input_ids` itself."""
    if not is_masked_lm(model):
        return input_ids
    mask = mlm_mask(input_ids, _mlm_special_ids(model))
    return input_ids.masked_fill(mask, int(model.config.mask_token_id))


def _mlm_special_ids(model: nn.Module) -> list[int]:
    config = model.config
    return [
        int(i)
        for i in (
            config.pad_token_id,
            getattr(config, "eos_token_id", None),
            getattr(config, "cls_token_id", None),
        )
        if i is not None
    ]


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def per_token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token CE [B, T−1] in float32: logits at position t score token t+1 (the same pairing as
    `ce_sum_and_count`, kept per token for the SAEBench core eval and the per-token loss analysis)."""
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(tokens.shape[0], -1)


@torch.no_grad()
def ce_per_chunk(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int,
    splice_fns: SpliceFns | None = None,
    scored_position: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ next-token CE in nats, number of scored tokens) of each chunk of `chunks` [N, T], two float64 /
    int64 tensors [N] on the CPU: what `ce_sum_and_count` adds up, kept per chunk for the gap's
    measurement noise (`lorasae.core.gap.paired_gap_se`). The model is evaluated in eval mode and put back in
    the mode it was in. `scored_position` p scores only the prediction made at position p (of token
    p + 1; `train_sae.py --positions`, e.g. the grok world's answer at -2); the last position predicts
    nothing in the chunk, so there every prediction is scored as without it."""
    if chunks.ndim != 2 or chunks.shape[1] < 2:
        raise ValueError(f"chunks must be [N, T] with T ≥ 2, got {tuple(chunks.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    device = _model_device(model)
    was_training = model.training
    if was_training:
        model.eval()
    sums, counts = [], []
    masked_lm = is_masked_lm(model)
    first, stop = 0, chunks.shape[1] - 1  # logits at positions first … stop-1 are scored
    if scored_position is not None and scored_position % chunks.shape[1] < stop and not masked_lm:
        first = scored_position % chunks.shape[1]
        stop = first + 1
    try:
        for start in range(0, len(chunks), batch_size):
            ids = chunks[start : start + batch_size].to(device)
            if masked_lm:
                t, c = _mlm_sums_and_counts(model, ids, splice_fns)
                sums.append(t)
                counts.append(c)
                continue
            fns = splice_fns(ids) if callable(splice_fns) else (splice_fns or {})
            with splice(model, fns):
                logits = model(input_ids=ids, use_cache=False).logits
            # a few rows at a time: at most ~256 MiB of float32 log-probabilities in memory
            rows = max(1, _CE_CHUNK_ELEMENTS // (logits.shape[1] * logits.shape[2]))
            for row in range(0, len(ids), rows):
                scored = logits[row : row + rows, first:stop]
                targets = ids[row : row + rows, first + 1 : stop + 1]
                ce = F.cross_entropy(
                    scored.reshape(-1, scored.shape[-1]).float(), targets.reshape(-1), reduction="none"
                )
                sums.append(ce.view(targets.shape).double().sum(1).cpu())
                counts.append(torch.full((targets.shape[0],), targets.shape[1], dtype=torch.long))
            del logits
    finally:
        if was_training:
            model.train()
    if not sums:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(sums), torch.cat(counts)


def ce_sum_and_count(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int,
    splice_fns: SpliceFns | None = None,
    scored_position: int | None = None,
) -> tuple[float, int]:
    """(Σ next-token CE in nats, number of scored tokens) over `chunks` [N, T]: `ce_per_chunk` summed."""
    sums, counts = ce_per_chunk(model, chunks, batch_size, splice_fns, scored_position)
    return float(sums.sum()), int(counts.sum())


def _mlm_sums_and_counts(
    model: nn.Module, ids: torch.Tensor, splice_fns: SpliceFns | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ CE at the masked positions, their number) of each row of one batch of a masked LM."""
    mask = mlm_mask(ids, _mlm_special_ids(model))
    masked = masked_lm_inputs(model, ids)
    fns = splice_fns(masked) if callable(splice_fns) else (splice_fns or {})
    with splice(model, fns):
        logits = model(input_ids=masked, use_cache=False).logits
    ce = F.cross_entropy(logits.float().flatten(0, 1), ids.flatten(), reduction="none").view(ids.shape)
    return (ce * mask).double().sum(1).cpu(), mask.sum(1).long().cpu()


def mean_ce(
    model: nn.Module,
    chunks: torch.Tensor,
    batch_size: int,
    splice_fns: SpliceFns | None = None,
) -> float:
    """Mean next-token CE (nats per token) of `model` on `chunks` [N, T], with `splice_fns` spliced in:
    `{layer: fn}` or a callable `input_ids -> {layer: fn}` (see `lorasae.model.hooks.splice`)."""
    total, count = ce_sum_and_count(model, chunks, batch_size, splice_fns)
    return total / count
