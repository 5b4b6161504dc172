"""Why the e2e speed-up grows with the model: the per-token cost of an e2e SAE step over a TopK SAE step,
predicted from FLOPs and measured with the project's two training objectives
(`lorasae.train.objectives.reconstruction_step` / `e2e_step`, each with its backward and optimizer step).

Per token, with P(a…b) the FLOPs-counting parameters of decoder layers a…b (attention and MLP matrices;
attention scores add 4·T·d per layer at context T) and H the LM head (V·d):
- TopK: the truncated forward to layer L under no_grad (2·B, B = P(0…L)) plus the SAE step S;
- e2e: the clean forward (2·(B + A), A = P(L+1…n−1) + H), the spliced forward (2·(B + A)), the
  backward through the layers after the SAE to the SAE (inputs only, the model is frozen: 2·A), plus S.
So e2e / TopK = (4B + 6A + S) / (2B + S), which grows with A / B, the cost of the layers after the SAE
relative to those before it. S = 6·d·m (the dense encoder, forward and backward) + 6·k·d (the sparse
decoder). The e2e speed-up of SPEC §3.3 is this per-token cost ratio times the ratio of tokens the two
routes need to reach a CE; the second factor is what the demo's curves measure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dims:
    d_model: int
    d_ff: int
    n_layers: int
    vocab: int
    ctx: int


def layer_flops(d: Dims) -> float:
    """Forward FLOPs per token of one Llama decoder layer: q, k, v, o (4·d²), the gated MLP (3·d·d_ff),
    times 2, plus attention scores and weighted values (2·2·T·d, T the context)."""
    return 2.0 * (4 * d.d_model**2 + 3 * d.d_model * d.d_ff) + 4.0 * d.ctx * d.d_model


def predicted_costs(d: Dims, layer: int, d_sae: int, k: int) -> dict[str, float]:
    """FLOPs per token of a TopK and an e2e SAE step at `layer`, `after_over_before` = A / B and their
    ratio `e2e_over_topk` (module docstring)."""
    before = (layer + 1) * layer_flops(d) / 2  # parameters-equivalent: forward FLOPs / 2
    after = (d.n_layers - layer - 1) * layer_flops(d) / 2 + d.vocab * d.d_model
    sae = 6.0 * d.d_model * d_sae + 6.0 * k * d.d_model
    topk, e2e = 2 * before + sae, 4 * before + 6 * after + sae
    return {
        "after_over_before": after / before,
        "topk_flops": topk,
        "e2e_flops": e2e,
        "e2e_over_topk": e2e / topk,
    }


def dims_of(model: torch.nn.Module, ctx: int) -> Dims:
    c = model.config
    return Dims(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size, ctx)


def measured_costs(
    model: torch.nn.Module, layer: int, k: int, expansion: int, steps: int, batch: int = 8, ctx: int = 128
) -> dict[str, float]:
    """CPU seconds per step of each objective (process time, all threads: a shared machine disturbs it
    far less than wall time; median of `steps` after 2 warm-up steps) on random tokens, with an Adam step
    on a fresh TopK SAE, and their ratio `e2e_over_topk`."""
    from lorasae.train.architecture import build_sae
    from lorasae.train.config import TrainSaeConfig
    from lorasae.train.objectives import e2e_head, e2e_step, reconstruction_step

    device = next(model.parameters()).device
    d = dims_of(model, ctx)
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, d.vocab, (batch, ctx), generator=gen).to(device)
    sae_cfg = TrainSaeConfig(k=k, expansion_factor=expansion, layer=layer)
    head = e2e_head(model, ids[:1])
    out: dict[str, float] = {}
    for name in ("topk", "e2e"):
        torch.manual_seed(0)
        sae = build_sae(sae_cfg, d.d_model, device)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
        times = []
        for step in range(steps + 2):
            start = time.process_time()
            if name == "topk":
                loss, _, _ = reconstruction_step(model, sae, ids, layer, 0.0, None)
            else:
                loss, _, _ = e2e_step(model, sae, ids, layer, 0.0, None, head=head)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= 2:
                times.append(time.process_time() - start)
        out[f"{name}_seconds"] = float(torch.tensor(times).median())
    out["e2e_over_topk"] = out["e2e_seconds"] / out["topk_seconds"]
    return out
