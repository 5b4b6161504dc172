"""SAEBench's sparse probing (`evals/sparse_probing`), natively.

For each dataset (a dict class → texts) and each class: a one-vs-rest binary task with the class's
examples as positives and as many negatives sampled evenly from the other classes
(`prepare_probe_data`). Inputs are mean-pooled over non-special tokens (residual stream or SAE latents).
- LLM baseline: a logistic probe on all d_model dims (SAEBench trains it with its torch probe);
  `llm_top_{k}`: sklearn logistic regression on the k dims with the largest |mean_pos − mean_neg|.
- SAE: `sae_top_{k}_test_accuracy` = sklearn logistic regression on the k latents with the largest
  |mean_pos − mean_neg| on the train set (`get_top_k_mean_diff_mask`); `sae_test_accuracy` on all latents.
Accuracies are averaged over classes, then over datasets.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from lorasae.saebench.activations import collect_class_activations, meaned_activations, sae_meaned_activations
from lorasae.saebench.schema import EVAL_TYPE_SPARSE_PROBING, eval_output

POSITIVE_CLASS_LABEL = 1
NEGATIVE_CLASS_LABEL = 0


# --- probe data and feature selection ------------------------------------------------------------


def prepare_probe_data(
    acts_by_class: dict[str, Tensor],
    class_name: str,
    generator: torch.Generator,
    paired_classes: dict[str, str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Positives = `class_name`'s rows; negatives = as many rows from the other classes (sampled evenly,
    SAEBench's `prepare_probe_data`), or, for SCR, the rows of the paired class. Shuffled."""
    pos = acts_by_class[class_name]
    n = len(pos)
    if paired_classes is not None:
        neg_pool = acts_by_class[paired_classes[class_name]]
    else:
        others = [k for k in acts_by_class if k != class_name]
        if not others:
            raise ValueError("probing needs at least two classes")
        per_class = math.ceil(n / len(others))
        neg_pool = torch.cat(
            [
                acts_by_class[k][torch.randperm(len(acts_by_class[k]), generator=generator)[:per_class]]
                for k in others
            ]
        )
    neg = neg_pool[torch.randperm(len(neg_pool), generator=generator)[:n]]
    if len(neg) < n:
        pos = pos[: len(neg)]
        n = len(neg)
    x = torch.cat([pos, neg])
    y = torch.cat([torch.full((n,), POSITIVE_CLASS_LABEL), torch.full((n,), NEGATIVE_CLASS_LABEL)])
    order = torch.randperm(len(x), generator=generator)
    return x[order], y[order]


def top_k_mean_diff(acts: Tensor, labels: Tensor, k: int) -> Tensor:
    """Indices of the k columns with the largest |mean over positives − mean over negatives|."""
    diff = acts[labels == POSITIVE_CLASS_LABEL].float().mean(0) - acts[
        labels == NEGATIVE_CLASS_LABEL
    ].float().mean(0)
    return torch.argsort(diff.abs(), descending=True, stable=True)[:k]


def train_sklearn_probe(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, max_iter: int = 1000, C: float = 1.0
) -> tuple[LogisticRegression, float]:
    """L2 logistic regression (SAEBench: `LogisticRegression(max_iter=1000)`); returns the probe and test accuracy."""
    probe = LogisticRegression(C=C, max_iter=max_iter)  # L2 (sklearn's default penalty)
    # these fits are small (k ≤ 50 features): one BLAS thread is several times faster than many
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(train_x.float().numpy(), train_y.numpy())
    acc = float(accuracy_score(test_y.numpy(), probe.predict(test_x.float().numpy())))
    return probe, acc


