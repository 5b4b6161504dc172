"""Gradient pursuit over an SAE's own dictionary (SPEC §7): the best sparse codes the decoder allows at
each token's own L0, so FVU(SAE) − FVU(pursuit) measures the encoder's error.

Per token, starting from r = x − b_dec and an empty support: add the atom with the largest positive
⟨r, D_i⟩ / ‖D_i‖, then move the support's codes z along the gradient g = D_S r with an exact line search
(α = ⟨r, D_S g⟩ / ‖D_S g‖²), projected so the codes stay non-negative (coordinates at 0 with g < 0 are
frozen, α is capped where a code would cross 0). The objective is a convex quadratic along the line and
α never passes its minimum, so the residual never increases; the support never exceeds the token's L0.
Tokens run in batches; only the support's atoms are gathered, so memory is O(batch · (width + L0 · d)).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm


def _b_dec(sae) -> Tensor:
    b = getattr(sae, "b_dec", None)
    if b is None:
        b = getattr(getattr(sae, "sae", None), "b_dec", None)
    if b is None:
        raise TypeError(f"{type(sae).__name__} has no b_dec")
    return b


@torch.no_grad()
def gradient_pursuit(
    x: Tensor,
    W_dec: Tensor,
    l0: Tensor,
    b_dec: Tensor | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """(x̂ [N, d], support indices [N, max L0] (−1 = unused), codes [N, max L0]) of non-negative gradient
    pursuit with `l0[i]` atoms for token i. Computed in float32 on W_dec's device; returned on the CPU."""
    device = W_dec.device
    D = W_dec.float()
    norms = D.norm(dim=1).clamp(min=1e-12)
    b = torch.zeros(D.shape[1], device=device) if b_dec is None else b_dec.float().to(device)
    steps = int(l0.max()) if len(l0) else 0
    out_hat, out_idx, out_z = [], [], []
    for start in tqdm(range(0, len(x), batch_size), desc="pursuit", disable=not progress, leave=False):
        xb = x[start : start + batch_size].to(device).float() - b
        budget = l0[start : start + batch_size].to(device)
        n = len(xb)
        idx = torch.full((n, max(steps, 1)), -1, dtype=torch.long, device=device)
        z = torch.zeros(n, max(steps, 1), device=device)
        r = xb.clone()
        for step in range(steps):
            scores = torch.cat([(r @ D.T) / norms, r.new_zeros(n, 1)], 1)  # last column: "unused" slot
            if step:  # atoms already in the support cannot be picked again
                used = torch.where(idx[:, :step] >= 0, idx[:, :step], D.shape[0])
                scores.scatter_(1, used, float("-inf"))
            best_score, best = scores[:, :-1].max(1)
            grow = (step < budget) & (best_score > 0)
            idx[:, step] = torch.where(grow, best, idx[:, step])
            active = idx[:, : step + 1] >= 0
            atoms = D[idx[:, : step + 1].clamp(min=0)] * active[..., None]  # [n, s, d]
            zs = z[:, : step + 1]
            g = torch.einsum("nsd,nd->ns", atoms, r)
            g = torch.where((zs <= 0) & (g < 0), torch.zeros_like(g), g) * active
            g = g * grow[:, None]  # tokens at their L0 (or with nothing left to add) keep their codes
            dg = torch.einsum("ns,nsd->nd", g, atoms)
            denom = dg.pow(2).sum(1)
            alpha = torch.where(denom > 0, (r * dg).sum(1) / denom.clamp(min=1e-30), torch.zeros_like(denom))
            ratio = torch.where(g < 0, zs / (-g).clamp(min=1e-30), torch.full_like(zs, float("inf")))
            alpha = torch.minimum(alpha.clamp(min=0), ratio.min(1).values)
            z[:, : step + 1] = (zs + alpha[:, None] * g).clamp(min=0)
            r = xb - torch.einsum("ns,nsd->nd", z[:, : step + 1], atoms)
        out_hat.append((xb - r + b).cpu())
        out_idx.append(idx.cpu())
        out_z.append(z.cpu())
    if not out_hat:
        return x.new_zeros(0, x.shape[1]), torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1)
    return torch.cat(out_hat), torch.cat(out_idx), torch.cat(out_z)


def pursuit_reconstruction(
    sae, x: Tensor, l0: Tensor, batch_size: int = 256, progress: bool = False
) -> Tensor:
    """x̂ of gradient pursuit over `sae`'s decoder (its b_dec as the offset) at each token's L0."""
    return gradient_pursuit(x, sae.W_dec.detach(), l0, _b_dec(sae).detach(), batch_size, progress)[0]
