"""SAEs and crosscoders on the grokking model: activations over every (a, b) problem, and training
lorasae's TopKSAE / Crosscoder on them.

The problems are a fixed, small set (p² sequences of 3 tokens), so the SAE data is the residual stream
after decoder layer L at the answer position (the last one: the only position whose residual the answer
is read from) over all of them, held in memory, instead of train_sae.py's packed-text pipeline. Training:
Adam, random minibatches with a seeded generator, b_dec initialised at the geometric median, unit-norm
decoder rows with the parallel gradient removed (as train_sae.py does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lorasae.hooks import residual_at
from lorasae.sae import SaeConfig, TopKSAE, geometric_median
from lorasae.sae.crosscoder import Crosscoder, CrosscoderConfig


@torch.no_grad()
def answer_activations(model: nn.Module, input_ids: Tensor, layer: int, batch_size: int = 4096) -> Tensor:
    """Residual stream after decoder layer `layer` at the last position, [N, d_model]."""
    model.eval()
    return torch.cat(
        [residual_at(model, chunk, layer)[:, -1] for chunk in input_ids.split(batch_size)]
    ).float()


@dataclass
class SaeFitConfig:
    """How the grok SAEs and the crosscoder are trained."""

    expansion_factor: int = 4
    """Latents = d_model × this."""
    k: int = 8
    """Active latents per problem (TopK)."""
    steps: int = 1000
    """Adam steps."""
    batch_size: int = 512
    """Problems per step (sampled from all p² problems)."""
    lr: float = 1e-3
    seed: int = 0


def _fit(
    module: nn.Module,
    n: int,
    loss_fn: Callable[[Tensor], Tensor],
    fit: SaeFitConfig,
    after_backward: Callable[[], None],
    after_step: Callable[[], None],
    desc: str,
) -> None:
    """Adam over random minibatches of `n` examples (indices passed to `loss_fn`)."""
    gen = torch.Generator().manual_seed(fit.seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=fit.lr)
    for _ in tqdm(range(fit.steps), desc=desc, leave=False):
        idx = torch.randint(n, (min(fit.batch_size, n),), generator=gen)
        loss = loss_fn(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        after_backward()
        optimizer.step()
        after_step()


def train_topk_sae(
    acts: Tensor, fit: SaeFitConfig, hook_layer: int, model_name: str | None = None
) -> TopKSAE:
    """A TopKSAE (FVU objective) trained on activations [N, d]."""
    torch.manual_seed(fit.seed)
    d = acts.shape[1]
    sae = TopKSAE(
        SaeConfig(
            d_in=d, d_sae=d * fit.expansion_factor, k=fit.k, model_name=model_name, hook_layer=hook_layer
        )
    )
    sae.b_dec.data = geometric_median(acts).to(sae.dtype)
    _fit(
        sae,
        acts.shape[0],
        lambda idx: sae(acts[idx]).fvu,
        fit,
        sae.remove_gradient_parallel_to_decoder_directions,
        sae.set_decoder_norm_to_unit_norm,
        desc=f"SAE {model_name or ''}",
    )
    return sae.eval()


def train_crosscoder(
    sources: list[Tensor], fit: SaeFitConfig, names: list[str], hook_layers: list[int | None]
) -> Crosscoder:
    """A TopK crosscoder (shared latents, width = d of the first source × expansion) over paired
    activations: row i of every source comes from the same problem."""
    torch.manual_seed(fit.seed)
    cfg = CrosscoderConfig(
        d_in=[x.shape[1] for x in sources],
        d_sae=sources[0].shape[1] * fit.expansion_factor,
        k=fit.k,
        sources=names,
        model_names=names,
        hook_layers=hook_layers,
    )
    coder = Crosscoder(cfg)
    for b, x in zip(coder.b_dec, sources):
        b.data = geometric_median(x).to(coder.dtype)
    _fit(
        coder,
        sources[0].shape[0],
        lambda idx: coder([x[idx] for x in sources]).loss,
        fit,
        lambda: None,
        coder.set_decoder_norm_to_unit_norm,
        desc="crosscoder",
    )
    return coder.eval()


@torch.no_grad()
def latent_stats(z: Tensor) -> dict[str, float]:
    """L0 (mean active latents per problem) and the share of latents that never fire, of latents z [N, m]."""
    active = z > 0
    return {
        "l0": float(active.sum(1).float().mean()),
        "dead_fraction": float((~active.any(0)).float().mean()),
    }