class Probe(nn.Module):
    """SAEBench's torch probe: one linear unit, BCE-with-logits."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


@torch.no_grad()
def probe_accuracy(probe: Probe, x: Tensor, y: Tensor) -> float:
    """Fraction of rows where (logit > 0) equals the label."""
    if len(y) == 0:
        return float("nan")
    preds = (probe(x.float()) > 0).long()
    return float((preds == y).float().mean())


def train_torch_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    l1_penalty: float | None = None,
    early_stopping_patience: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[Probe, float]:
    """SAEBench's `train_probe_gpu`: AdamW, BCE (+ L1 on the weights), keep the probe with the best test
    accuracy, stop after `early_stopping_patience` epochs without improvement."""
    x, y = train_x.float(), train_y.float()
    probe = Probe(x.shape[1])
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr)
    criterion = nn.BCEWithLogitsLoss()
    best_acc, best, patience = -1.0, copy.deepcopy(probe), 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                loss = criterion(probe(x[idx]), y[idx])
                if l1_penalty is not None:
                    loss = loss + l1_penalty * probe.net.weight.abs().sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            acc = probe_accuracy(probe, test_x, test_y)
            if acc > best_acc:
                best_acc, best, patience = acc, copy.deepcopy(probe), 0
            else:
                patience += 1
                if patience >= early_stopping_patience:
                    break
    return best, best_acc


def train_probes_on_activations(
    train: dict[str, Tensor],
    test: dict[str, Tensor],
    select_top_k: int | None,
    seed: int,
    use_sklearn: bool = True,
    torch_kwargs: dict[str, Any] | None = None,
    paired_classes: dict[str, str] | None = None,
    classes: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """One binary probe per class (SAEBench's `train_probe_on_activations`); returns probes and test accuracies."""
    generator = torch.Generator().manual_seed(seed)
    probes, accs = {}, {}
    for name in classes or list(train):
        tr_x, tr_y = prepare_probe_data(train, name, generator, paired_classes)
        te_x, te_y = prepare_probe_data(test, name, generator, paired_classes)
        if select_top_k is not None:
            idx = top_k_mean_diff(tr_x, tr_y, select_top_k)
            tr_x, te_x = tr_x[:, idx], te_x[:, idx]
        if use_sklearn:
            probes[name], accs[name] = train_sklearn_probe(tr_x, tr_y, te_x, te_y)
        else:
            probes[name], accs[name] = train_torch_probe(
                tr_x, tr_y, te_x, te_y, generator=generator, **(torch_kwargs or {})
            )
    return probes, accs


# --- the eval ------------------------------------------------------------------------------------


@dataclass
class SparseProbingEvalConfig:
    """SAEBench's SparseProbingEvalConfig fields (values for one run)."""

    random_seed: int = 42
    dataset_names: list[str] = field(default_factory=list)
    probe_train_set_size: int = 4000
    probe_test_set_size: int = 1000
    context_length: int = 128
    sae_batch_size: int = 125
    llm_batch_size: int = 32
    llm_dtype: str = "float32"
    model_name: str = ""
    k_values: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50])
    lower_vram_usage: bool = False
    full_probe_epochs: int = 100
    full_probe_lr: float = 1e-2
    full_probe_batch_size: int = 250


def _mean_dict(d: dict[str, float]) -> float:
    return float(np.mean(list(d.values()))) if d else float("nan")


def run_sparse_probing_dataset(
    model: nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    train_texts: dict[str, list[str]],
    test_texts: dict[str, list[str]],
    config: SparseProbingEvalConfig,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One dataset: (class-averaged accuracies, per-class accuracies), keyed as in SAEBench."""
    train_bld = collect_class_activations(
        model, tokenizer, train_texts, layer, config.context_length, config.llm_batch_size
    )
    test_bld = collect_class_activations(
        model, tokenizer, test_texts, layer, config.context_length, config.llm_batch_size
    )
    train_llm = {k: meaned_activations(v) for k, v in train_bld.items()}
    test_llm = {k: meaned_activations(v) for k, v in test_bld.items()}
    seed = config.random_seed
    torch_kwargs = {
        "epochs": config.full_probe_epochs,
        "lr": config.full_probe_lr,
        "batch_size": config.full_probe_batch_size,
    }
    per_class: dict[str, dict[str, float]] = {}
    _, per_class["llm_test_accuracy"] = train_probes_on_activations(
        train_llm, test_llm, None, seed, use_sklearn=False, torch_kwargs=torch_kwargs
    )
    for k in config.k_values:
        _, per_class[f"llm_top_{k}_test_accuracy"] = train_probes_on_activations(train_llm, test_llm, k, seed)
    train_sae = {k: sae_meaned_activations(v, sae, config.sae_batch_size) for k, v in train_bld.items()}
    test_sae = {k: sae_meaned_activations(v, sae, config.sae_batch_size) for k, v in test_bld.items()}
    if not config.lower_vram_usage:
        _, per_class["sae_test_accuracy"] = train_probes_on_activations(
            train_sae, test_sae, None, seed, use_sklearn=False, torch_kwargs=torch_kwargs
        )
    for k in config.k_values:
        _, per_class[f"sae_top_{k}_test_accuracy"] = train_probes_on_activations(train_sae, test_sae, k, seed)
    averaged = {name: _mean_dict(accs) for name, accs in per_class.items()}
    return averaged, per_class


def run_sparse_probing(
    model: nn.Module,
    tokenizer: Any,
    sae: Any,
    layer: int,
    datasets: dict[str, tuple[dict[str, list[str]], dict[str, list[str]]]],
    config: SparseProbingEvalConfig,
    sae_id: str,
    release_id: str | None = None,
) -> dict[str, Any]:
    """Run over `datasets` {name: (train texts by class, test texts by class)}; SAEBench's output object."""
    config.dataset_names = list(datasets)
    results: dict[str, dict[str, float]] = {}
    unstructured: dict[str, Any] = {}
    for name, (train, test) in datasets.items():
        results[name], unstructured[f"{name}_results"] = run_sparse_probing_dataset(
            model, tokenizer, sae, layer, train, test, config
        )
    keys = list(next(iter(results.values())))
    mean = {k: float(np.mean([r[k] for r in results.values()])) for k in keys}
    metrics = {
        "llm": {k: v for k, v in mean.items() if k.startswith("llm_")},
        "sae": {k: v for k, v in mean.items() if k.startswith("sae_")},
    }
    details = [{"dataset_name": f"{name}_results", **r} for name, r in results.items()]
    return eval_output(
        EVAL_TYPE_SPARSE_PROBING, asdict(config), metrics, details, sae, sae_id, release_id, unstructured
    )
