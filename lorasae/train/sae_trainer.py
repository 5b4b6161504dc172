"""The SAE training loop (SPEC §3.1): one loop for every kind of run, handed its parts (`parts.py`) —
the rows the SAE reads, the objective, the curve — and the run's files (`persistence.py`): warm-up +
decay, clipping, the architecture's per-step hooks (unit-norm decoder with the parallel gradient
removed, ...), the curve points, labelled checkpoints, exact resume, DDP.

`train_sae(cfg)` loads the model and data and runs `SaeTrainer(...).fit()`; tests build the trainer
directly on an in-memory model.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import asdict

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lorasae.core.errors import LorasaeError
from lorasae.core.precision import use_sae_autocast
from lorasae.core.runtime import parse_device, seed_everything, setup_environment
from lorasae.model.ce import masked_lm_inputs
from lorasae.model.data import TokenSplit, load_token_split
from lorasae.model.load import (  # noqa: F401  (max_positions: bench/train_sae_run.py imports it from here)
    ModelShape,
    check_layer,
    d_model,
    load_model,
    max_positions,
    model_shape,
    num_layers,
    special_token_ids,
)
from lorasae.train import distributed as dist_utils
from lorasae.train.architecture import build_sae, entry, maybe_compile
from lorasae.train.config import TrainSaeConfig
from lorasae.train.distributed import DistInfo
from lorasae.train.existing import check_existing, check_outputs_writable
from lorasae.train.interrupt import StepBoundaryInterrupt
from lorasae.train.logger import TrainLogger, start_wandb
from lorasae.train.modification import HiddenModification, load_modification
from lorasae.train.objectives import e2e_step
from lorasae.train.optim import make_optimizer
from lorasae.train.parts import RunContext, assemble
from lorasae.train.persistence import CURVE_QUANTITIES, Persistence
from lorasae.train.progress import Progress
from lorasae.train.result import TrainResult, summary_line
from lorasae.train.sae_record import finished_run, recorded_result
from lorasae.train.schedule import make_scheduler
from lorasae.train.state import checkpoint_dir
from lorasae.train.validation import curve_chunks


class NonFiniteLossError(LorasaeError, RuntimeError):
    """The loss or gradient became NaN/inf; the weights were not updated and nothing was written."""


class SaeTrainer:
    """Trains one dictionary of `cfg.architecture` with the (resolved) settings `cfg` on `model`;
    `source_models` are a crosscoder's --models, `modification` a checked --hidden_modification."""

    def __init__(
        self,
        cfg: TrainSaeConfig,
        model: nn.Module,
        tokenizer,
        split: TokenSplit,
        info: DistInfo | None = None,
        *,
        source_models: list[nn.Module] | None = None,
        modification: HiddenModification | None = None,
    ):
        self.d_model = d_model(model)
        self.shape = ModelShape.of(model)
        # a no-op for an already resolved config
        cfg = cfg.resolved(self.d_model, max_positions(model), num_layers(model))
        check_layer(model, cfg.layer)
        self.cfg, self.model, self.split = cfg, model, split
        self.info = info or dist_utils.env_info()
        self.device = next(model.parameters()).device
        for param in model.parameters():
            param.requires_grad_(False)
        self.entry = entry(cfg)  # --architecture's registry entry (lorasae.sae.registry)
        torch.manual_seed(cfg.seed)  # the same initial SAE on every rank and in every run with this seed
        self.sae = build_sae(cfg, self.d_model, self.device)
        self.optimizer, self.optimizer_kind = make_optimizer(
            self.sae.parameters(), cfg.lr, self.device, cfg.optimizer
        )
        self.scheduler = make_scheduler(self.optimizer, cfg.warmup_steps, cfg.total_steps, cfg.lr_scheduler)
        d_sae = self.d_model * cfg.expansion_factor
        self.progress = Progress(torch.zeros(d_sae, dtype=torch.long, device=self.device))
        ctx = RunContext(
            cfg, self.entry, model, self.sae,
            curve_val=curve_chunks(split.val, cfg.curve_val_tokens or split.val.numel()),
            val=curve_chunks(split.val, cfg.final_val_tokens or split.val.numel()),
            special_ids=special_token_ids(tokenizer), info=self.info, device=self.device,
            # bf16 model on CUDA: the SAE's forward under bf16 autocast, its parameters and Adam in float32
            autocast=use_sae_autocast(self.device, next(model.parameters()).dtype),
        )  # fmt: skip
        parts = assemble(ctx, source_models, modification, e2e_fn=e2e_step)
        self.rows, self.objective, self.curve = parts.rows, parts.objective, parts.curve
        self.files = Persistence(
            cfg, self.shape, self.info, self.sae, self.optimizer, self.scheduler, self.progress,
            self.curve.metadata,
        )  # fmt: skip
        self.eval_points = Counter(cfg.eval_steps())  # step -> number of curve points taken after it
        self.checkpoints = cfg.checkpoint_steps()

    @property
    def step(self) -> int:
        """Optimiser steps done."""
        return self.progress.step

    # --- curve points, checkpoints, states ----------------------------------------------------------
    def _record_curve_points(self, count: int, logger: TrainLogger | None) -> None:
        p = self.progress
        value = self.curve.value()
        p.val_loss += [value] * count
        p.minutes += [p.train_minutes] * count
        self.files.write_curves()
        if logger is not None:
            logger.eval(p.step, value, p.train_minutes)

    def _after_step(self, logger: TrainLogger) -> None:
        """Curve points, checkpoints and the training state due after `self.step` steps."""
        p, cfg = self.progress, self.cfg
        due_points = self.eval_points.get(p.step, 0)
        due_pcts = [pct for pct, step in self.checkpoints.items() if step == p.step]
        periodic = cfg.save_every_steps and p.step % cfg.save_every_steps == 0
        if not (due_points or due_pcts or periodic):
            return
        p.pause_clock(self.device)
        if due_points:
            self._record_curve_points(due_points, logger)
        for pct in due_pcts:
            folder = self.files.save_checkpoint(pct)
            if pct == 100:
                self.files.save_checkpoint(None)
            logger.message(
                f"checkpoint {pct:3d}% (step {p.step}/{cfg.total_steps}, "
                f"{p.train_minutes:.2f} train min, {self.curve.label} {p.val_loss[-1]:.4f}) -> {folder}"
            )
        if due_pcts or periodic:
            self.files.save_state()
        p.start_clock()

    # --- one optimiser step ------------------------------------------------------------------------
    def _train_step(self, sae: nn.Module, batch) -> dict[str, float]:
        """One optimiser step on the rows' input `batch`: the objective's forward and loss, then the
        architecture's hooks around the update (`lorasae.sae.registry.Architecture`)."""
        cfg, p = self.cfg, self.progress
        dead_mask = p.tokens_since_fired >= cfg.dead_after_tokens if cfg.auxk_alpha > 0 else None
        out = self.objective(sae, batch, p.step, dead_mask, self.info.world_size)
        if not math.isfinite(out.global_loss):
            self._fail(f"the loss became {out.global_loss}")
        out.loss.backward()
        self.entry.prepare_gradients(self.sae)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.sae.parameters(), cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            self._fail(f"the gradient norm became {grad_norm}")
        lr = self.scheduler.get_last_lr()[0]
        p.updating = True  # a Ctrl-C from here to `step += 1` leaves no consistent state to save
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.entry.after_update(self.sae, out.out)
        self._count_fired(out.fired_acts, out.fired_idx, out.tokens)
        dead = p.dead_fraction(cfg.dead_after_tokens)
        return out.metrics | {"dead_frac": dead, "lr": lr, "grad_norm": grad_norm} | out.extra

    @torch.no_grad()
    def _count_fired(self, acts: torch.Tensor, idx: torch.Tensor, tokens: int) -> None:
        fired = torch.zeros_like(self.progress.tokens_since_fired, dtype=torch.int32)
        fired.index_fill_(0, idx[acts > 0], 1)
        dist_utils.all_reduce_max(fired)
        self.progress.count_fired(fired.bool(), tokens)

    def _fail(self, what: str) -> None:
        raise NonFiniteLossError(
            f"Stopped at step {self.step + 1}: {what}. The weights were not updated and nothing was written; "
            f"the last good checkpoint is {self.files.saved_step()}. Lower --lr (now {self.cfg.lr:.3g}), use "
            f"--dtype float32, or check the data, then continue with --resume."
        )

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, info, p = self.cfg, self.info, self.progress
        if cfg.resume and self.files.restore(self.eval_points, self.device):
            self.files.write_curves()  # drop points a killed run wrote after its last saved state
            if info.is_main:
                print(f"Resuming from step {p.step}/{cfg.total_steps} ({self.files.state_file})")
        elif cfg.resume and info.is_main:
            print(f"No training state at {self.files.state_file}: starting a new run.")
        elif cfg.init_sae:
            self.files.init_from(cfg.init_sae, self.device)
        batches = self.split.train_batches(cfg.batch_size, skip_chunks=p.step * cfg.batch_size)
        batches = (masked_lm_inputs(self.model, b) for b in batches)  # a masked LM's scoring inputs
        if p.needs_b_dec_init:
            first = next(batches)
            self.rows.init_b_dec(self.sae, dist_utils.shard(first, info))
            p.needs_b_dec_init = False
            batches = itertools.chain([first], batches)
        sae: nn.Module = self.sae
        if info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            sae = DistributedDataParallel(self.sae, device_ids=ids)  # the SAE has no buffers to sync
        sae = maybe_compile(sae, cfg.compile)  # --compile: same parameters, compiled forward
        self.curve.prepare()  # e.g. the prefix cache's note, before the progress bar
        wandb_run = start_wandb(
            cfg.wandb and info.is_main,
            cfg.wandb_project,
            cfg.wandb_run_name or f"{cfg.model_key}-L{cfg.layer}-{cfg.kind}",
            asdict(cfg),
        )
        logger = TrainLogger(
            cfg.total_steps, p.step, cfg.log_every_steps, info.is_main, wandb_run,
            desc=f"{cfg.kind} SAE {cfg.model_key} L{cfg.layer}", curve_name=self.curve.name,
        )  # fmt: skip
        interrupt = StepBoundaryInterrupt()
        try:
            if p.step == 0:
                if p.base_ce is None:
                    p.base_ce = self.curve.base()
                self._record_curve_points(self.eval_points.get(0, 0), logger)
            p.start_clock()
            inputs = self.rows.stream(batches, cfg.total_steps - p.step)
            with interrupt.installed(enabled=not info.enabled):
                for _ in range(p.step, cfg.total_steps):
                    interrupt.check()
                    metrics = self._train_step(sae, next(inputs))
                    p.step += 1
                    p.updating = False
                    logger.step(p.step, metrics)
                    self._after_step(logger)
                interrupt.check()
            p.pause_clock(self.device)
        except KeyboardInterrupt as err:
            p.pause_clock(self.device)
            raise self.files.interrupted() from err
        finally:
            logger.close()
        result = self._result(logger.last)
        result.curve_files = {q: self.files.curve_file(q) for q in CURVE_QUANTITIES}
        self.files.finish(result)  # the run records, last
        return result

    def _result(self, train_metrics: dict[str, float]) -> TrainResult:
        cfg, p = self.cfg, self.progress
        final = self.curve.final()
        result = TrainResult(
            steps=p.step,
            tokens=p.step * cfg.tokens_per_step,
            base_ce=p.base_ce,
            val_loss=list(p.val_loss),
            minutes=list(p.minutes),
            val_fvu=final.val_fvu,
            val_l0=final.val_l0,
            val_dead_fraction=final.never_active,
            train_dead_fraction=p.dead_fraction(cfg.dead_after_tokens),
            final_dir=checkpoint_dir(cfg),
            train_metrics=dict(train_metrics),
            checkpoint_dirs={pct: checkpoint_dir(cfg, pct) for pct in self.checkpoints},
            state_path=self.files.state_file,
            per_source=final.per_source,
        )
        if self.info.is_main:
            print(summary_line(cfg, result))
            self.curve.report(result)
        return result


