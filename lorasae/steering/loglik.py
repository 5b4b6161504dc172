"""Per-example mean next-token log-likelihood, correctly aligned.

The logits at position t predict token t+1, so ``log_softmax(logits)[:, :-1]`` scores ``ids[:, 1:]``.
(The original scored ``log_probs[1:]`` against ``ids[1:]``: each token against the prediction made *at*
it, an off-by-one.) Sequences start with BOS when the tokenizer has one, so the first real token is
scored too. Batches are right-padded; padded targets are masked out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def encode_texts(tokenizer, texts: Sequence[str], max_length: int | None = 128) -> list[list[int]]:
    """Token ids of each text, BOS first when the tokenizer has one, truncated to `max_length` tokens."""
    bos = tokenizer.bos_token_id
    out: list[list[int]] = []
    limit = {} if max_length is None else {"truncation": True, "max_length": max_length}
    for ids in tokenizer(list(texts), add_special_tokens=False, **limit)["input_ids"]:
        seq = ([bos] if bos is not None else []) + list(ids)
        if max_length is not None:
            seq = seq[:max_length]
        if len(seq) < 2:
            raise ValueError(
                f"Text {texts[len(out)]!r} has fewer than 2 tokens, so it has no next-token prediction to score."
            )
        out.append(seq)
    return out


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """``log p(ids[:, t+1] | ids[:, :t+1])`` for t = 0 … T-2: [B, T-1], computed in float32."""
    logprobs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logprobs.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to a [B, T] id tensor and its attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


@torch.no_grad()
def mean_logliks(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    batch_size: int = 16,
    pad_id: int = 0,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Mean next-token log-likelihood of each sequence (float64 array, input order). Sequences are batched
    by length, so padding is small; the splices active around the call apply to every forward pass."""
    if device is None:
        device = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    result = np.empty(len(seqs), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in index], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        scores = token_logprobs(logits, ids)
        target_mask = mask[:, 1:].to(scores.dtype)
        means = (scores * target_mask).sum(-1) / target_mask.sum(-1)
        result[index] = means.double().cpu().numpy()
    return result


def text_logliks(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    batch_size: int = 16,
    max_length: int | None = 128,
) -> np.ndarray:
    """`mean_logliks` of raw texts (BOS-prefixed, truncated to `max_length` tokens)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
    return mean_logliks(model, encode_texts(tokenizer, texts, max_length), batch_size=batch_size, pad_id=pad)
