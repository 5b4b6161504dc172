"""The two SAE training objectives, one function each (SPEC §3.1).

- `reconstruction_step`: FVU (+ optional AuxK) on the residual stream after layer L, read with the
  truncated forward (`lorasae.model.hooks.residual_at`, no layer after L runs) under no_grad.
- `e2e_step`: KL(p_original ‖ p_spliced) summed over positions / batch size. The original final hidden
  states come from a plain forward under no_grad; the spliced forward replaces layer L's output by the
  SAE reconstruction, and gradients reach only the SAE (the model's parameters are frozen). The KL is the
  LoRA trainer's `lorasae.kl.chunked_kl`: with the model's verified LM head (`e2e_head`) the head is
  applied per chunk of positions and no [B, T, V] tensor exists; without one, it runs on full logits.

The reconstruction term is the FVU (`--recon_loss fvu`, the default); a ReLU SAE can instead train on
`--recon_loss sum_sq`: Σ_d (x̂ − x)² per token, averaged over tokens, the term of both SAELens's standard
SAE (`TrainingSAE.training_forward_pass`: `mse_loss(...).sum(dim=-1).mean()`) and train-SAE's VanillaSAE
(`((decoded - x)² · mask).sum() / mask.sum()`), so that a λ (`--sparsity`) taken from either means what
it meant there (tests compare the loss with both on the same weights). FVU = sum_sq / (per-token variance
of the batch), so λ_fvu ≈ λ_sum_sq / Σ_d Var(x_d).

Both return the loss to back-propagate and a `StepStats` of sums that add up over data-parallel ranks.
In data-parallel training DDP averages gradients over the W ranks, so each rank's loss is scaled to make
that average the gradient of the global batch's loss: FVU uses the global batch's total variance as
denominator (times W), and the KL's division by the local batch size is already the right scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lorasae.core.losses import squared_error, total_variance
from lorasae.kl import LogitHead, chunked_kl, final_hidden, verified_head
from lorasae.model.hooks import residual_at, splice
from lorasae.sae import SaeOutput
from lorasae.train.distributed import all_reduce_sum, global_total_variance, is_distributed
from lorasae.train.options import RECON_LOSSES


@dataclass
class StepStats:
    """Per-rank sums for logging: reduce with `as_tensor` + all-reduce."""

    loss: Tensor  # this rank's contribution to the global loss (global loss = sum over ranks)
    squared_error: Tensor  # ‖x̂ − x‖² summed over this rank's tokens
    total_variance: Tensor  # Σ‖x − mean‖² with the global mean (the same value on every rank)
    active: Tensor  # Σ over tokens of the number of non-zero latents
    tokens: int

    def as_tensor(self, world_size: int) -> Tensor:
        """[loss, squared error, active, tokens] for an all-reduce sum; the total variance is already global."""
        return torch.stack(
            [
                self.loss.detach().double() / world_size,
                self.squared_error.detach().double(),
                self.active.detach().double(),
                torch.tensor(float(self.tokens), dtype=torch.float64, device=self.loss.device),
            ]
        )


def _variance_denominator(x: Tensor) -> tuple[Tensor, Tensor, int]:
    """(local total variance, global total variance, world size) of activations x [N, d]."""
    local = total_variance(x)
    if not is_distributed():
        return local, local, 1
    return local, global_total_variance(x), torch.distributed.get_world_size()


def _sae_losses(
    x: Tensor,
    out: SaeOutput,
    auxk_alpha: float,
    sparsity_coef: float = 0.0,
    recon_loss: str = "fvu",
    target: Tensor | None = None,
) -> tuple[Tensor, StepStats]:
    """The reconstruction term (FVU, or with `recon_loss="sum_sq"` the squared error summed over d and
    averaged over tokens) + weighted AuxK + λ·L1 for ReLU SAEs whose output has `l1`, scaled for data
    parallelism, and the step's sums. The L1 and sum_sq terms are means over this rank's tokens: DDP's
    gradient average over ranks already makes them the global batch's mean. `target`: the rows the SAE
    reconstructs when they are not its input `x` (a transcoder's MLP output; the SAE was given it). In one
    process the term is the SAE's own: `out.recon` where its output has one (`lorasae.sae.coder`:
    Matryoshka's sum of prefix FVUs), else `out.fvu`."""
    y = x if target is None else target
    local_var, global_var, world = _variance_denominator(y)
    err = squared_error(y, out.x_hat)
    if recon_loss == "sum_sq":
        loss = err / x.shape[0]
    elif recon_loss == "fvu":
        loss = (getattr(out, "recon", out.fvu) if world == 1 else err / global_var) * world
    else:
        raise ValueError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {recon_loss!r}")
    if auxk_alpha > 0:
        loss = loss + auxk_alpha * out.auxk_loss * (local_var / global_var) * world
    if sparsity_coef > 0 and hasattr(out, "l1"):
        loss = loss + sparsity_coef * out.l1
    active = (out.top_acts > 0).sum()
    return loss, StepStats(loss.detach(), err.detach(), global_var.detach(), active, x.shape[0])


def reconstruction_step(
    model: nn.Module,
    sae: nn.Module,
    input_ids: Tensor,
    layer: int,
    auxk_alpha: float,
    dead_mask: Tensor | None,
    sparsity_coef: float = 0.0,
    recon_loss: str = "fvu",
) -> tuple[Tensor, SaeOutput, StepStats]:
    """Local objective: FVU (or `recon_loss`) of the SAE on layer `layer`'s residual stream (+ λ·L1 for a
    ReLU SAE)."""
    with torch.no_grad():
        hidden = residual_at(model, input_ids, layer)
    x = hidden.reshape(-1, hidden.shape[-1]).float()
    out: SaeOutput = sae(x, dead_mask)
    loss, stats = _sae_losses(x, out, auxk_alpha, sparsity_coef, recon_loss)
    return loss, out, stats


def e2e_head(model: nn.Module, sample_ids: Tensor) -> LogitHead | None:
    """The LM head `e2e_step` applies chunk by chunk, checked once against the model's logits on
    `sample_ids`; None (with a warning) when the logits are not `head(final hidden states)`."""
    head = verified_head(model, sample_ids)
    if head is None:
        warnings.warn(
            f"{type(model).__name__}: the LM head is not a plain linear layer over the final hidden states; "
            "the e2e KL is computed from full [B, T, V] logits (in chunks of positions).",
            stacklevel=2,
        )
    return head


def e2e_step(
    model: nn.Module,
    sae: nn.Module,
    input_ids: Tensor,
    layer: int,
    auxk_alpha: float,
    dead_mask: Tensor | None,
    head: LogitHead | None = None,
    chunk_size: int | None = None,
    sparsity_coef: float = 0.0,
    mse_weight: float = 0.0,
) -> tuple[Tensor, SaeOutput, StepStats]:
    """End-to-end objective: KL(p_original ‖ p_spliced), summed over positions / batch size
    (+ `mse_weight` · the FVU of the SAE on the spliced layer's residual: KL fine-tuning's KL + MSE mix).

    `head` (from `e2e_head`, resolved once per run): the KL is taken from the final hidden states with
    the head applied per chunk of `chunk_size` positions (default: about 128 MiB of logits); without it,
    from the full logits."""

    seen: dict[str, object] = {}

    def reconstruct(hidden: Tensor) -> Tensor:
        x = hidden.reshape(-1, hidden.shape[-1]).float()
        out = sae(x, dead_mask)
        seen["x"], seen["out"] = x, out
        return out.x_hat.reshape(hidden.shape).to(hidden.dtype)

    loss = kl_to_original(model, input_ids, {layer: reconstruct}, head, chunk_size)
    x, out = seen["x"], seen["out"]
    assert isinstance(x, Tensor) and hasattr(out, "x_hat")  # a TopK SaeOutput or a ReLU SAE's ReluOutput
    return kl_step_terms(loss, x, out, auxk_alpha, sparsity_coef, mse_weight)


def kl_to_original(
    model: nn.Module,
    input_ids: Tensor,
    fns: dict[int, Callable],
    head: LogitHead | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """KL(p_original ‖ p_spliced) summed over positions / batch size, the model spliced with `fns`
    (`lorasae.model.hooks.splice`: a residual or, marked `splice_site = "mlp"`, an MLP-output splice);
    with `head`, from final hidden states with the head applied per chunk of positions."""

    def outputs() -> Tensor:
        if head is not None:
            return final_hidden(model, input_ids)
        return model(input_ids=input_ids, use_cache=False).logits

    with torch.no_grad():
        original = outputs()
    with splice(model, fns):
        spliced = outputs()
    return chunked_kl(spliced, original, head=head, chunk_size=chunk_size)


def kl_step_terms(
    kl: Tensor,
    x: Tensor,
    out: Any,
    auxk_alpha: float,
    sparsity_coef: float,
    mse_weight: float,
    target: Tensor | None = None,
) -> tuple[Tensor, Any, StepStats]:
    """The KL step's loss: `kl` + weighted AuxK + λ·L1 + `mse_weight` · FVU of the dictionary's output
    `out` on its rows (`x`, or `target` for a transcoder, whose input x is the MLP's input), the FVU and
    AuxK with the global variance as denominator (× W) as the local objective's; and the step's sums."""
    y = x if target is None else target
    with torch.no_grad():
        _, stats = _sae_losses(x, out, 0.0, target=target)
    loss = kl
    if auxk_alpha > 0:
        local_var, global_var, world = _variance_denominator(y)
        loss = loss + auxk_alpha * out.auxk_loss * (local_var / global_var) * world
    if sparsity_coef > 0 and hasattr(out, "l1"):
        loss = loss + sparsity_coef * out.l1
    if mse_weight > 0:
        local_var, global_var, world = _variance_denominator(y)
        loss = loss + mse_weight * squared_error(y, out.x_hat) / global_var * world
    stats.loss = loss.detach()
    return loss, out, stats


# --- the objective parts handed to the training loop (`sae_trainer.SaeTrainer`) ----------------------
@dataclass
class StepOutput:
    """One step's forward: the loss to back-propagate and what the loop needs besides."""

    loss: Tensor
    global_loss: float  # the loss over every rank (checked finite before the backward pass)
    fired_acts: Tensor  # activations and latent indices of the step: which latents fired
    fired_idx: Tensor
    tokens: int  # tokens of the step over every rank (dead-latent counting)
    metrics: dict[str, float]  # logged first (loss, fvu, ..., l0)
    extra: dict[str, float]  # logged after dead_frac, lr and grad_norm (the L1 and its λ)
    out: Any = None  # the SAE's own output (the architecture's `after_update` hook reads it)


def _layer_output(
    loss: Tensor, out: Any, stats: StepStats, world_size: int, l1: bool, l1_coef: float
) -> StepOutput:
    """The step's global sums (all-reduced over ranks) as a `StepOutput` of a single-layer SAE."""
    totals = all_reduce_sum(stats.as_tensor(world_size))
    metrics = {
        "loss": float(totals[0]),
        "fvu": float(totals[1] / stats.total_variance),
        "l0": float(totals[2] / totals[3]),
    }
    extra = {"l1": float(out.l1.detach()), "l1_coef": l1_coef} if l1 else {}
    return StepOutput(loss, metrics["loss"], out.top_acts, out.top_idx, int(totals[3]), metrics, extra, out)


class ReconstructionObjective:
    """FVU (or --recon_loss sum_sq) of the SAE on its rows, + AuxK, + λ·L1 for SAEs with an L1 term;
    `sparsity(step)` is λ at that step (0 without an L1 term). The forward runs under `autocast()`
    (`lorasae.core.precision.sae_autocast`: bf16 on CUDA with a bf16 model). Rows are a tensor x (reconstruct
    x) or a pair (x, target) (reconstruct target from x: a transcoder's (MLP input, MLP output))."""

    def __init__(
        self,
        auxk_alpha: float,
        recon_loss: str,
        sparsity: Callable[[int], float],
        l1: bool,
        autocast: Callable[[], AbstractContextManager],
    ):
        self.auxk_alpha, self.recon_loss, self.sparsity, self.l1 = auxk_alpha, recon_loss, sparsity, l1
        self.autocast = autocast

    def __call__(
        self, sae: nn.Module, rows: Tensor | tuple[Tensor, Tensor], step: int, dead_mask: Tensor | None,
        world_size: int,
    ) -> StepOutput:  # fmt: skip
        x, target = rows if isinstance(rows, tuple) else (rows, None)
        coef = self.sparsity(step)
        with self.autocast():
            out = sae(x, dead_mask) if target is None else sae(x, dead_mask, target=target)
            loss, stats = _sae_losses(x, out, self.auxk_alpha, coef, self.recon_loss, target)
        return _layer_output(loss, out, stats, world_size, self.l1, coef)


class E2eObjective:
    """KL(p_original ‖ p_spliced) with the SAE spliced at `layer` (+ AuxK, + λ·L1): `e2e_step` on token ids."""

    def __init__(
        self,
        model: nn.Module,
        layer: int,
        head: LogitHead | None,
        auxk_alpha: float,
        sparsity: Callable[[int], float],
        l1: bool,
        autocast: Callable[[], AbstractContextManager],
        step_fn: Callable[..., tuple[Tensor, Any, StepStats]] | None = None,
        mse_weight: float = 0.0,
    ):
        """`step_fn`: the KL step (default `e2e_step`; tests record it). `mse_weight`: w of the FVU term
        added to the KL (`--kl_mse_weight`; KL fine-tuning's KL + w·FVU, Karvonen arXiv 2503.17272)."""
        self.model, self.layer, self.head = model, layer, head
        self.auxk_alpha, self.sparsity, self.l1, self.autocast = auxk_alpha, sparsity, l1, autocast
        self.step_fn = step_fn or e2e_step
        self.mse_weight = mse_weight

    def __call__(
        self, sae: nn.Module, input_ids: Tensor, step: int, dead_mask: Tensor | None, world_size: int
    ) -> StepOutput:
        coef = self.sparsity(step)
        with self.autocast():
            loss, out, stats = self.step_fn(
                self.model, sae, input_ids, self.layer, self.auxk_alpha, dead_mask, head=self.head,
                sparsity_coef=coef, **({"mse_weight": self.mse_weight} if self.mse_weight else {}),
            )  # fmt: skip
        return _layer_output(loss, out, stats, world_size, self.l1, coef)