def check_same_shapes(models: list[str], first: ModelShape) -> None:
    """--models: every model has the first one's width and at least its layers (before any loads)."""
    for name in models[1:]:
        other = model_shape(name)
        if (other.d_model, other.n_layers) != (first.d_model, first.n_layers):
            raise ValueError(
                f"--models: {name} has d_model {other.d_model} and {other.n_layers} layers, the first model "
                f"{first.d_model} and {first.n_layers}; a crosscoder across models needs the same shape."
            )


def train_sae(cfg: TrainSaeConfig) -> TrainResult:
    """Load the model and the data split, train, and write the SAE checkpoints and curves."""
    setup_environment(cfg.wandb)
    info, device = dist_utils.setup(parse_device(cfg.device))
    try:
        seed_everything(cfg.seed)
        shape = model_shape(cfg.model_name)  # settings and layer checked before the weights load
        cfg = cfg.resolved(shape.d_model, shape.max_positions, shape.n_layers)
        for layer in [cfg.layer, *cfg.layers]:
            check_layer(shape, layer)
        check_same_shapes(cfg.models, shape)
        done = None if cfg.overwrite or cfg.resume else finished_run(cfg, checkpoint_dir(cfg))
        if done is not None:  # an identical finished run: nothing to redo
            if info.is_main:
                print(
                    f"Skipped: {checkpoint_dir(cfg)} already holds this SAE (same model, data and settings, "
                    f"{done.path.name}); pass --overwrite to train it again."
                )
            return recorded_result(done, cfg)
        note = check_existing(cfg)  # before anything loads: refuse to replace a different SAE silently
        check_outputs_writable(cfg, shape)
        # --hidden_modification: the file checked against the model's shape before the model loads
        modification = load_modification(cfg, shape.d_model, device) if cfg.kind == "modified" else None
        if note and info.is_main:
            print(note)
        model, tokenizer = load_model(cfg.model_name, device, cfg.dtype)
        split = load_token_split(
            cfg.dataset, tokenizer, cfg.ctx_len, cfg.num_val_tokens, cfg.seed, cfg.text_field
        )
        others = [load_model(name, device, cfg.dtype)[0] for name in cfg.models[1:]]
        sources = [model, *others] if cfg.models else None
        trainer = SaeTrainer(
            cfg, model, tokenizer, split, info, source_models=sources, modification=modification
        )
        return trainer.fit()
    finally:
        dist_utils.teardown()
