"""KL(p_base ‖ p_student) and its gradient for one chunk of positions, from final hidden states, with as
few full-vocabulary passes and [chunk, V] allocations as possible.

With soft-capping ``logits = c tanh(h W^T / c)`` (Gemma-2; c = 1 and no tanh otherwise):

- the 1/c goes into the (tiny) fp32 hidden states before the head GEMM, and tanh runs in place on its
  output t;
- with ``m = max t``, ``e = exp(c (t - m))``, ``S = sum e``: ``p = e / S`` and ``lse = c m + log S``, so no
  log-probability tensor is formed; ``KL = c sum p_b (t_b - t_s) - lse_b + lse_s`` per position;
- ``d KL / d h_s = ((q - p) (1 - t_s^2)) W`` (the c's cancel), formed in place.

At most four [chunk, V] fp32 tensors are alive at once (t_b, t_s, p, q), against ten in a direct
log-softmax formulation, and each fresh tensor costs its page faults on the CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["lean_chunk_kl"]


def _capped_probs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, cap: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(t, p, lse): t = tanh(logits / cap) (raw logits when cap == 0), p = softmax, lse = log-partition."""
    scale = cap if cap else 1.0
    prescale = cap and hidden.dtype in (torch.float32, torch.float64)  # half precision: divide after
    if prescale:
        hidden = hidden / cap
        bias = None if bias is None else bias / cap
    t = F.linear(hidden, weight, bias).float()
    if cap:
        (t if prescale else t.div_(cap)).tanh_()
    shift = t.amax(-1, keepdim=True).mul_(-scale)  # -c m
    p = torch.add(shift, t, alpha=scale).exp_()  # exp(c t - c m)
    total = p.sum(-1, keepdim=True)
    p.div_(total)
    lse = total.double().log_().sub_(shift.double())  # c m + log S
    return t, p, lse


def lean_chunk_kl(
    student: Tensor, base: Tensor, weight: Tensor, bias: Tensor | None, softcap: float | None, want_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """(KL summed over the chunk's rows as a float64 scalar, d KL / d student [rows, d] or None).

    student, base: final hidden states [rows, d]; weight [V, d], bias [V] or None: the LM head.
    """
    cap = float(softcap or 0.0)
    scale = cap if cap else 1.0
    t_b, p, lse_b = _capped_probs(base, weight, bias, cap)
    t_s, q, lse_s = _capped_probs(student, weight, bias, cap)
    t_b.sub_(t_s)  # now t_b - t_s
    cross = torch.bmm(p.unsqueeze(1), t_b.unsqueeze(2)).view(-1).double()  # per-row sum p (t_b - t_s)
    del t_b
    kl = (cross * scale - lse_b.view(-1) + lse_s.view(-1)).sum()
    if not want_grad:
        return kl, None
    grad = q.sub_(p)  # softmax(student) - p
    del p
    if cap:
        grad.sub_(t_s.mul_(t_s).mul_(grad))  # * (1 - t_s^2)
    del t_s
    return kl, grad.to(weight.dtype) @ weight
