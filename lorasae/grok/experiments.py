"""The seed's grokking experiments (cc_first-<task>.ipynb, viz_*.ipynb), one implementation for every task:

- latents that differ most between the pre- and post-generalization checkpoints (`differing_latents`;
  the crosscoder's view: `relative_decoder_norms`);
- clamping latents through the SAE splice while training continues from the pre-generalization checkpoint
  (`clamp_fn`, `continue_training`, `clamp_study`): the selected latents against as many random live ones,
  over several seeds (the seed's "steering drops in generalization");
- attribution of a latent to the input tokens (`token_attribution`, gradient × embedding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lorasae.grok_world.train import Curves, GrokTrainConfig, evaluate, load_checkpoint, train_steps
from lorasae.model.hooks import SpliceFn, splice
from lorasae.sae import TopKSAE


@torch.no_grad()
def differing_latents(sae: TopKSAE, acts_pre: Tensor, acts_post: Tensor) -> tuple[Tensor, Tensor]:
    """(latent indices sorted by score, scores): score = mean activation on the post-generalization
    activations − mean activation on the pre-generalization ones (the same SAE encodes both)."""
    score = sae.encode(acts_post).mean(0) - sae.encode(acts_pre).mean(0)
    return score.argsort(descending=True), score


@torch.no_grad()
def relative_decoder_norms(coder: nn.Module, scales: list[float] | None = None) -> Tensor:
    """‖W_dec[post]_i‖ / (‖W_dec[pre]_i‖ + ‖W_dec[post]_i‖) of a 2-source crosscoder (sources pre, post):
    ≈ 1 for latents only the post-generalization model has, ≈ 0 for pre-only ones, ≈ 0.5 for shared.
    With `scales` (each source's mean activation norm), each source's norms are divided by its scale
    first, so a source that is smaller overall (the post residual, from weight decay) is not read as
    every latent leaning pre."""
    norms = coder.decoder_norms()
    if scales is not None:
        norms = norms / torch.tensor(scales, dtype=norms.dtype, device=norms.device)[:, None]
    return norms[1] / norms.sum(0).clamp_min(1e-12)


def clamp_fn(sae: TopKSAE, latents: Tensor, value: float = 0.0) -> SpliceFn:
    """Splice function setting `latents` of `sae` to `value` at the answer (last) position, keeping the SAE's
    error: h' = h + Σ_{i ∈ latents} (value − z_i(h)) W_dec[i]. Other positions and latents are untouched;
    gradients flow through z(h) into the model (the SAE itself stays frozen)."""
    latents = latents.long()

    def fn(h: Tensor) -> Tensor:
        last = h[:, -1]
        z = sae.encode(last.to(sae.dtype))[:, latents]
        delta = (value - z) @ sae.W_dec[latents]
        return torch.cat([h[:, :-1], (last + delta.to(h.dtype)).unsqueeze(1)], dim=1)

    return fn


@dataclass
class ClampResult:
    condition: str  # "none", "targeted" or "random"
    seed: int | None
    latents: list[int]
    curves: Curves  # evaluated with the clamp in place
    final_test_acc_unclamped: float  # the same final model evaluated without the clamp
    final_train_acc_unclamped: float

    @property
    def final_test_acc(self) -> float:
        return self.curves.test_acc[-1]

    def to_dict(self) -> dict:
        return {**asdict(self), "final_test_acc": self.final_test_acc}


def continue_training(
    cfg: GrokTrainConfig,
    checkpoint: Path,
    data: dict[str, tuple[Tensor, Tensor]],
    end_step: int,
    splice_fns: dict[int, SpliceFn] | None = None,
    desc: str = "continue",
) -> tuple[nn.Module, Curves]:
    """Resume the run from `checkpoint` (model + optimizer state) up to `end_step`, with `splice_fns` in
    place during every forward (training and evaluation). Without splices this reproduces the run."""
    model, optimizer, state = load_checkpoint(checkpoint, cfg)
    for param in model.parameters():
        param.requires_grad_(True)
    with splice(model, splice_fns or {}):
        curves = train_steps(model, optimizer, data, int(state["step"]), end_step, cfg.eval_every, desc=desc)
    return model, curves


def clamp_study(
    cfg: GrokTrainConfig,
    checkpoint: Path,
    sae: TopKSAE,
    layer: int,
    targeted: Tensor,
    candidates: Tensor,
    end_step: int,
    seeds: int = 3,
    value: float = 0.0,
    include_baseline: bool = True,
) -> list[ClampResult]:
    """Continue training from `checkpoint` to `end_step` three ways: no clamp (unless not
    `include_baseline`: the run's own curve is that baseline, as continuing without a splice reproduces
    it); `targeted` latents clamped; as many latents drawn at random from `candidates` clamped (one run
    per seed)."""
    data = cfg.task.datasets()
    for param in sae.parameters():
        param.requires_grad_(False)
    conditions: list[tuple[str, int | None, Tensor | None]] = [("targeted", None, targeted)]
    if include_baseline:
        conditions.insert(0, ("none", None, None))
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        conditions.append(
            ("random", seed, candidates[torch.randperm(len(candidates), generator=gen)[: len(targeted)]])
        )
    results = []
    for condition, seed, latents in conditions:
        fns = None if latents is None else {layer: clamp_fn(sae, latents, value)}
        label = condition if seed is None else f"{condition}-{seed}"
        model, curves = continue_training(cfg, checkpoint, data, end_step, fns, desc=f"clamp {label}")
        plain = evaluate(model, data)
        results.append(
            ClampResult(
                condition,
                seed,
                [] if latents is None else [int(i) for i in latents],
                curves,
                plain["test_acc"],
                plain["train_acc"],
            )
        )
        print(
            f"[grok] clamp {label}: test acc {curves.test_acc[-1]:.3f} with the clamp, "
            f"{plain['test_acc']:.3f} without (step {curves.step[-1]})"
        )
    return results


def token_attribution(
    model: nn.Module, sae: TopKSAE, input_ids: Tensor, layer: int, latents: Tensor
) -> Tensor:
    """Gradient × input embedding of each latent's activation at the answer position, summed over the
    embedding dimensions: [len(latents), N, T] (how much each input token drives the latent)."""
    model.eval()
    embeds = model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
    captured: dict[str, Tensor] = {}

    def capture(h: Tensor) -> Tensor:
        captured["h"] = h
        return h

    with splice(model, {layer: capture}):
        model(inputs_embeds=embeds, use_cache=False)
    z = sae.encode(captured["h"][:, -1].to(sae.dtype))
    rows = []
    for i in latents.tolist():
        (grad,) = torch.autograd.grad(z[:, i].sum(), embeds, retain_graph=True)
        rows.append((grad * embeds).sum(-1).detach())
    return torch.stack(rows)
