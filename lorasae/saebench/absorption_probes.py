"""Absorption eval, steps 2-3: the ground-truth first-letter probes on residuals (26 one-vs-rest
logistic probes) and the k-sparse probes on SAE latents that name each letter's split latents."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

# --- probes --------------------------------------------------------------------------------------


class LinearProbe(nn.Module):
    def __init__(self, dim: int, num_outputs: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)

    @property
    def weights(self) -> Tensor:
        return self.fc.weight


def train_multi_probe(
    x: Tensor,
    y_onehot: Tensor,
    num_epochs: int,
    lr: float = 1e-2,
    end_lr: float = 1e-5,
    weight_decay: float = 1e-6,
    batch_size: int = 4096,
    l1_decay: float | None = None,
    map_acts: Any = None,
    probe_dim: int | None = None,
    seed: int = 42,
) -> LinearProbe:
    """One-vs-rest logistic probes trained jointly (SAEBench's `train_multi_probe`): BCE with
    pos_weight = #neg/#pos per class, Adam, exponential lr decay lr → end_lr over the epochs,
    optionally + l1_decay · mean_c Σ|w_c| (the k-sparse L1 probe) and inputs mapped through `map_acts`."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    y = y_onehot.float()
    pos = y.sum(0)
    pos_weight = torch.where(pos > 0, (len(y) - pos) / pos.clamp_min(1), torch.ones_like(pos))
    probe = LinearProbe(probe_dim or x.shape[-1], y.shape[-1])
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    gamma = math.exp(math.log(end_lr / lr) / max(num_epochs, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    with torch.enable_grad():
        for _ in range(num_epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                xb = x[idx].float()
                if map_acts is not None:
                    xb = map_acts(xb)
                loss = loss_fn(probe(xb), y[idx])
                if l1_decay is not None:
                    loss = loss + l1_decay * probe.weights.abs().sum(dim=-1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            scheduler.step()
    probe.eval()
    return probe


@dataclass
class KSparseProbe:
    feature_ids: Tensor  # [k] SAE latent indices
    columns: Tensor  # [k] their columns in the gathered latent table
    weight: Tensor  # [k]
    bias: float

    def score(self, gathered: Tensor) -> Tensor:
        """Logits from a table of gathered latents (see `train_k_sparse_probes`)."""
        return gathered[:, self.columns] @ self.weight + self.bias


def binary_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(f1_score(y_true, y_pred, zero_division=0.0))


def k_sparse_columns(l1_probe: LinearProbe, letters: list[int], max_k: int) -> Tensor:
    """The SAE latents any k-sparse probe can use: every letter's top-`max_k` by L1-probe weight (sorted)."""
    ids = [l1_probe.weights[c].detach().topk(max_k).indices for c in letters]
    return torch.unique(torch.cat(ids))


def train_k_sparse_probes(
    l1_probe: LinearProbe,
    gathered: Tensor,
    columns: Tensor,
    train_labels: Tensor,
    letters: list[int],
    ks: list[int],
) -> dict[int, dict[int, KSparseProbe]]:
    """For each k and letter: the letter's top-k latents by L1-probe weight (signed: latents that predict
    the letter), then `LogisticRegression(max_iter=500, class_weight="balanced")` on them. `gathered` [N, C]
    holds the SAE latents `columns` (from `k_sparse_columns`) of the training words."""
    position = {int(c): i for i, c in enumerate(columns.tolist())}
    out: dict[int, dict[int, KSparseProbe]] = {k: {} for k in ks}
    y = train_labels.numpy()
    for k in ks:
        for letter in letters:
            ids = l1_probe.weights[letter].detach().topk(k).indices
            cols = torch.tensor([position[int(i)] for i in ids], dtype=torch.long)
            with warnings.catch_warnings(), threadpool_limits(1):  # tiny fits: one BLAS thread is fastest
                warnings.simplefilter("ignore", ConvergenceWarning)
                lr = LogisticRegression(max_iter=500, class_weight="balanced").fit(
                    gathered[:, cols].numpy(), (y == letter).astype(np.int64)
                )
            out[k][letter] = KSparseProbe(
                ids, cols, torch.tensor(lr.coef_[0], dtype=torch.float32), float(lr.intercept_[0])
            )
    return out


def feature_splits(
    f1_by_k: dict[int, float], feats_by_k: dict[int, list[int]], f1_jump_threshold: float
) -> list[int]:
    """SAEBench's `add_feature_splits_to_metrics_df`: grow k while F1 rises by more than the threshold."""
    prev_best, split = -100.0, []
    for k in sorted(f1_by_k):
        if f1_by_k[k] > prev_best + f1_jump_threshold:
            prev_best, split = f1_by_k[k], feats_by_k[k]
        else:
            break
    return split
