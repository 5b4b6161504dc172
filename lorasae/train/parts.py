"""The parts one training run hands to the loop (`sae_trainer.SaeTrainer`), chosen from its config and
its architecture's registry entry (`lorasae.sae.registry`):

| run | rows | objective | curve |
|---|---|---|---|
| one layer (topk, relu, ...) | `LayerRows` (residual, harvested) | `ReconstructionObjective` | `SplicedCurve` |
| `--e2e` | `LayerRows` (token ids) | `E2eObjective` (KL) | `SplicedCurve` |
| `--objective kl --init_sae S` | `LayerRows` (token ids) | `E2eObjective` (KL + w·FVU) from S | `SplicedCurve` |
| `--hidden_modification` | `LayerRows` (f(x), harvested) | `ReconstructionObjective` | `TargetFvuCurve` |
| registry `rows="mlp"` (transcoders) | `MlpRows` (MLP in, MLP out) | `ReconstructionObjective` | `TranscoderCurve` |
| `rows="mlp"`, `--objective kl --init_sae T` | `MlpTokenIds` (token ids) | `E2eObjective` (`transcoder_kl_step`) | `TranscoderCurve` |
| registry `rows="sources"` (crosscoder) | `Sources` | `CrosscoderObjective` | `CrosscoderCurve` |

Persistence (`persistence.Persistence`) is the same for every run. A new architecture whose rows are one
layer's needs nothing here; one with other rows adds a row here (as the transcoders' `transcoder_parts`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from lorasae.core.precision import sae_autocast
from lorasae.sae.registry import Architecture
from lorasae.train.architecture import step_sparsity, uses_sparsity
from lorasae.train.config import TrainSaeConfig
from lorasae.train.crosscoder_parts import CrosscoderCurve, CrosscoderObjective, Sources, check_supported
from lorasae.train.curve import FinalStats, SplicedCurve
from lorasae.train.distributed import DistInfo
from lorasae.train.harvest import default_harvest_steps
from lorasae.train.modification import HiddenModification, load_modification, plain_rows
from lorasae.train.modified_parts import TargetFvuCurve, check_one_process, modification_rows
from lorasae.train.objectives import E2eObjective, ReconstructionObjective, StepOutput, e2e_head
from lorasae.train.result import TrainResult


class Rows(Protocol):
    """What the SAE reads: b_dec's initialisation and the stream of each step's inputs."""

    def init_b_dec(self, sae: nn.Module, first_local_batch: Tensor) -> None: ...
    def stream(self, batches: Any, steps: int) -> Any: ...


class Objective(Protocol):
    """One step's forward and loss on the rows' input for `step` (0-based)."""

    def __call__(
        self, sae: nn.Module, batch: Any, step: int, dead_mask: Tensor | None, world_size: int
    ) -> StepOutput: ...


class Curve(Protocol):
    """What a curve point measures, the original model's value, and the final statistics."""

    label: str
    name: str
    metadata: str

    def prepare(self) -> None: ...
    def value(self) -> float: ...
    def base(self) -> float | None: ...
    def final(self) -> FinalStats: ...
    def report(self, result: TrainResult) -> None: ...


@dataclass
class RunContext:
    """What the parts are built from: the resolved config, the model and data, the fresh SAE."""

    cfg: TrainSaeConfig
    entry: Architecture
    model: nn.Module
    sae: nn.Module
    curve_val: Tensor
    """The curve points' validation chunks (--curve_val_tokens)."""
    val: Tensor
    """The final statistics' validation chunks (--final_val_tokens)."""
    special_ids: list[int]
    info: DistInfo
    device: torch.device
    autocast: bool


@dataclass
class Parts:
    rows: Rows
    objective: Objective
    curve: Curve


