"""The KL objective of LoRA training (SPEC §3.2) and of the e2e SAE (SPEC §3.1): full-vocabulary
KL(p_base ‖ p_student) per position, summed over positions and divided by the batch size (PyTorch's
`kl_div(..., reduction="batchmean")` on [B, T, V], as the paper). Both trainers call `chunked_kl`, so
timing comparisons between them pay for the same KL.

Gemma's vocabulary has 256k entries, so a [B, T, V] fp32 tensor for one 1024-token sequence is 1 GiB and
the naive computation keeps several of them (two softmaxes, the log-probabilities saved for backward, the
gradient). Here the KL is computed in chunks of positions by a custom autograd function:

- `fused` (default): the inputs are the final hidden states [B, T, d] of the student and of the base
  model; each chunk is projected through the (frozen) LM head, both log-softmaxes and the KL are taken,
  and the gradient with respect to the student's hidden states, (softmax(z_s) − p_base) W / B, is formed
  on the spot. No [B, T, V] tensor exists at any time; peak extra memory is a few [chunk, V] tensors.
- `chunked`: the inputs are the full logits (for architectures whose head is not a plain linear layer);
  the KL and its gradient are formed per chunk, so no probability tensor is materialised twice.
- `naive`: the original's formula, kept as the reference for tests and benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lorasae.kl.head import LogitHead
from lorasae.kl.lean import lean_chunk_kl

KL_IMPLS = ("fused", "chunked", "naive")
DEFAULT_CHUNK_BYTES = 128 * 2**20


def auto_chunk_size(vocab_size: int, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Positions per chunk so that one fp32 [chunk, V] tensor takes about `budget_bytes`."""
    return max(1, budget_bytes // (4 * max(1, vocab_size)))


def _chunk_kl_and_grad(
    z_student: Tensor, z_base: Tensor, softcap: float | None, want_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """KL summed over the rows of one chunk of raw logits (before soft-capping), and d KL / d z_student."""
    z_base = z_base.float()
    if softcap:
        z_base = torch.tanh(z_base / softcap).mul_(softcap)
    log_p = torch.log_softmax(z_base, dim=-1)
    del z_base
    z_student = z_student.float()
    tanh_s = None
    if softcap:
        tanh_s = torch.tanh(z_student / softcap)
        z_student = tanh_s * softcap
    log_q = torch.log_softmax(z_student, dim=-1)
    del z_student
    p = log_p.exp()
    kl = (p * (log_p - log_q)).sum()
    if not want_grad:
        return kl, None
    grad = log_q.exp_().sub_(p)  # d/dz [-Σ p log_softmax(z)] = softmax(z) − p
    if tanh_s is not None:
        grad.mul_(1 - tanh_s.square())
    return kl, grad


class _ChunkedKL(torch.autograd.Function):
    """KL(p_base ‖ p_student) summed over rows × `scale`; rows processed `chunk` at a time. With a head
    weight, the inputs are hidden states [N, d] and the head is applied per chunk; without, they are raw
    logits [N, V]. The gradient for the student input is computed in the forward pass."""

    @staticmethod
    def forward(ctx, student, base, weight, bias, softcap, chunk, scale):  # noqa: D401
        want_grad = student.requires_grad
        rows = student.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=student.device)
        grad_in = torch.empty_like(student) if want_grad else None
        for start in range(0, rows, chunk):
            s, b = student[start : start + chunk], base[start : start + chunk]
            if weight is not None:  # head applied here; the gradient comes back per hidden state
                kl, grad = lean_chunk_kl(s, b, weight, bias, softcap, want_grad)
            else:
                kl, grad = _chunk_kl_and_grad(s, b, softcap, want_grad)
            total += kl.double()
            if grad is not None:
                grad.mul_(scale)
                grad_in[start : start + chunk] = grad.to(student.dtype)
        if grad_in is not None:
            ctx.save_for_backward(grad_in)
        return (total * scale).to(torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        (grad_in,) = ctx.saved_tensors
        return grad_in * grad_output.to(grad_in.dtype), None, None, None, None, None, None


def chunked_kl(
    student: Tensor,
    base: Tensor,
    head: LogitHead | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """KL(p_base ‖ p_student), summed over positions and divided by the batch size B.

    With `head`, `student` and `base` are final hidden states [B, T, d] (the head — including Gemma's
    soft-capping — is applied chunk by chunk); without, they are raw logits [B, T, V] (already
    soft-capped). `base` carries no gradient. `chunk_size` = positions per chunk (default: about 128 MiB
    of fp32 logits per chunk)."""
    if student.shape != base.shape:
        raise ValueError(f"student {tuple(student.shape)} and base {tuple(base.shape)} shapes differ")
    batch = student.shape[0]
    vocab = head.vocab_size if head is not None else student.shape[-1]
    chunk = int(chunk_size) if chunk_size else auto_chunk_size(vocab)
    flat_s = student.reshape(-1, student.shape[-1])
    flat_b = base.detach().reshape(-1, base.shape[-1])
    if head is None:
        return _ChunkedKL.apply(flat_s, flat_b, None, None, None, chunk, 1.0 / batch)
    return _ChunkedKL.apply(flat_s, flat_b, head.weight.detach(), head.bias, head.softcap, chunk, 1.0 / batch)


def naive_kl(student_logits: Tensor, base_logits: Tensor) -> Tensor:
    """The original's full-tensor formula: `kl_div(log_softmax(student), softmax(base), "batchmean")`."""
    log_q = torch.log_softmax(student_logits.float(), dim=-1)
    p = torch.softmax(base_logits.float(), dim=-1)
    return F.kl_div(log_q, p, reduction="batchmean", log_target=False)
