"""SAE latent activations on texts, and choosing the latent that best marks a concept.

Activations are read at the output of decoder layer L (the SAE's hook point) with a truncated forward;
the BOS position (an attention sink with outlying norms in real models) is left out of every statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lorasae.model.hooks import residual_at
from lorasae.steering.loglik import encode_texts, pad_batch


def _sae_device_dtype(sae) -> tuple[torch.device, torch.dtype]:
    W = sae.W_dec
    return W.device, W.dtype


@torch.no_grad()
def latent_activations(
    model: nn.Module,
    tokenizer,
    sae,
    layer: int,
    texts: Sequence[str],
    latents: Sequence[int] | None = None,
    batch_size: int = 16,
    max_length: int = 128,
) -> list[np.ndarray]:
    """Per text, the SAE activations of `latents` (all latents when None) at each token after BOS:
    a list of [T_i, n_latents] float32 arrays."""
    seqs = encode_texts(tokenizer, texts, max_length)
    skip = 1 if tokenizer.bos_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    sae_device, sae_dtype = _sae_device_dtype(sae)
    select = None if latents is None else torch.as_tensor(list(latents), dtype=torch.long, device=sae_device)
    out: list[np.ndarray] = [np.zeros(0)] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in index], pad)
        hidden = residual_at(model, ids.to(device), layer, attention_mask=mask.to(device))
        acts = sae.encode(hidden.to(sae_device, sae_dtype))
        if select is not None:
            acts = acts.index_select(-1, select)
        acts = acts.float().cpu().numpy()
        for row, i in enumerate(index):
            out[i] = acts[row, skip : len(seqs[i])]
    return out


def mean_activations(
    model: nn.Module,
    tokenizer,
    sae,
    layer: int,
    texts: Sequence[str],
    batch_size: int = 16,
    max_length: int = 128,
) -> np.ndarray:
    """[N, d_sae]: each text's mean activation of every latent over its tokens (BOS excluded)."""
    rows = latent_activations(model, tokenizer, sae, layer, texts, None, batch_size, max_length)
    return np.stack([r.mean(0) if len(r) else np.zeros(r.shape[-1]) for r in rows])


@dataclass(frozen=True)
class ConceptChoice:
    """The latent that best marks concept texts, and the runners-up."""

    latent: int
    score: float
    """Youden's J of "the latent fires somewhere in the text" as a concept detector:
    P(fires | concept text) − P(fires | other text)."""
    rate_concept: float
    rate_other: float
    dprime: float
    """(mean_concept − mean_other) / sqrt((var_concept + var_other) / 2) of per-text mean activations."""
    auroc: float
    """P(a random concept text has a higher mean activation than a random other text)."""
    ranking: list[tuple[int, float]]
    """The ten best latents with their scores."""

    def describe(self, concept: str) -> str:
        return (
            f"latent {self.latent} marks '{concept}' best: it fires in {self.rate_concept:.0%} of {concept} "
            f"texts and {self.rate_other:.0%} of the others (J={self.score:.2f}, d'={self.dprime:.2f}, "
            f"AUROC={self.auroc:.3f})"
        )


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney estimate of P(positive > negative) (ties count half)."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def choose_concept_latent(
    features: np.ndarray, is_concept: Sequence[bool], eps: float = 1e-6
) -> ConceptChoice:
    """Rank latents by how well "fires somewhere in the text" detects concept texts (Youden's J on the
    rows of `features` [N, d_sae], per-text mean activations, which are > 0 exactly when the latent
    fired), ties broken by d' of the mean activations, and return the best. A latent whose strongest
    use is elsewhere but which also fires on the concept scores low, which a mean-based score misses."""
    labels = np.asarray(is_concept, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("choosing a concept latent needs both concept and non-concept texts")
    pos, neg = features[labels], features[~labels]
    rate_p, rate_n = (pos > 0).mean(0), (neg > 0).mean(0)
    youden = rate_p - rate_n
    mu_p, mu_n = pos.mean(0), neg.mean(0)
    dprime = (mu_p - mu_n) / np.sqrt(0.5 * (pos.var(0) + neg.var(0)) + eps)
    order = np.lexsort((-dprime, -np.round(youden, 9)))
    best = int(order[0])
    return ConceptChoice(
        latent=best,
        score=float(youden[best]),
        rate_concept=float(rate_p[best]),
        rate_other=float(rate_n[best]),
        dprime=float(dprime[best]),
        auroc=auroc(pos[:, best], neg[:, best]),
        ranking=[(int(i), float(youden[i])) for i in order[:10]],
    )
