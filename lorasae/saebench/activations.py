"""Residual-stream and SAE-latent collection shared by the evals, following SAEBench's
`sae_bench_utils/activation_collection.py`: BOS/PAD/EOS positions are zeroed in the collected
activations, and a sequence's mean-pooled activation averages over its remaining (non-zero) positions.
An SAE here is anything with `encode`, `decode` and `W_dec` [d_sae, d_in] (`lorasae.sae.SaeLike`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lorasae.model.hooks import residual_at
from lorasae.model.load import special_token_ids


def sae_device_dtype(sae: Any) -> tuple[torch.device, torch.dtype]:
    w = sae.W_dec
    return w.device, w.dtype


def d_sae_of(sae: Any) -> int:
    return int(sae.W_dec.shape[0])


@torch.no_grad()
def encode_on_device(sae: Any, x: Tensor) -> Tensor:
    """Dense float32 latents of `x` [..., d], left on the SAE's device."""
    device, dtype = sae_device_dtype(sae)
    z = sae.encode(x.to(device=device, dtype=dtype))
    if getattr(z, "is_sparse", False):
        z = z.to_dense()
    return z.float()


@torch.no_grad()
def sae_encode(sae: Any, x: Tensor, batch_size: int = 4096, columns: Tensor | None = None) -> Tensor:
    """Dense latents [..., d_sae] of `x` [..., d] (only `columns` of them when given), encoded in row batches,
    returned as float32 on x's device."""
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    width = d_sae_of(sae) if columns is None else len(columns)
    out = []
    for i in range(0, flat.shape[0], batch_size):
        z = encode_on_device(sae, flat[i : i + batch_size])
        if columns is not None:
            z = z[:, columns.to(z.device)]
        out.append(z.to(x.device))
    if not out:
        return x.new_zeros(*lead, width, dtype=torch.float32)
    return torch.cat(out).reshape(*lead, width)


def keep_mask(tokens: Tensor, tokenizer: Any) -> Tensor:
    """True where the token is not BOS, EOS or PAD (SAEBench's `get_bos_pad_eos_mask`)."""
    special = special_token_ids(tokenizer)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for token_id in special:
        mask &= tokens != token_id
    return mask


def tokenize_texts(texts: Sequence[str], tokenizer: Any, ctx_len: int) -> Tensor:
    """Token ids [N, ctx_len]: BOS first when the tokenizer has one, truncated, right-padded with PAD
    (SAEBench's `tokenize_data_dictionary`: padding to max_length, truncation)."""
    bos = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a PAD nor an EOS token to pad with")
    body = ctx_len - (1 if bos is not None else 0)
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]  # cut to body below
    out = torch.full((len(ids), ctx_len), pad, dtype=torch.long)
    for row, seq in enumerate(ids):
        seq = ([bos] if bos is not None else []) + list(seq[:body])
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def collect_residuals(
    model: nn.Module,
    tokens: Tensor,
    layer: int,
    batch_size: int,
    keep: Tensor | None = None,
    positions: Tensor | None = None,
    store_dtype: torch.dtype | None = None,
) -> Tensor:
    """Residual stream after decoder layer `layer` for `tokens` [N, T], on the CPU.

    `keep` [N, T]: positions outside it are zeroed (SAEBench's mask_bos_pad_eos_tokens). Padding is on the
    right, so (as in SAEBench) no attention mask is needed: a causal model's real positions never see it.
    `positions` [N]: return only the activation at that position of each row, [N, d].
    """
    device = _model_device(model)
    out: list[Tensor] = []
    for i in range(0, tokens.shape[0], batch_size):
        ids = tokens[i : i + batch_size].to(device)
        h = residual_at(model, ids, layer)
        if keep is not None:
            h = h * keep[i : i + batch_size].to(device)[..., None].to(h.dtype)
        if positions is not None:
            pos = positions[i : i + batch_size].to(device)
            h = h[torch.arange(h.shape[0], device=device), pos]
        out.append(h.to("cpu", dtype=store_dtype or h.dtype))
    return torch.cat(out)


def meaned_activations(acts_BLD: Tensor) -> Tensor:
    """Mean over the positions whose activation is not all-zero (SAEBench's
    `create_meaned_model_activations`: masked positions were zeroed beforehand)."""
    acts = acts_BLD.float()
    nonzero_BL = (acts.sum(dim=-1) != 0).float()
    count_B = nonzero_BL.sum(dim=-1).clamp_min(1.0)
    return acts.sum(dim=1) / count_B[:, None]


@torch.no_grad()
def sae_meaned_activations(acts_BLD: Tensor, sae: Any, batch_size: int) -> Tensor:
    """Encode with the SAE and mean over the non-zero positions (SAEBench's `get_sae_meaned_activations`);
    pooled on the SAE's device, so only [B, d_sae] comes back."""
    device, _ = sae_device_dtype(sae)
    out = []
    for i in range(0, acts_BLD.shape[0], batch_size):
        acts = acts_BLD[i : i + batch_size].to(device=device, dtype=torch.float32)
        nonzero_BL = (acts.sum(dim=-1) != 0).float()
        count_B = nonzero_BL.sum(dim=-1).clamp_min(1.0)
        latents = encode_on_device(sae, acts) * nonzero_BL[..., None]
        out.append((latents.sum(dim=1) / count_B[:, None]).cpu())
    if not out:
        return torch.zeros(0, d_sae_of(sae))
    return torch.cat(out)


def collect_class_activations(
    model: nn.Module,
    tokenizer: Any,
    texts_by_class: dict[str, list[str]],
    layer: int,
    ctx_len: int,
    batch_size: int,
) -> dict[str, Tensor]:
    """`{class: [N, T, d]}` residuals with BOS/PAD/EOS zeroed (SAEBench's `get_all_llm_activations`)."""
    result = {}
    for name, texts in texts_by_class.items():
        tokens = tokenize_texts(texts, tokenizer, ctx_len)
        result[name] = collect_residuals(model, tokens, layer, batch_size, keep=keep_mask(tokens, tokenizer))
    return result
