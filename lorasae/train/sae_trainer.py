"""The SAE training loop (SPEC §3.1): TopK or e2e objective, warm-up + linear decay, clipping, unit-norm
decoder with the parallel gradient removed, validation curve, labelled checkpoints, exact resume, DDP.

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

from lorasae.data import TokenSplit, load_token_split
from lorasae.errors import LorasaeError
from lorasae.eval_ce import masked_lm_inputs
from lorasae.hooks import residual_at
from lorasae.models import (
    ModelShape,
    check_layer,
    d_model,
    load_model,
    max_positions,
    model_shape,
    num_layers,
    special_token_ids,
)
from lorasae.precision import sae_autocast, use_sae_autocast
from lorasae.prefix import PrefixCache
from lorasae.runtime import parse_device, seed_everything, setup_environment
from lorasae.sae import geometric_median
from lorasae.train import distributed as dist_utils
from lorasae.train.architecture import build_sae, maybe_compile, step_sparsity, uses_sparsity
from lorasae.train.config import TrainSaeConfig
from lorasae.train.crosscoder_trainer import CrosscoderSteps
from lorasae.train.curve import CurveSteps
from lorasae.train.distributed import DistInfo
from lorasae.train.existing import check_existing, check_outputs_writable
from lorasae.train.harvest import ActivationBuffer, activation_step, default_harvest_steps
from lorasae.train.interrupt import StepBoundaryInterrupt
from lorasae.train.logger import TrainLogger, start_wandb
from lorasae.train.modification import load_modification, plain_rows
from lorasae.train.modified_trainer import ModifiedTargetSteps
from lorasae.train.objectives import e2e_head, e2e_step, reconstruction_step
from lorasae.train.optim import make_optimizer
from lorasae.train.persistence import TrainerPersistence
from lorasae.train.positions import select_positions
from lorasae.train.result import TrainResult, summary_line
from lorasae.train.sae_record import finished_run, recorded_result
from lorasae.train.schedule import make_scheduler
from lorasae.train.state import (
    checkpoint_dir,
    load_state,
    state_path,
)
from lorasae.train.validation import curve_chunks, reconstruction_stats


class NonFiniteLossError(LorasaeError, RuntimeError):
    """The loss or gradient became NaN/inf; the weights were not updated and nothing was written."""


class SaeTrainer(CurveSteps, TrainerPersistence):
    """Trains one SAE on `model`'s layer `cfg.layer` with the (resolved) settings `cfg`."""

    harvests = True  # steps on harvested activations (ActivationBuffer) unless --e2e; crosscoders: False
    curve_label = "val CE"  # what the curve holds (ModifiedTargetTrainer: the validation FVU on f(x))
    curve_name = "val_ce"  # its name on the progress bar
    curve_metadata = "spliced_val_ce"  # the checkpoints' cfg.json metadata key of the curve's last value
    reuses_prefix = True  # curve points run only the layers after cfg.layer (lorasae/prefix.py)

    def __init__(
        self,
        cfg: TrainSaeConfig,
        model: nn.Module,
        tokenizer,
        split: TokenSplit,
        info: DistInfo | None = None,
    ):
        self.d_model = d_model(model)
        self.shape = ModelShape.of(model)
        # a no-op for an already resolved config
        cfg = cfg.resolved(self.d_model, max_positions(model), num_layers(model))
        check_layer(model, cfg.layer)
        self.cfg, self.model, self.split = cfg, model, split
        self.curve_val = curve_chunks(split.val, cfg.curve_val_tokens or split.val.numel())
        self.info = info or dist_utils.env_info()
        self.device = next(model.parameters()).device
        # bf16 model on CUDA: the SAE's forward under bf16 autocast, its parameters and Adam in float32
        self.autocast = use_sae_autocast(self.device, next(model.parameters()).dtype)
        self.harvest_steps = cfg.harvest_steps or default_harvest_steps(self.device, cfg.tokens_per_step)
        for param in model.parameters():
            param.requires_grad_(False)
        self.special_ids = special_token_ids(tokenizer)
        # the e2e KL applies the LM head per chunk of positions (no [B, T, V] logits), as LoRA training does
        self.kl_head = e2e_head(model, split.val[:1, :16].to(self.device)) if cfg.e2e else None
        d_sae = self.d_model * cfg.expansion_factor
        torch.manual_seed(cfg.seed)  # the same initial SAE on every rank and in every run with this seed
        self.sae = build_sae(cfg, self.d_model, self.device)  # --architecture (lorasae/train/architecture.py)
        self.optimizer, self.optimizer_kind = make_optimizer(
            self.sae.parameters(), cfg.lr, self.device, cfg.optimizer
        )
        self.scheduler = make_scheduler(self.optimizer, cfg.warmup_steps, cfg.total_steps, cfg.lr_scheduler)
        self.step = 0
        self.val_loss: list[float] = []
        self.minutes: list[float] = []
        self.train_minutes = 0.0
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.long, device=self.device)
        self.base_ce: float | None = None
        self.needs_b_dec_init = True
        self.state_file = state_path(cfg)
        self.eval_points = Counter(cfg.eval_steps())  # step -> number of curve points taken after it
        self.checkpoints = cfg.checkpoint_steps()
        self._clock: float | None = None
        self._prefix: PrefixCache | None = None
        self._prefix_built = False
        self._updating = False

    @torch.no_grad()
    def init_b_dec(self, first_local_batch: torch.Tensor) -> None:
        """b_dec = geometric median of the first global batch's activations (gathered over ranks)."""
        ids = first_local_batch.to(self.device)
        hidden = select_positions(residual_at(self.model, ids, self.cfg.layer), self.cfg.position_index)
        acts = dist_utils.all_gather_cat(self.rows(hidden, select_positions(ids, self.cfg.position_index)))
        self.sae.b_dec.data.copy_(geometric_median(acts).to(self.sae.dtype))
        self.needs_b_dec_init = False

    def rows(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The rows [n, d] float32 the SAE reconstructs from the residual `hidden` [B, T, d] of token ids
        [B, T]: the residual itself (ModifiedTargetTrainer: f(x) of --hidden_modification)."""
        return plain_rows(hidden, ids)

    def _after_step(self, logger: TrainLogger) -> None:
        """Curve points, checkpoints and the training state due after `self.step` steps."""
        due_points = self.eval_points.get(self.step, 0)
        due_pcts = [pct for pct, step in self.checkpoints.items() if step == self.step]
        periodic = self.cfg.save_every_steps and self.step % self.cfg.save_every_steps == 0
        if not (due_points or due_pcts or periodic):
            return
        self._pause_clock()
        if due_points:
            self._record_curve_points(due_points, logger)
        for pct in due_pcts:
            folder = self._save_checkpoint(pct)
            if pct == 100:
                self._save_checkpoint(None)
            logger.message(
                f"checkpoint {pct:3d}% (step {self.step}/{self.cfg.total_steps}, "
                f"{self.train_minutes:.2f} train min, {self.curve_label} {self.val_loss[-1]:.4f}) -> {folder}"
            )
        if due_pcts or periodic:
            self._save_state()
        self._start_clock()

    # --- one optimiser step ------------------------------------------------------------------------
    def _train_step(
        self, sae: nn.Module, input_ids: torch.Tensor | None = None, acts: torch.Tensor | None = None
    ) -> dict[str, float]:
        """One optimiser step on a batch of token ids, or on its harvested activations `acts`."""
        cfg = self.cfg
        dead_mask = self.tokens_since_fired >= cfg.dead_after_tokens if cfg.auxk_alpha > 0 else None
        l1_coef = step_sparsity(cfg, self.step)  # ReLU SAEs: λ with its warm-up; else 0
        recon = cfg.sae_kwargs.recon_loss  # fvu | sum_sq (ReLU SAEs only, checked by the config)
        with sae_autocast(self.device, self.autocast):
            if acts is not None:
                loss, out, stats = activation_step(sae, acts, cfg.auxk_alpha, dead_mask, l1_coef, recon)
            elif cfg.e2e:
                loss, out, stats = e2e_step(
                    self.model, sae, input_ids, cfg.layer, cfg.auxk_alpha, dead_mask, head=self.kl_head,
                    sparsity_coef=l1_coef,
                )  # fmt: skip
            else:
                loss, out, stats = reconstruction_step(
                    self.model, sae, input_ids, cfg.layer, cfg.auxk_alpha, dead_mask, l1_coef, recon
                )
        totals = dist_utils.all_reduce_sum(stats.as_tensor(self.info.world_size))
        global_loss = float(totals[0])
        if not math.isfinite(global_loss):
            self._fail(f"the loss became {global_loss}")
        loss.backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.sae.parameters(), cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            self._fail(f"the gradient norm became {grad_norm}")
        lr = self.scheduler.get_last_lr()[0]
        self._updating = True  # a Ctrl-C from here to `self.step += 1` leaves no consistent state to save
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.sae.set_decoder_norm_to_unit_norm()
        self._update_dead(out.top_acts, out.top_idx, int(totals[3]))
        return {
            "loss": global_loss,
            "fvu": float(totals[1] / stats.total_variance),
            "l0": float(totals[2] / totals[3]),
            "dead_frac": float((self.tokens_since_fired >= cfg.dead_after_tokens).float().mean()),
            "lr": lr,
            "grad_norm": grad_norm,
        } | ({"l1": float(out.l1.detach()), "l1_coef": l1_coef} if uses_sparsity(cfg) else {})

    @torch.no_grad()
    def _update_dead(self, top_acts: torch.Tensor, top_idx: torch.Tensor, tokens: int) -> None:
        fired = torch.zeros_like(self.tokens_since_fired, dtype=torch.int32)
        fired.index_fill_(0, top_idx[top_acts > 0], 1)
        dist_utils.all_reduce_max(fired)
        self.tokens_since_fired += tokens
        self.tokens_since_fired[fired.bool()] = 0

    def _fail(self, what: str) -> None:
        saved = (
            f"the training state at step {load_state(self.state_file).step} ({self.state_file})"
            if self.state_file.exists()
            else "no training state yet"
        )
        raise NonFiniteLossError(
            f"Stopped at step {self.step + 1}: {what}. The weights were not updated and nothing was written; "
            f"the last good checkpoint is {saved}. Lower --lr (now {self.cfg.lr:.3g}), use --dtype float32, "
            f"or check the data, then continue with --resume."
        )

    # --- the loop ----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        if cfg.resume and self.restore():
            self._write_curves()  # drop points a killed run wrote after its last saved state
            if info.is_main:
                print(f"Resuming from step {self.step}/{cfg.total_steps} ({self.state_file})")
        elif cfg.resume and info.is_main:
            print(f"No training state at {self.state_file}: starting a new run.")
        elif cfg.init_sae:
            self.init_from(cfg.init_sae)
        batches = self.split.train_batches(cfg.batch_size, skip_chunks=self.step * cfg.batch_size)
        batches = (masked_lm_inputs(self.model, b) for b in batches)  # a masked LM's scoring inputs
        if self.needs_b_dec_init:
            first = next(batches)
            self.init_b_dec(dist_utils.shard(first, info))
            batches = itertools.chain([first], batches)
        sae: nn.Module = self.sae
        if info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            sae = DistributedDataParallel(self.sae, device_ids=ids)  # the SAE has no buffers to sync
        sae = maybe_compile(sae, cfg.compile)  # --compile: same parameters, compiled forward
        if self.reuses_prefix:
            self.prefix_cache()  # its note before the progress bar
        wandb_run = start_wandb(
            cfg.wandb and info.is_main,
            cfg.wandb_project,
            cfg.wandb_run_name or f"{cfg.model_key}-L{cfg.layer}-{cfg.kind}",
            asdict(cfg),
        )
        logger = TrainLogger(
            cfg.total_steps, self.step, cfg.log_every_steps, info.is_main, wandb_run,
            desc=f"{cfg.kind} SAE {cfg.model_key} L{cfg.layer}", curve_name=self.curve_name,
        )  # fmt: skip
        interrupt = StepBoundaryInterrupt()
        try:
            if self.step == 0:
                if self.base_ce is None:
                    self.base_ce = self.spliced_ce(with_sae=False)
                self._record_curve_points(self.eval_points.get(0, 0), logger)
            self._start_clock()
            buffer = None if cfg.e2e or not self.harvests else ActivationBuffer(
                self.model, cfg.layer, batches, self.harvest_steps, info, self.device, cfg.total_steps - self.step,
                rows=self.rows, positions=cfg.position_index,
            )  # fmt: skip
            with interrupt.installed(enabled=not info.enabled):
                self._steps(sae, batches, buffer, logger, interrupt)
            self._pause_clock()
        except KeyboardInterrupt as err:
            raise self._interrupted() from err
        finally:
            logger.close()
        result = self._result(logger.last)
        result.curve_files = {q: self.curve_file(q) for q in ("val_loss", "time")}
        self._finish(result)  # the run records, last
        return result

    def _steps(
        self, sae: nn.Module, batches, buffer, logger: TrainLogger, interrupt: StepBoundaryInterrupt
    ) -> None:
        info = self.info
        for _ in range(self.step, self.cfg.total_steps):
            interrupt.check()
            if buffer is not None:
                metrics = self._train_step(sae, acts=next(buffer))
            else:
                metrics = self._train_step(sae, dist_utils.shard(next(batches), info).to(self.device))
            self.step += 1
            self._updating = False
            logger.step(self.step, metrics)
            self._after_step(logger)
        interrupt.check()

    def _result(self, train_metrics: dict[str, float]) -> TrainResult:
        stats = reconstruction_stats(
            self.model, self.sae, self.cfg.layer, self.split.val, self.cfg.val_batch_size, self.info,
            self.rows, self.cfg.position_index,
        )  # fmt: skip
        result = TrainResult(
            steps=self.step,
            tokens=self.step * self.cfg.tokens_per_step,
            base_ce=self.base_ce,
            val_loss=list(self.val_loss),
            minutes=list(self.minutes),
            val_fvu=stats.fvu,
            val_l0=stats.l0,
            val_dead_fraction=stats.never_active,
            train_dead_fraction=float((self.tokens_since_fired >= self.cfg.dead_after_tokens).float().mean()),
            final_dir=checkpoint_dir(self.cfg),
            train_metrics=dict(train_metrics),
            checkpoint_dirs={pct: checkpoint_dir(self.cfg, pct) for pct in self.checkpoints},
            state_path=self.state_file,
        )
        if self.info.is_main:
            print(summary_line(self.cfg, result))
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


class CrosscoderTrainer(CrosscoderSteps, SaeTrainer):
    """`--architecture crosscoder`: SaeTrainer's loop with the crosscoder's steps and metrics
    (`lorasae/train/crosscoder_trainer.py`)."""

    reuses_prefix = False  # its curve splices every source layer in turn: the full forward each time


class ModifiedTargetTrainer(ModifiedTargetSteps, SaeTrainer):
    """`--hidden_modification`: SaeTrainer's loop on f(x), never spliced
    (`lorasae/train/modified_trainer.py`)."""


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
        if modification is not None:
            return ModifiedTargetTrainer(cfg, model, tokenizer, split, info, modification=modification).fit()
        if cfg.architecture != "crosscoder":
            return SaeTrainer(cfg, model, tokenizer, split, info).fit()
        others = [load_model(name, device, cfg.dtype)[0] for name in cfg.models[1:]]
        sources = [model, *others] if cfg.models else None
        return CrosscoderTrainer(cfg, model, tokenizer, split, info, source_models=sources).fit()
    finally:
        dist_utils.teardown()
