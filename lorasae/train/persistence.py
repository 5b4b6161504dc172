"""What an SAE training run writes and reads back: the labelled checkpoints (SAELens folders with their
provenance and the resolved `config.json`, then their run record `run.json`), the curve files, the
resumable training state, the starting points (a saved state with --resume, another SAE's weights with
--init_sae), and the message and state of a Ctrl-C. A part handed to the training loop
(`sae_trainer.SaeTrainer`): it writes and restores the run's `Progress`; the SAE saves itself in its
architecture's format (`lorasae.sae.registry`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from lorasae.core.atomic import atomic_write_json
from lorasae.core.config_files import save_config
from lorasae.core.errors import RunInterrupted
from lorasae.core.paths import portable
from lorasae.model.load import ModelShape
from lorasae.sae import SaeShapeError
from lorasae.sae.registry import load_ours
from lorasae.train.config import TrainSaeConfig
from lorasae.train.distributed import DistInfo
from lorasae.train.existing import sae_provenance
from lorasae.train.progress import Progress
from lorasae.train.result import TrainResult
from lorasae.train.sae_names import sae_variant
from lorasae.train.sae_record import PATH_FIELDS, sae_run_identity, write_curve_record, write_sae_record
from lorasae.train.state import (
    TrainingState,
    capture_rng,
    check_compatible,
    checkpoint_dir,
    curve_path,
    load_state,
    restore_rng,
    resume_settings,
    save_state,
    state_path,
)

CURVE_QUANTITIES = ("val_loss", "time")


class Persistence:
    """The files of one run (`cfg`, resolved) training `sae` with `optimizer`/`scheduler`; the main rank
    writes, every rank reads. `curve_metadata` names the curve's last value in the checkpoints' cfg.json."""

    def __init__(
        self,
        cfg: TrainSaeConfig,
        shape: ModelShape,
        info: DistInfo,
        sae: nn.Module,
        optimizer: Any,
        scheduler: Any,
        progress: Progress,
        curve_metadata: str,
    ):
        self.cfg, self.shape, self.info, self.sae = cfg, shape, info, sae
        self.optimizer, self.scheduler, self.progress = optimizer, scheduler, progress
        self.curve_metadata = curve_metadata
        self.state_file = state_path(cfg)
        self._run_identity: dict[str, Any] | None = None

    # --- starting points -------------------------------------------------------------------------------
    def restore(self, eval_points: Counter, device: Any) -> bool:
        """Load the latest training state (with --resume) into the SAE, optimiser, scheduler, progress and
        RNGs; False if there is none. With --resume and none at this run's folder, a state of the same SAE
        saved with other weight-affecting settings (so in a sibling folder, `__<variant>`) is refused
        naming what differs, rather than a fresh run starting beside it."""
        if not self.state_file.exists():
            if self.cfg.resume:
                self._refuse_a_sibling_state()
            return False
        state = load_state(self.state_file)
        check_compatible(state, self.cfg, self.shape.d_model, self.state_file)
        self.sae.load_state_dict(state.sae)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        p = self.progress
        p.step, p.train_minutes, p.base_ce = state.step, state.train_minutes, state.base_ce
        p.val_loss, p.minutes = list(state.val_loss), list(state.minutes)
        p.tokens_since_fired = state.tokens_since_fired.to(device)
        restore_rng(state.rng)
        p.needs_b_dec_init = False
        expected = sum(n for s, n in eval_points.items() if s <= p.step)
        if len(p.val_loss) != expected:
            raise ValueError(
                f"{self.state_file}: {len(p.val_loss)} curve points at step {p.step}, expected {expected}"
            )
        return True

    def _refuse_a_sibling_state(self) -> None:
        """`check_compatible` against the latest training state of this SAE's tag saved under another
        variant (it raises `ResumeError` naming the settings that differ), if there is one."""
        final = checkpoint_dir(self.cfg)
        base = final.parent.name.split("__")[0]
        found = [
            p
            for p in final.parent.parent.glob(f"{base}*/{self.state_file.name}")
            if p.parent.name == base or p.parent.name.startswith(f"{base}__")
        ]
        if found:
            latest = max(found, key=lambda p: p.stat().st_mtime_ns)
            check_compatible(load_state(latest), self.cfg, self.shape.d_model, latest)

    def init_from(self, folder: str | Path, device: Any) -> None:
        """Start from the weights of an existing SAE (SAELens-format folder)."""
        other = load_ours(folder, device=device)
        d_in, d_sae, d_model = other.cfg.d_in, other.cfg.d_sae, self.shape.d_model
        if d_in != d_model:
            raise SaeShapeError(
                f"The SAE in {folder} reads {d_in}-dimensional activations, but this model's d_model is "
                f"{d_model}: it was trained on another model."
            )
        if d_sae != self.sae.cfg.d_sae:
            raise SaeShapeError(
                f"The SAE in {folder} has {d_sae} latents, but --expansion_factor "
                f"{self.cfg.expansion_factor} gives {self.sae.cfg.d_sae}: pass --expansion_factor "
                f"{d_sae // d_in if d_sae % d_in == 0 else '(a width that divides d_model)'}."
            )
        if type(other) is not type(self.sae):
            raise SaeShapeError(
                f"The SAE in {folder} is a {type(other).__name__}, but --architecture {self.cfg.architecture} "
                f"builds a {type(self.sae).__name__}: pass the --architecture it was trained with."
            )
        k_other, k_now = getattr(other.cfg, "k", None), getattr(self.sae.cfg, "k", None)
        if self.cfg.objective == "kl" and k_other is not None and k_now is not None and k_other != k_now:
            # a KL fine-tune is of the parent SAE itself (a plain --init_sae may start another k from it)
            raise SaeShapeError(
                f"--objective kl fine-tunes the SAE in {folder}, which keeps k={k_other} latents per token, "
                f"but this run's --k is {k_now}: pass --k {k_other}."
            )
        self.sae.load_state_dict({name: other.state_dict()[name] for name in self.sae.state_dict()})
        self.progress.needs_b_dec_init = False

    # --- curve files -----------------------------------------------------------------------------------
    def curve_file(self, quantity: str) -> Path:
        """This run's curve file of `quantity` (`val_loss` or `time`)."""
        return curve_path(self.cfg, quantity, self.shape)

    def write_curves(self) -> None:
        """The curve so far (values and cumulative training minutes, point i at progress i/(n-1) once
        complete), written atomically by the main rank (`state.curve_path`: its own file unless it is
        the model's default SAE)."""
        if self.info.is_main:
            atomic_write_json(self.curve_file("val_loss"), self.progress.val_loss)
            atomic_write_json(self.curve_file("time"), self.progress.minutes)

    def _curve_names(self) -> dict[str, str]:
        return {q: portable(self.curve_file(q)) for q in CURVE_QUANTITIES}

    # --- checkpoints and records -----------------------------------------------------------------------
    @property
    def run_identity(self) -> dict[str, Any]:
        """What made this run's SAEs (`lorasae/train/sae_record.py`), computed once."""
        if self._run_identity is None:
            self._run_identity = sae_run_identity(self.cfg)
        return self._run_identity

    def save_checkpoint(self, pct: int | None) -> Path:
        """The SAE at `pct` % (None: the final folder) with its metadata, config and (labelled ones) record."""
        cfg, p = self.cfg, self.progress
        folder = checkpoint_dir(cfg, pct)
        if self.info.is_main:
            self.sae.save(
                folder,
                checkpoint_pct=100 if pct is None else pct,
                step=p.step,
                total_steps=cfg.total_steps,
                train_tokens=p.step * cfg.tokens_per_step,
                train_minutes=p.train_minutes,
                **{self.curve_metadata: p.val_loss[-1] if p.val_loss else None},
                base_val_ce=p.base_ce,
                sae_kind=cfg.kind,
                expansion_factor=cfg.expansion_factor,
                lr=cfg.lr,
                dataset=cfg.dataset,
                ctx_len=cfg.ctx_len,
                num_val_tokens=cfg.num_val_tokens,
                **sae_provenance(cfg),
            )
            save_config(cfg, folder)  # `--config_file <folder>/config.json` reruns this run
            if pct is not None:  # the final SAE's record is written by `finish`, after the result
                extra = {"step": p.step, "train_minutes": p.train_minutes, "curves": self._curve_names(),
                         "variant": sae_variant(cfg)}  # fmt: skip
                write_sae_record(folder, self.run_identity, pct, checkpoint_dir(cfg), extra)
        return folder

    def finish(self, result: TrainResult) -> None:
        """The run's last writes: the curve files' records, then the final SAE's record (with the
        result, so an identical rerun can be skipped and still return it)."""
        if not self.info.is_main:
            return
        final = checkpoint_dir(self.cfg)
        for quantity in CURVE_QUANTITIES:
            points = len(self.progress.val_loss)
            write_curve_record(self.curve_file(quantity), self.run_identity, final, points)
        numbers = {k: v for k, v in asdict(result).items() if k not in PATH_FIELDS}
        extra = {"result": numbers, "curves": self._curve_names(), "step": self.progress.step,
                 "variant": sae_variant(self.cfg)}  # its folder name's (the store prefers '': defaults)  # fmt: skip
        write_sae_record(final, self.run_identity, None, final, extra)

    # --- the training state ----------------------------------------------------------------------------
    def save_state(self) -> None:
        if not self.info.is_main:
            return
        p = self.progress
        state = TrainingState(
            step=p.step,
            sae={k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            val_loss=list(p.val_loss),
            minutes=list(p.minutes),
            train_minutes=p.train_minutes,
            tokens_since_fired=p.tokens_since_fired.cpu(),
            base_ce=p.base_ce,
            config=resume_settings(self.cfg),
            rng=capture_rng(),
        )
        save_state(self.state_file, state)

    def saved_step(self) -> str:
        """The last saved training state, in words (for error messages)."""
        if self.state_file.exists():
            return f"the training state at step {load_state(self.state_file).step} ({self.state_file})"
        return "no training state yet"

    def interrupted(self) -> RunInterrupted:
        """Ctrl-C (after the loop paused its clock): save the training state at the last completed step
        (the step in flight is dropped, as a checkpoint would), and say how to continue."""
        p = self.progress
        if p.step > 0 and not p.updating:
            self.save_state()
            return RunInterrupted(
                f"Interrupted at step {p.step}/{self.cfg.total_steps}; the training state is saved in "
                f"{self.state_file}. Rerun the same command with --resume to continue."
            )
        if self.state_file.exists():
            return RunInterrupted(
                f"Interrupted during step {p.step + 1}; the last saved training state is {self.state_file}: "
                "rerun the same command with --resume to continue from it."
            )
        return RunInterrupted("Interrupted before a training state was saved; nothing to resume.")
