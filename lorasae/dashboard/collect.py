"""What a dashboard shows about latents, collected in one streaming pass over token chunks per model.

`collect_stats` runs the model to the SAE's layer (the residual after it; a transcoder's MLP input:
`lorasae.sae.capabilities.sae_input_at`), encodes with the SAE and
keeps, for every latent: how many tokens it fires on (activation > 0), the sum of its activations, a
histogram of log10(activation) over the tokens it fires on, and its `n_top` top sequences (by the
sequence's maximum activation, with the position of that maximum). Special tokens (BOS, EOS, PAD) count
as no token: their activations are dropped, as Neuronpedia drops BOS.

`collect_contexts` then re-encodes only the top sequences of the chosen latents and cuts a window of
tokens around each maximum (`Context`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lorasae.sae.capabilities import sae_input_at

HIST_EDGES = np.linspace(-3.0, 3.0, 61)
"""Bin edges of the activation histogram in log10(activation): 1e-3 … 1e3, ten bins per decade (values
outside fall into the first or last bin)."""


@dataclass
class LatentStats:
    """Per-latent statistics of one model over `num_tokens` tokens (special tokens excluded)."""

    num_tokens: int
    counts: np.ndarray
    """[n_latents] tokens on which the latent fires (activation > 0)."""
    sums: np.ndarray
    """[n_latents] sum of the latent's positive activations."""
    hist: np.ndarray
    """[n_latents, len(HIST_EDGES) - 1] histogram of log10(activation) over the tokens it fires on."""
    top_values: np.ndarray
    """[n_top, n_latents] the top sequences' maximum activation, descending (0: no such sequence)."""
    top_seqs: np.ndarray
    """[n_top, n_latents] their chunk index (-1: none)."""
    top_pos: np.ndarray
    """[n_top, n_latents] the position of the maximum in the chunk."""

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of tokens on which each latent fires (Neuronpedia's `density`)."""
        return self.counts / max(self.num_tokens, 1)

    @property
    def mean_active(self) -> np.ndarray:
        """Mean activation over the tokens where the latent fires (0 for a latent that never fires)."""
        return np.divide(self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0)

    def top_set(self, latent: int) -> set[int]:
        """The chunk indices of the latent's top sequences (those where it fires)."""
        keep = self.top_values[:, latent] > 0
        return {int(s) for s in self.top_seqs[keep, latent]}


def _batches(chunks: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    for start in range(0, len(chunks), batch_size):
        yield start, chunks[start : start + batch_size]


def encode_batch(
    model: nn.Module, sae, layer: int, ids: torch.Tensor, special: Sequence[int]
) -> torch.Tensor:
    """[B, T, n_latents] SAE activations (float32, on the CPU) of a batch of chunks; 0 on special tokens."""
    device = next(model.parameters()).device
    with torch.no_grad():
        hidden = sae_input_at(sae, model, ids.to(device), layer)  # a transcoder's: the MLP input
        sae_param = next(iter(sae.parameters()), None) if hasattr(sae, "parameters") else None
        if sae_param is not None:
            hidden = hidden.to(sae_param.device, sae_param.dtype)
        acts = sae.encode(hidden).float().cpu()
    if special:
        acts[torch.isin(ids.cpu(), torch.tensor(list(special)))] = 0.0
    return acts


def collect_stats(
    model: nn.Module,
    sae,
    layer: int,
    chunks: torch.Tensor,
    batch_size: int,
    special: Sequence[int] = (),
    n_top: int = 20,
    progress: bool = True,
    variant: Callable[[], AbstractContextManager] = nullcontext,
    label: str = "latents",
) -> LatentStats:
    """One pass over `chunks` [N, T] (under `variant()`, e.g. the adapter disabled) → `LatentStats`."""
    n_bins = len(HIST_EDGES) - 1
    edges = torch.tensor(HIST_EDGES[1:-1], dtype=torch.float32)
    n_latents = None
    num_tokens = 0
    bar = tqdm(total=len(chunks), desc=f"{label}: encoding", unit="seq", disable=not progress)
    with variant():
        for start, ids in _batches(chunks, batch_size):
            acts = encode_batch(model, sae, layer, ids, special).clamp_(min=0.0)
            if n_latents is None:
                n_latents = acts.shape[-1]
                counts = torch.zeros(n_latents, dtype=torch.float64)
                sums = torch.zeros(n_latents, dtype=torch.float64)
                hist = torch.zeros(n_latents * n_bins, dtype=torch.float64)
                top_values = torch.zeros(n_top, n_latents)
                top_seqs = torch.full((n_top, n_latents), -1, dtype=torch.long)
                top_pos = torch.zeros(n_top, n_latents, dtype=torch.long)
            num_tokens += (
                int((~torch.isin(ids, torch.tensor(list(special)))).sum()) if special else ids.numel()
            )
            counts += (acts > 0).sum((0, 1)).double()
            sums += acts.sum((0, 1)).double()
            b, t, latent = acts.nonzero(as_tuple=True)
            bins = torch.bucketize(acts[b, t, latent].log10(), edges)
            hist.index_add_(0, latent * n_bins + bins, torch.ones_like(bins, dtype=torch.float64))
            seq_max, seq_pos = acts.max(dim=1)  # [B, n_latents]
            seq_ids = torch.arange(start, start + len(ids)).unsqueeze(1).expand_as(seq_pos)
            values = torch.cat([top_values, seq_max])
            top_values, order = values.topk(min(n_top, len(values)), dim=0)
            top_seqs = torch.cat([top_seqs, seq_ids]).gather(0, order)
            top_pos = torch.cat([top_pos, seq_pos]).gather(0, order)
            bar.update(len(ids))
    bar.close()
    if n_latents is None:
        raise ValueError("no token chunks to collect statistics on")
    top_seqs[top_values <= 0] = -1
    return LatentStats(
        num_tokens=num_tokens,
        counts=counts.numpy(),
        sums=sums.numpy(),
        hist=hist.view(n_latents, n_bins).numpy(),
        top_values=top_values.numpy(),
        top_seqs=top_seqs.numpy(),
        top_pos=top_pos.numpy(),
    )


@dataclass
class Context:
    """A window of tokens around a latent's maximum in one chunk, with the latent's activation on each."""

    seq: int
    position: int
    """The position of the maximum within the window."""
    token_ids: list[int]
    values: list[float]

    @property
    def max_value(self) -> float:
        return max(self.values) if self.values else 0.0


def collect_contexts(
    model: nn.Module,
    sae,
    layer: int,
    chunks: torch.Tensor,
    stats: LatentStats,
    latents: Sequence[int],
    batch_size: int,
    special: Sequence[int] = (),
    left: int = 16,
    right: int = 4,
    variant: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[int, list[Context]]:
    """For each latent, its top sequences (by maximum activation, descending) as windows of `left` tokens
    before and `right` after the maximum, re-encoded under `variant()`."""
    wanted = sorted({s for latent in latents for s in stats.top_set(latent)})
    select = torch.tensor(list(latents), dtype=torch.long)
    per_seq: dict[int, np.ndarray] = {}
    with variant():
        for start, _ in _batches(torch.tensor(wanted), batch_size):
            seqs = wanted[start : start + batch_size]
            ids = chunks[seqs]
            acts = encode_batch(model, sae, layer, ids, special).index_select(-1, select).clamp_(min=0.0)
            for row, seq in enumerate(seqs):
                per_seq[seq] = acts[row].numpy()  # [T, len(latents)]
    out: dict[int, list[Context]] = {}
    for column, latent in enumerate(latents):
        contexts = []
        for rank in range(stats.top_values.shape[0]):
            seq = int(stats.top_seqs[rank, latent])
            if seq < 0:
                continue
            pos = int(stats.top_pos[rank, latent])
            lo, hi = max(0, pos - left), min(chunks.shape[1], pos + right + 1)
            contexts.append(
                Context(
                    seq=seq,
                    position=pos - lo,
                    token_ids=[int(i) for i in chunks[seq, lo:hi]],
                    values=[round(float(v), 4) for v in per_seq[seq][lo:hi, column]],
                )
            )
        out[latent] = contexts
    return out


__all__ = ["HIST_EDGES", "Context", "LatentStats", "collect_contexts", "collect_stats", "encode_batch"]
