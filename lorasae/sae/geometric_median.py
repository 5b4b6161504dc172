"""Geometric median (Weiszfeld's algorithm), used to initialise the SAE's b_dec."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def geometric_median(x: Tensor, max_iter: int = 100, tol: float = 1e-6, eps: float = 1e-8) -> Tensor:
    """The point minimising the sum of Euclidean distances to the rows of ``x`` ([..., d] -> [d]).

    Weiszfeld iterations from the mean, computed in at least float32 and returned in ``x``'s dtype.
    Stops after ``max_iter`` steps or when a step moves less than ``tol`` relative to the point's scale.
    """
    if x.numel() == 0:
        raise ValueError("geometric_median: got an empty tensor")
    pts = x.reshape(-1, x.shape[-1])
    pts = pts.to(torch.promote_types(pts.dtype, torch.float32))
    y = pts.mean(0)
    scale = pts.norm(dim=-1).mean().clamp_min(eps)
    for _ in range(max_iter):
        w = 1.0 / (pts - y).norm(dim=-1).clamp_min(eps)
        y_new = (w[:, None] * pts).sum(0) / w.sum()
        moved = (y_new - y).norm()
        y = y_new
        if moved <= tol * scale:
            break
    return y.to(x.dtype)
