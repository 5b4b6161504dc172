"""The whole TopK SAE (encode, select, decode) as one autograd function with a latent-grouped backward.

Forward: ``sae_in = x - b_dec``; ``z = sae_in @ W_enc.T + b_enc`` (the only dense GEMM, written into a
reused buffer, see :mod:`lorasae.sae.workspace`); top k of z (:mod:`lorasae.sae.select`), ReLU on the
k values; ``x_hat = sum_s acts[s] W_dec[idx[s]] + b_dec`` (one ``embedding_bag``). z never leaves.

Backward, with the N*k selected (token, latent) pairs grouped by latent once (one int32 radix sort):

- ``d acts[n, s] = g_xhat[n] . W_dec[idx[n, s]]``: a sampled dense-dense product over the grouped pairs,
  so each decoder row is loaded once and dotted with its tokens' gradients;
- ``d W_dec[j] = sum of acts * g_xhat[token]`` and ``d W_enc[j] = sum of g * sae_in[token]`` over the
  tokens that selected j: one ``embedding_bag`` each over the grouped pairs (no [N, m] and no [N*k, d]
  intermediate);
- ``d b_enc`` by latent; ``d b_dec = sum g_xhat - d b_enc @ W_enc`` when x needs no gradient (the
  per-token input gradient summed over tokens collapses into one mat-vec), else the per-token
  ``embedding_bag`` over the selected encoder rows.

AuxK needs the dense pre-activations; callers use :func:`lorasae.sae.kernels.topk_encode` for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from lorasae.sae.kernels import _rowdot_gather
from lorasae.sae.select import topk_select
from lorasae.sae.workspace import scratch

__all__ = ["fused_topk_sae", "LatentGroups"]


class LatentGroups:
    """The N*k selected pairs of ``idx`` [N, k] sorted by latent (stable: tokens ascending per latent)."""

    def __init__(self, idx: Tensor, num_latents: int) -> None:
        n, k = idx.shape
        flat = idx.reshape(-1)
        # 16-bit keys sort fastest on the CPU (0.6 ms for 131k) and without the many thread barriers of
        # the parallel radix sort that int32/int64 keys take (100x slower when the cores are oversubscribed)
        key = flat.to(torch.int16 if num_latents <= 2**15 else torch.int32)
        self.latents, self.order = key.sort(stable=True)  # latent of each grouped pair, ascending
        self.tokens = torch.div(self.order, k, rounding_mode="floor")  # token of each grouped pair
        self.crow = flat.new_zeros(num_latents + 1)  # CSR row pointers: pairs of latent j = crow[j]:crow[j+1]
        torch.cumsum(torch.bincount(key, minlength=num_latents), 0, out=self.crow[1:])
        self.idx, self.shape = idx, (n, k)
        self.num_latents = num_latents

    def gather(self, per_pair: Tensor) -> Tensor:
        """[N, k] -> [N*k] in grouped order."""
        return per_pair.reshape(-1)[self.order]

    def scatter(self, grouped: Tensor) -> Tensor:
        """[N*k] in grouped order -> [N, k]."""
        return torch.empty_like(grouped).index_copy_(0, self.order, grouped).view(self.shape)

    def row_sums(self, src: Tensor, weights: Tensor) -> Tensor:
        """``out[j] = sum over the pairs p of latent j of weights[p] * src[token[p]]``; [num_latents, d]."""
        return F.embedding_bag(
            self.tokens, src, self.crow, mode="sum", per_sample_weights=weights.to(src.dtype),
            include_last_offset=True,
        )  # fmt: skip

    def latent_sums(self, weights: Tensor) -> Tensor:
        """``out[j] = sum over the pairs of latent j of weights``; [num_latents]."""
        return torch.bincount(self.latents, weights, minlength=self.num_latents).to(weights.dtype)

    def rowdot(self, a: Tensor, rows: Tensor) -> Tensor:
        """``out[p] = a[token[p]] . rows[latent[p]]`` in grouped order; a [N, d], rows [num_latents, d]."""
        if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64) and rows.dtype == a.dtype:
            n = self.shape[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                pattern = torch.sparse_csr_tensor(
                    self.crow, self.tokens, a.new_zeros(self.tokens.shape[0]), (self.num_latents, n),
                    check_invariants=False,
                )  # fmt: skip
                return torch.sparse.sampled_addmm(pattern, rows.contiguous(), a.t(), beta=0.0).values()
        return self.gather(_rowdot_gather(a, rows, self.idx, chunk=1024))  # GPU / half precision


class _FusedTopKSAE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: Tensor, b_dec: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, k: int, select=None
    ):
        sae_in = x - b_dec
        n, m = sae_in.shape[0], W_enc.shape[0]
        if torch.is_autocast_enabled(sae_in.device.type):  # autocast picks the GEMM dtype; no out=
            z = torch.addmm(b_enc, sae_in, W_enc.t())
        else:
            buf = scratch((n, m), torch.result_type(sae_in, W_enc), sae_in.device)
            z = torch.addmm(b_enc, sae_in, W_enc.t(), out=buf)
        vals, idx = topk_select(z, k) if select is None else select(z)
        del z
        # top k of z then ReLU == top k of ReLU(z), up to which zeros fill slots left by < k positives
        acts = vals.to(W_dec.dtype).relu_()
        x_hat = F.embedding_bag(idx, W_dec, mode="sum", per_sample_weights=acts).add_(b_dec)
        ctx.mark_non_differentiable(idx)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(sae_in, W_enc, W_dec, acts, idx)
        return x_hat, acts, idx

    @staticmethod
    def backward(ctx, g_xhat: Tensor | None, g_acts: Tensor | None, _g_idx: None):
        sae_in, W_enc, W_dec, acts, idx = ctx.saved_tensors
        need_x, need_bdec, need_wenc, need_benc, need_wdec = ctx.needs_input_grad[:5]
        grad_x = grad_bdec = grad_wenc = grad_benc = grad_wdec = None
        if g_xhat is None and g_acts is None:
            return None, None, None, None, None, None, None
        groups = LatentGroups(idx, W_enc.shape[0])
        acts_g = groups.gather(acts)
        g = None  # d loss / d acts, grouped order
        if g_xhat is not None:
            g_xhat = g_xhat.contiguous()
            if need_wdec:
                grad_wdec = groups.row_sums(g_xhat, acts_g)
            g = groups.rowdot(g_xhat, W_dec).to(acts.dtype)
            if need_bdec:
                grad_bdec = g_xhat.sum(0)
        if g_acts is not None:
            g = groups.gather(g_acts) if g is None else g.add_(groups.gather(g_acts))
        assert g is not None
        g.masked_fill_(acts_g <= 0, 0)  # ReLU gate (a selected latent may be 0)
        if need_wenc:
            grad_wenc = groups.row_sums(sae_in, g)
        if need_benc or (need_bdec and not need_x):
            grad_benc = groups.latent_sums(g)
        if need_x:
            grad_x = F.embedding_bag(
                idx, W_enc, mode="sum", per_sample_weights=groups.scatter(g).to(W_enc.dtype)
            )
            if need_bdec:
                grad_bdec = _sub(grad_bdec, grad_x.sum(0))
        elif need_bdec:
            assert grad_benc is not None
            grad_bdec = _sub(grad_bdec, grad_benc.to(W_enc.dtype) @ W_enc)
        return grad_x, grad_bdec, grad_wenc, grad_benc if need_benc else None, grad_wdec, None, None


def _sub(a: Tensor | None, b: Tensor) -> Tensor:
    return -b if a is None else a - b


def fused_topk_sae(
    x: Tensor,
    b_dec: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    W_dec: Tensor,
    k: int,
    select: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(x_hat [..., d], acts [..., k], idx [..., k]) of a TopK SAE; W_enc, W_dec: [m, d]. ``select``
    (z [N, m] -> (values, indices) [N, k'], values <= 0 where a slot keeps nothing) replaces the per-token
    top k: BatchTopK's selection over the batch (the backward's ReLU gate zeroes the empty slots)."""
    lead = x.shape[:-1]
    x_hat, acts, idx = _FusedTopKSAE.apply(x.reshape(-1, x.shape[-1]), b_dec, W_enc, b_enc, W_dec, k, select)
    width = acts.shape[-1]
    return x_hat.view(*lead, -1), acts.view(*lead, width), idx.view(*lead, width)
