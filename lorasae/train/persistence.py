"""What an SAE training run writes and reads back: the labelled checkpoints (SAELens folders with their
provenance and the resolved `config.json`, then their run record `run.json`), the resumable training state, the starting points (a saved
state with --resume, another SAE's weights with --init_sae), and the message and state of a Ctrl-C.
A mixin of `SaeTrainer`, whose attributes (cfg, sae, optimizer, scheduler, curves, step) it reads."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from lorasae.config_files import save_config
from lorasae.errors import RunInterrupted
from lorasae.paths import portable
from lorasae.sae import SaeShapeError
from lorasae.sae.registry import load_ours
from lorasae.train.existing import sae_provenance
from lorasae.train.result import TrainResult
from lorasae.train.sae_record import PATH_FIELDS, sae_run_identity, write_curve_record, write_sae_record
from lorasae.train.state import (
    TrainingState,
    capture_rng,
    check_compatible,
    checkpoint_dir,
    load_state,
    restore_rng,
    resume_settings,
    save_state,
)


class TrainerPersistence:
    def restore(self) -> bool:
        """Load the latest training state (with --resume); False if there is none."""
        if not self.state_file.exists():
            return False
        state = load_state(self.state_file)
        check_compatible(state, self.cfg, self.d_model, self.state_file)
        self.sae.load_state_dict(state.sae)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.step, self.train_minutes, self.base_ce = state.step, state.train_minutes, state.base_ce
        self.val_loss, self.minutes = list(state.val_loss), list(state.minutes)
        self.tokens_since_fired = state.tokens_since_fired.to(self.device)
        restore_rng(state.rng)
        self.needs_b_dec_init = False
        expected = sum(n for s, n in self.eval_points.items() if s <= self.step)
        if len(self.val_loss) != expected:
            raise ValueError(
                f"{self.state_file}: {len(self.val_loss)} curve points at step {self.step}, expected {expected}"
            )
        return True

    def init_from(self, folder: str | Path) -> None:
        """Start from the weights of an existing SAE (SAELens-format folder)."""
        other = load_ours(folder, device=self.device)
        d_in, d_sae = other.cfg.d_in, other.cfg.d_sae
        if d_in != self.d_model:
            raise SaeShapeError(
                f"The SAE in {folder} reads {d_in}-dimensional activations, but this model's d_model is "
                f"{self.d_model}: it was trained on another model."
            )
        if d_sae != self.sae.cfg.d_sae:
            raise SaeShapeError(
                f"The SAE in {folder} has {d_sae} latents, but --expansion_factor "
                f"{self.cfg.expansion_factor} gives {self.sae.cfg.d_sae}: pass --expansion_factor "
                f"{d_sae // d_in if d_sae % d_in == 0 else '(a width that divides d_model)'}."
            )
        self.sae.load_state_dict({name: other.state_dict()[name] for name in self.sae.state_dict()})
        self.needs_b_dec_init = False

    def _save_checkpoint(self, pct: int | None) -> Path:
        folder = checkpoint_dir(self.cfg, pct)
        if self.info.is_main:
            self.sae.save(
                folder,
                checkpoint_pct=100 if pct is None else pct,
                step=self.step,
                total_steps=self.cfg.total_steps,
                train_tokens=self.step * self.cfg.tokens_per_step,
                train_minutes=self.train_minutes,
                **{self.curve_metadata: self.val_loss[-1] if self.val_loss else None},
                base_val_ce=self.base_ce,
                sae_kind=self.cfg.kind,
                expansion_factor=self.cfg.expansion_factor,
                lr=self.cfg.lr,
                dataset=self.cfg.dataset,
                ctx_len=self.cfg.ctx_len,
                num_val_tokens=self.cfg.num_val_tokens,
                **sae_provenance(self.cfg),
            )
            save_config(self.cfg, folder)  # `--config_file <folder>/config.json` reruns this run
            if pct is not None:  # the final SAE's record is written by `_finish`, after the result
                extra = {
                    "step": self.step,
                    "train_minutes": self.train_minutes,
                    "curves": self._curve_names(),
                }
                write_sae_record(folder, self.run_identity, pct, checkpoint_dir(self.cfg), extra)
        return folder

    @property
    def run_identity(self) -> dict[str, Any]:
        """What made this run's SAEs (`lorasae/train/sae_record.py`), computed once."""
        if getattr(self, "_run_identity", None) is None:
            self._run_identity = sae_run_identity(self.cfg)
        return self._run_identity

    def _curve_names(self) -> dict[str, str]:
        return {q: portable(self.curve_file(q)) for q in ("val_loss", "time")}

    def _finish(self, result: TrainResult) -> None:
        """The run's last writes: the curve files' records, then the final SAE's record (with the
        result, so an identical rerun can be skipped and still return it)."""
        if not self.info.is_main:
            return
        final = checkpoint_dir(self.cfg)
        for quantity in ("val_loss", "time"):
            write_curve_record(self.curve_file(quantity), self.run_identity, final, len(self.val_loss))
        numbers = {k: v for k, v in asdict(result).items() if k not in PATH_FIELDS}
        extra = {"result": numbers, "curves": self._curve_names(), "step": self.step}
        write_sae_record(final, self.run_identity, None, final, extra)

    def _save_state(self) -> None:
        if not self.info.is_main:
            return
        state = TrainingState(
            step=self.step,
            sae={k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            val_loss=list(self.val_loss),
            minutes=list(self.minutes),
            train_minutes=self.train_minutes,
            tokens_since_fired=self.tokens_since_fired.cpu(),
            base_ce=self.base_ce,
            config=resume_settings(self.cfg),
            rng=capture_rng(),
        )
        save_state(self.state_file, state)

    def _interrupted(self) -> RunInterrupted:
        """Ctrl-C: save the training state at the last completed step (the step in flight is dropped,
        as a checkpoint would), and say how to continue."""
        self._pause_clock()
        if self.step > 0 and not self._updating:
            self._save_state()
            return RunInterrupted(
                f"Interrupted at step {self.step}/{self.cfg.total_steps}; the training state is saved in "
                f"{self.state_file}. Rerun the same command with --resume to continue."
            )
        if self.state_file.exists():
            return RunInterrupted(
                f"Interrupted during step {self.step + 1}; the last saved training state is {self.state_file}: "
                "rerun the same command with --resume to continue from it."
            )
        return RunInterrupted("Interrupted before a training state was saved; nothing to resume.")