def assemble(
    ctx: RunContext,
    source_models: list[nn.Module] | None = None,
    modification: HiddenModification | None = None,
    e2e_fn: Callable | None = None,
) -> Parts:
    """The rows, objective and curve of the run in `ctx` (the table in this module's docstring);
    `e2e_fn` replaces `objectives.e2e_step` (the training loop passes its module's, which tests record)."""
    cfg = ctx.cfg
    sparsity = functools.partial(step_sparsity, cfg)
    if ctx.entry.rows == "sources":
        check_supported(cfg, ctx.info)
        sources = Sources(cfg, ctx.model, source_models, ctx.sae, ctx.info, ctx.device)
        curve = CrosscoderCurve(cfg, sources, ctx.sae, ctx.curve_val, ctx.val)
        return Parts(sources, CrosscoderObjective(sources.keys, sparsity), curve)
    autocast = functools.partial(sae_autocast, ctx.device, ctx.autocast)
    l1 = uses_sparsity(cfg)
    if ctx.entry.rows == "mlp":
        from lorasae.train import transcoder_parts as tc

        tc.check_supported(cfg)
        if cfg.trains_on_kl:  # --objective kl: the KL with the MLP output spliced + w·FVU of the MLP output
            head = e2e_head(ctx.model, ctx.val[:1, :16].to(ctx.device))
            rows = tc.MlpTokenIds(ctx.model, cfg.layer, ctx.info, ctx.device)
            objective = E2eObjective(ctx.model, cfg.layer, head, cfg.auxk_alpha, sparsity, l1, autocast,
                                     tc.transcoder_kl_step, cfg.mse_weight)  # fmt: skip
        else:
            rows = tc.MlpRows(ctx.model, cfg.layer, ctx.info, ctx.device)
            objective = ReconstructionObjective(cfg.auxk_alpha, "fvu", sparsity, l1, autocast)
        curve_args = (cfg, ctx.model, ctx.sae, ctx.curve_val, ctx.val, ctx.special_ids, ctx.info)
        return Parts(rows, objective, tc.TranscoderCurve(*curve_args, plain_rows, ctx.entry.reuses_prefix))
    if ctx.entry.rows != "layer":
        raise ValueError(f"architecture {ctx.entry.name}: train_sae.py has no rows {ctx.entry.rows!r} yet")
    from lorasae.train.rows import LayerRows

    curve_args = (cfg, ctx.model, ctx.sae, ctx.curve_val, ctx.val, ctx.special_ids, ctx.info)
    harvest = cfg.harvest_steps or default_harvest_steps(ctx.device, cfg.tokens_per_step)
    if cfg.kind == "modified":
        check_one_process(ctx.info)
        found = modification or load_modification(cfg, ctx.sae.cfg.d_in, ctx.device)
        rows_fn = modification_rows(found, ctx.special_ids, ctx.device).rows
        rows = LayerRows(ctx.model, cfg.layer, cfg.position_index, rows_fn, ctx.info, ctx.device, harvest)
        objective = ReconstructionObjective(cfg.auxk_alpha, cfg.sae_kwargs.recon_loss, sparsity, l1, autocast)
        return Parts(rows, objective, TargetFvuCurve(*curve_args, rows_fn))
    curve = SplicedCurve(*curve_args, plain_rows, ctx.entry.reuses_prefix)
    if cfg.trains_on_kl:  # --e2e, or --objective kl: the same objective from --init_sae's weights
        # the KL applies the LM head per chunk of positions (no [B, T, V] logits), as LoRA training does
        head = e2e_head(ctx.model, ctx.val[:1, :16].to(ctx.device))
        rows = LayerRows(ctx.model, cfg.layer, cfg.position_index, plain_rows, ctx.info, ctx.device, None)
        objective = E2eObjective(
            ctx.model, cfg.layer, head, cfg.auxk_alpha, sparsity, l1, autocast, e2e_fn, cfg.mse_weight
        )
        return Parts(rows, objective, curve)
    rows = LayerRows(ctx.model, cfg.layer, cfg.position_index, plain_rows, ctx.info, ctx.device, harvest)
    objective = ReconstructionObjective(cfg.auxk_alpha, cfg.sae_kwargs.recon_loss, sparsity, l1, autocast)
    return Parts(rows, objective, curve)
