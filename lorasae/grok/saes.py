"""What the grokking study reads off its SAEs: the answer-position activations over every (a, b) problem
and the latent statistics of codes.

The SAEs and the crosscoder themselves are trained by `train_sae.py` (`lorasae.grok.study.train_grok_sae`,
configs `configs/grok-*.json`) on the train problems at the answer position (`--dataset grok:<task>
--positions -2`); `answer_activations` is the same residual over all problems, for the study's
measurements and figures (tests check that train_sae.py's harvest equals it on the same problems).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lorasae.model.hooks import residual_at


@torch.no_grad()
def answer_activations(model: nn.Module, input_ids: Tensor, layer: int, batch_size: int = 4096) -> Tensor:
    """Residual stream after decoder layer `layer` at the last position of `a b =` rows, [N, d_model]."""
    model.eval()
    return torch.cat(
        [residual_at(model, chunk, layer)[:, -1] for chunk in input_ids.split(batch_size)]
    ).float()


@torch.no_grad()
def latent_stats(z: Tensor) -> dict[str, float]:
    """L0 (mean active latents per problem) and the share of latents that never fire, of latents z [N, m]."""
    active = z > 0
    return {
        "l0": float(active.sum(1).float().mean()),
        "dead_fraction": float((~active.any(0)).float().mean()),
    }
