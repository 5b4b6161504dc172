"""Sparse kernels for the TopK SAE: only the k active latents of each token are touched.

The forward encoder GEMM stays dense (every latent must be scored to pick the top k); everything
else is sparse:

- decode: ``x_hat[n] = sum_s acts[n, s] * W_dec[idx[n, s]]`` is one ``F.embedding_bag``;
- decode backward: ``d acts`` is a sampled dense-dense product (SDDMM) and ``d W_dec`` a
  per-latent sum over the tokens that selected it (an ``embedding_bag`` over tokens grouped by latent);
- encoder backward: ``d x`` is an ``embedding_bag`` over the selected encoder rows, ``d W_enc`` and
  ``d b_enc`` accumulate only into the selected latents.

If the caller uses the dense pre-activations (AuxK loss), the encoder backward falls back to dense GEMMs.
The dense reference lives in :mod:`lorasae.sae.topk` (``fast=False``); tests check both agree.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from lorasae.sae.select import topk_select

__all__ = ["topk_encode", "sparse_decode", "scatter_rows", "sampled_rowdot"]


def scatter_rows(idx: Tensor, weights: Tensor, src: Tensor, num_rows: int) -> Tensor:
    """``out[j] = sum over (n, s) with idx[n, s] == j of weights[n, s] * src[n]``; shape [num_rows, d].

    Tokens are grouped by latent (one sort) and summed with a single ``embedding_bag``.
    """
    k = idx.shape[1]
    flat = idx.reshape(-1)
    order = flat.argsort()
    tokens = torch.div(order, k, rounding_mode="floor")
    counts = torch.bincount(flat, minlength=num_rows)
    offsets = counts.cumsum(0) - counts
    per_sample = weights.reshape(-1)[order].to(src.dtype)
    return F.embedding_bag(tokens, src, offsets, mode="sum", per_sample_weights=per_sample)


def sampled_rowdot(a: Tensor, rows: Tensor, idx: Tensor, chunk: int = 1024) -> Tensor:
    """``out[n, s] = a[n] . rows[idx[n, s]]``; shape [N, k] (a sampled dense-dense product)."""
    n, k = idx.shape
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        sorted_idx, perm = idx.sort(dim=1)  # CSR wants sorted column indices within a row
        crow = torch.arange(0, n * k + 1, k, device=a.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            pattern = torch.sparse_csr_tensor(
                crow, sorted_idx.reshape(-1), a.new_zeros(n * k), (n, rows.shape[0]), check_invariants=False
            )
            vals = torch.sparse.sampled_addmm(pattern, a.contiguous(), rows.t(), beta=0.0).values()
        return torch.empty_like(idx, dtype=a.dtype).scatter_(1, perm, vals.view(n, k))
    return _rowdot_gather(a, rows, idx, chunk)


def _rowdot_gather(a: Tensor, rows: Tensor, idx: Tensor, chunk: int) -> Tensor:
    """Fallback for :func:`sampled_rowdot` (GPU, half precision): gather rows in chunks of tokens."""
    out = a.new_empty(idx.shape)
    for i in range(0, idx.shape[0], chunk):
        out[i : i + chunk] = torch.einsum(
            "nkd,nd->nk", F.embedding(idx[i : i + chunk], rows), a[i : i + chunk]
        )
    return out


class _TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        z = F.linear(x, weight, bias)
        # top k of the pre-activations, then ReLU: the same latents and values as top k of ReLU(z),
        # up to which zero-valued latents fill the slots when fewer than k are positive
        vals, idx = topk_select(z, k)  # == z.topk(k, sorted=False) up to order and ties (select.py)
        acts = vals.relu()
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(idx)
        ctx.save_for_backward(x, weight, acts, idx)
        return acts, idx, z

    @staticmethod
    def backward(ctx, g_acts: Tensor | None, _g_idx: None, g_z: Tensor | None):
        x, weight, acts, idx = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # gradients are computed in the parameters' dtype (under autocast, z and acts may be lower precision)
        wdt = weight.dtype
        g = None if g_acts is None else (g_acts * (acts > 0)).to(wdt)  # ReLU gate: a selected latent may be 0
        xw = x.to(wdt)
        if g_z is not None:  # the dense pre-activations were used (AuxK): dense backward
            gz = g_z.to(wdt) if g is None else g_z.to(wdt).scatter_add(1, idx, g)
            return (
                (gz @ weight).to(x.dtype) if need_x else None,
                gz.t() @ xw if need_w else None,
                gz.sum(0) if need_b else None,
                None,
            )
        if g is None:
            return None, None, None, None
        grad_x = (
            F.embedding_bag(idx, weight, mode="sum", per_sample_weights=g).to(x.dtype) if need_x else None
        )
        grad_w = scatter_rows(idx, g, xw, weight.shape[0]) if need_w else None
        grad_b = (
            g.new_zeros(weight.shape[0]).index_add_(0, idx.reshape(-1), g.reshape(-1)) if need_b else None
        )
        return grad_x, grad_w, grad_b, None


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, acts: Tensor, idx: Tensor, W_dec: Tensor) -> Tensor:
        ctx.save_for_backward(acts, idx, W_dec)
        return F.embedding_bag(idx, W_dec, mode="sum", per_sample_weights=acts.to(W_dec.dtype))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        acts, idx, W_dec = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_acts = sampled_rowdot(grad_out, W_dec, idx).to(acts.dtype) if ctx.needs_input_grad[0] else None
        grad_w = scatter_rows(idx, acts, grad_out, W_dec.shape[0]) if ctx.needs_input_grad[2] else None
        return grad_acts, None, grad_w


def topk_encode(x: Tensor, weight: Tensor, bias: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top k of ``z = x @ weight.T + bias`` per row, ReLU'd, with a sparse backward.

    x: [..., d]; weight: [m, d] (``nn.Linear`` layout). Returns (acts [..., k], idx [..., k], z [..., m]),
    z being the pre-ReLU pre-activations; using z in the loss (AuxK) switches the backward to dense.
    """
    lead = x.shape[:-1]
    acts, idx, z = _TopKEncode.apply(x.reshape(-1, x.shape[-1]), weight, bias, k)
    return acts.view(*lead, k), idx.view(*lead, k), z.view(*lead, -1)


def sparse_decode(acts: Tensor, idx: Tensor, W_dec: Tensor) -> Tensor:
    """``out[..., :] = sum_s acts[..., s] * W_dec[idx[..., s]]`` (no bias); W_dec: [m, d]."""
    lead = acts.shape[:-1]
    k = acts.shape[-1]
    out = _SparseDecode.apply(acts.reshape(-1, k), idx.reshape(-1, k), W_dec)
    return out.view(*lead, W_dec.shape[1])
